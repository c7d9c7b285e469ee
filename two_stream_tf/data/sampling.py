"""Which frames a sample reads: snippet starts for training and testing, stack indices, per-sample seeds.

Everything here is TensorFlow ops, safe inside `tf.data` functions, and deterministic: randomness comes
from stateless ops keyed by a seed tensor, so a sample does not depend on thread scheduling.

Conventions (see DESIGN.md):

- A *snippet* starting at `s` is RGB frame `s` (spatial stream) and the L flow pairs `s, …, s + L - 1`
  (temporal stream): Simonyan & Zisserman's stack for frame s. For RGB alone L = 1.
- A video with N items (RGB frames, or flow pairs for stacks) has `P = max(N - L + 1, 1)` snippet starts.
- Training, classic two-stream: one start uniform in `[0, P)`. TSN with S segments: `[0, P)` is cut into
  S equal parts and one start is drawn uniformly in each (a part narrower than one position gives its
  first position), so starts are sorted.
- Testing, two rules (`TEST_SAMPLINGS`):
  - "centered" (the default): `n` evenly spaced starts `floor(tick / 2 + j * tick)`, `tick = P / n`, the
    rule of tsn-pytorch's and mmaction2's test loaders; a stack that runs past the end loops back.
  - "tsn": TSN's Caffe `tools/eval_net.py`: starts `j * step`, `step = (N - L) // (n - 1)` (Python
    floor division), all starts 0 when `step <= 0` (and for n = 1); a stack that runs past the end is
    **clamped** at the last pair (`min(s + k, N - 1)`), so short videos repeat their last pair.
- **With "centered" (and in training) a stack that runs past the end loops back** to pair 0 (index
  mod N), as the seed implementations and mmaction2's default do. This only happens when a video has
  fewer than L flow pairs (a 6-pair video with L = 10 reads pairs 0..5, 0..3); every start above keeps
  longer videos inside.
- The RGB frame of a two-stream snippet is frame `s`, clamped to the last frame.
- Per-sample seeds: `sample_seed(seed, epoch_key, video_key)`; `video_key` is a hash of the video id,
  so a video gets the same sample in an epoch whatever order it is read in and whatever it is read from
  (frame folders or packed TFRecords).
"""
import tensorflow as tf

# Purposes of the sub-seeds drawn from one sample seed (`sub_seed`).
SAMPLING, CROP, FLIP = 0, 1, 2

# Test-time snippet rules: "centered" (tsn-pytorch, mmaction2) and "tsn" (TSN's Caffe eval_net.py).
TEST_SAMPLINGS = ("centered", "tsn")


def num_positions(num_items, length=1):
    """Number of snippet starts, `max(num_items - length + 1, 1)`, as int32."""
    return tf.maximum(tf.cast(num_items, tf.int32) - length + 1, 1)


def train_starts(num_items, seed, *, num_segments=1, length=1):
    """Random training snippet starts: one per TSN segment (classic two-stream: `num_segments=1`).

    Args:
      num_items: scalar, RGB frames (length 1) or flow pairs (stacks) of the video.
      seed: int shape `(2,)` stateless seed.
      num_segments: S, the number of segments (and of starts).
      length: snippet length L in items.

    Returns:
      int32 `(S,)`, sorted, each in `[0, num_positions(num_items, length))`.
    """
    positions = num_positions(num_items, length)
    segment = tf.range(num_segments, dtype=tf.int32)
    low = segment * positions // num_segments
    high = (segment + 1) * positions // num_segments
    width = tf.maximum(high - low, 1)
    draw = tf.random.stateless_uniform([num_segments], seed, dtype=tf.float32)
    offset = tf.minimum(tf.cast(draw * tf.cast(width, tf.float32), tf.int32), width - 1)
    return tf.minimum(low + offset, positions - 1)


