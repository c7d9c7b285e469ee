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
- Testing: `n` evenly spaced starts `floor(tick / 2 + j * tick)`, `tick = P / n` (TSN's `eval_net.py`).
- **A stack that runs past the end loops back** to pair 0 (index mod N), as the seed implementations and
  mmaction2's default do. This only happens when a video has fewer than L flow pairs (a 6-pair video
  with L = 10 reads pairs 0..5, 0..3); every start above keeps longer videos inside.
- The RGB frame of a two-stream snippet is frame `s`, clamped to the last frame.
- Per-sample seeds: `sample_seed(seed, epoch_key, video_key)`; `video_key` is a hash of the video id,
  so a video gets the same sample in an epoch whatever order it is read in and whatever it is read from
  (frame folders or packed TFRecords).
"""
import tensorflow as tf

# Purposes of the sub-seeds drawn from one sample seed (`sub_seed`).
SAMPLING, CROP, FLIP = 0, 1, 2


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


def test_starts(num_items, num_snippets, *, length=1):
    """TSN's test sampling: `num_snippets` evenly spaced snippet starts.

    Args:
      num_items: scalar, RGB frames (length 1) or flow pairs (stacks).
      num_snippets: n, starts to return (25 in the published protocol).
      length: snippet length L.

    Returns:
      int32 `(n,)`: `floor(tick / 2 + j * tick)` with `tick = num_positions / n`.
    """
    positions = tf.cast(num_positions(num_items, length), tf.float64)
    tick = positions / num_snippets
    starts = tf.cast(tf.floor(tick / 2.0 + tick * tf.range(num_snippets, dtype=tf.float64)), tf.int32)
    return tf.minimum(starts, tf.cast(positions, tf.int32) - 1)


def stack_indices(starts, length, num_items):
    """Item indices of the stacks starting at `starts`, looping back past the last item.

    Args:
      starts: int32 `(...)` snippet starts.
      length: L.
      num_items: scalar, flow pairs of the video.

    Returns:
      int32 `(..., L)`: `(start + k) mod num_items`.
    """
    offsets = tf.range(length, dtype=tf.int32)
    return (tf.expand_dims(starts, -1) + offsets) % tf.maximum(tf.cast(num_items, tf.int32), 1)


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