def check_test_sampling(rule):
    """Raises ValueError unless `rule` is one of `TEST_SAMPLINGS`."""
    if rule not in TEST_SAMPLINGS:
        raise ValueError(f"test_sampling must be one of {TEST_SAMPLINGS}, got {rule!r}")


def test_starts(num_items, num_snippets, *, length=1, rule="centered"):
    """The `num_snippets` test snippet starts of a video, by one of `TEST_SAMPLINGS`.

    Args:
      num_items: scalar, RGB frames (length 1) or flow pairs (stacks).
      num_snippets: n, starts to return (25 in the published protocol).
      length: snippet length L.
      rule: "centered": `floor(tick / 2 + j * tick)` with `tick = num_positions / n` (tsn-pytorch,
        mmaction2); "tsn": `j * max((N - L) // (n - 1), 0)` as TSN's Caffe `eval_net.py` (0-based; its
        1-based frame numbers are these plus one).

    Returns:
      int32 `(n,)`, each in `[0, num_positions(num_items, length))`.
    """
    check_test_sampling(rule)
    if rule == "tsn":
        items = tf.cast(num_items, tf.int32)
        # eval_net: step = (frame_cnt - stack_depth) / (num - 1) in Python 2 (floor division), ticks
        # range(1, ..., step) when step > 0, else all 1.
        step = tf.maximum(tf.math.floordiv(items - length, max(int(num_snippets) - 1, 1)), 0)
        if int(num_snippets) == 1:
            step = tf.zeros_like(step)
        return tf.range(num_snippets, dtype=tf.int32) * step
    positions = tf.cast(num_positions(num_items, length), tf.float64)
    tick = positions / num_snippets
    starts = tf.cast(tf.floor(tick / 2.0 + tick * tf.range(num_snippets, dtype=tf.float64)), tf.int32)
    return tf.minimum(starts, tf.cast(positions, tf.int32) - 1)


def stack_indices(starts, length, num_items, *, overflow="loop"):
    """Item indices of the stacks starting at `starts`.

    Args:
      starts: int32 `(...)` snippet starts.
      length: L.
      num_items: scalar, flow pairs of the video.
      overflow: what a stack running past the last item reads: "loop" (`(start + k) mod N`, training
        and the "centered" test rule) or "clamp" (`min(start + k, N - 1)`, TSN's eval_net).

    Returns:
      int32 `(..., L)`.
    """
    offsets = tf.range(length, dtype=tf.int32)
    items = tf.maximum(tf.cast(num_items, tf.int32), 1)
    indices = tf.expand_dims(starts, -1) + offsets
    if overflow == "clamp":
        return tf.minimum(indices, items - 1)
    if overflow != "loop":
        raise ValueError(f"overflow must be 'loop' or 'clamp', got {overflow!r}")
    return indices % items


def test_overflow(rule):
    """The stack overflow of a test rule: "clamp" for "tsn", "loop" for "centered"."""
    check_test_sampling(rule)
    return "clamp" if rule == "tsn" else "loop"


def rgb_indices(starts, num_frames):
    """The RGB frame of each snippet: its start, clamped to the last frame."""
    return tf.minimum(starts, tf.cast(num_frames, tf.int32) - 1)


def video_keys(video_ids):
    """int64 keys of video ids (a string hash), the per-video part of sample seeds."""
    return tf.strings.to_hash_bucket_fast(video_ids, 2 ** 62)


def sample_seed(seed, epoch_key, video_key):
    """The stateless seed of one video's sample in one epoch.

    Args:
      seed: the pipeline's seed (int).
      epoch_key: int64 scalar, different for every epoch (pass).
      video_key: int64 scalar from `video_keys`.

    Returns:
      int64 `(2,)` seed for `tf.random.stateless_*` (split further with `sub_seed`).
    """
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch_key, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(video_key, tf.int64))


def sub_seed(seed, purpose):
    """An independent seed for one purpose (`SAMPLING`, `CROP`, `FLIP`) of a sample seed."""
    return tf.random.experimental.stateless_fold_in(seed, purpose)
