"""The published test protocol: every video scored on 25 snippets × 10 crops (or 1 or 3), views aggregated.

TSN's tools/eval_net.py takes 25 evenly spaced snippets per test video, 10 crops of each (4 corners and
the centre, and their mirrors; flow x negated on mirrored crops) and averages the class scores over all
views. The input pipelines' test mode yields exactly these views, `(B, V, H, W, C)` per video; here each
view is scored by the single-frame model (a TSN segment model is unfolded into its per-frame model), and
the views of a video are aggregated by one of `AGGREGATIONS`:

- "softmax_mean" (the default; tsn-pytorch and mmaction2 average the softmax): the mean of the views'
  softmax outputs;
- "logit_mean": TSN's Caffe eval_net, which averages the raw scores of its `fc-action` layer (the logits)
  over crops and snippets and takes the softmax of that mean.

The stream models end in a softmax layer named "predictions"; the logits are read from its input
(`logits_model`), so every video also gets its mean logits and its per-class view votes (how many views
have the class as top-1) in the `VideoScores` (`logits`, `votes`).

Recurrent fusion models read a sequence of S snippets; they are scored on S evenly spaced snippets per
sequence: the test snippets are dealt into interleaved sequences (snippet j goes to sequence j mod m, so
each sequence spans the whole video), and the scores of all sequences and crops are averaged.

Unreadable frames never stop an evaluation: a view whose files cannot be decoded (empty, truncated, a
damaged header, a frame of another size than the rest of its flow stack) is left out of its video's
average (a sequence with such a view is left out whole), and the scores record how many views each video
lost (`VideoScores.unreadable_views`). A video none of whose views decode keeps its row, with uniform
scores, and is marked `unscored`: metrics count it as wrong. `strict=True` raises an error naming the
first unreadable file instead.
"""
import os

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from two_stream_tf.evaluation.scores import VideoScores

CROPS = (1, 3, 10)
AGGREGATIONS = ("softmax_mean", "logit_mean")


def video_id(entry):
    """The id a score file uses for an index entry: the video folder's name (`v_X_g01_c01`)."""
    return os.path.basename(entry.video.rstrip("/"))


def sequence_length(model):
    """S when `model` scores sequences of S snippets it cannot unfold (two-stream models with inputs
    `(B, S, H, W, C)`), else None (the model scores single views)."""
    if not isinstance(model.input, dict):
        return None
    shapes = [tuple(tensor.shape) for tensor in model.input.values()]
    return shapes[0][1] if len(shapes[0]) == 5 else None


def per_view_model(model):
    """The model that scores one view: a segment stream model unfolded to single frames, else `model`."""
    from two_stream_tf.models import frame_model, num_segments_of
    if isinstance(model.input, dict):
        return model
    return frame_model(model) if num_segments_of(model) is not None else model


def logits_model(model):
    """The model that gives `model`'s logits: `model` up to the input of its final softmax layer.

    Raises:
      ValueError: the model does not end in a softmax activation layer.
    """
    import keras

    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    is_softmax = isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and getattr(activation, "__name__", "") == "softmax")
    if not is_softmax:
        raise ValueError(f"model {model.name!r} does not end in a softmax layer (its last layer is "
                         f"{last.name!r}); its logits cannot be read")
    return keras.Model(model.inputs if isinstance(model.input, (list, tuple)) else model.input, last.input,
                       name=f"{model.name}_logits")


def softmax(logits, axis=-1):
    """Softmax of float64 logits along `axis` (shifted by the maximum, so large logits do not overflow)."""
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def aggregate_views(outputs, aggregation="softmax_mean", *, logits=True, usable=None):
    """Aggregates the class outputs of each video's views.

    Args:
      outputs: float `(N, V, K)`, per video the V views' logits (`logits=True`) or softmax outputs.
      aggregation: "softmax_mean" (mean of the views' softmax) or "logit_mean" (softmax of the mean logits,
        TSN's eval_net).
      logits: whether `outputs` are logits ("logit_mean" needs them).
      usable: None (every view counts) or bool `(N, V)`: only these views are aggregated (views whose frames
        could not be decoded are left out). A video with no usable view gets uniform scores, zero logits and
        no votes.

    Returns:
      `(scores (N, K) float64, mean logits (N, K) float64 or None, votes (N, K) int32)`; votes count the
      views whose top-1 class is each class.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if not logits and aggregation == "logit_mean":
        raise ValueError("aggregation 'logit_mean' needs the model's logits")
    outputs = np.asarray(outputs, np.float64)
    num_classes = outputs.shape[-1]
    usable = np.ones(outputs.shape[:2], bool) if usable is None else np.asarray(usable, bool)
    counts = usable.sum(axis=1)
    weights = usable[..., None] / np.maximum(counts, 1)[:, None, None]

    def mean(values):
        return (values * weights).sum(axis=1)

    one_hot = np.eye(num_classes, dtype=np.int32)[np.argmax(outputs, axis=-1)] * usable[..., None]
    votes = one_hot.sum(axis=1, dtype=np.int32)
    mean_logits = mean(outputs) if logits else None
    if not logits:
        scores = mean(outputs)
    elif aggregation == "logit_mean":
        scores = softmax(mean_logits)
    else:
        scores = mean(softmax(outputs))
    scores = np.where(counts[:, None] > 0, scores, 1.0 / num_classes)
    return scores, mean_logits, votes


class _Scorer:
    """Scores views in chunks with one traced function for all chunk sizes."""

    def __init__(self, model, chunk):
        self.model, self.chunk = model, max(int(chunk), 1)
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def __call__(self, units):
        first = next(iter(units.values())) if isinstance(units, dict) else units
        outputs = []
        for start in range(0, int(first.shape[0]), self.chunk):
            part = ({k: v[start:start + self.chunk] for k, v in units.items()} if isinstance(units, dict)
                    else units[start:start + self.chunk])
            outputs.append(np.asarray(self._predict(part), dtype=np.float64))
        return np.concatenate(outputs)


def readable_units(readable, crops, segments=None):
    """Which of `to_units`' units can be scored: `(B·V,)`, or `(B·m·crops,)` with `segments` (a sequence
    only when all its snippets are readable), from the views' readable mask `(B, V)`."""
    readable = tf.convert_to_tensor(readable)
    if not segments:
        return tf.reshape(readable, [-1])
    units = to_units(tf.cast(readable, tf.int32)[..., None, None, None], crops, segments)
    return tf.reshape(tf.reduce_all(units > 0, axis=1), [-1])


def to_units(views, crops, segments=None):
    """Regroups one batch of test views into what the model scores.

    Args:
      views: `(B, V, H, W, C)` with `V = snippets × crops`, snippet-major (all crops of snippet 0 first).
      crops: crops per snippet.
      segments: None to score single views; S to build sequences of S snippets (same crop): the
        snippets are dealt into `m = snippets // S` interleaved sequences (snippet `s·m + g` is position
        s of sequence g), so every sequence spans the whole video.

    Returns:
      `(B·V, H, W, C)`, or `(B·m·crops, S, H, W, C)` with `segments`; units of one video are contiguous.
    """
    shape = tf.shape(views)
    rest = shape[2:]
    if not segments:
        return tf.reshape(views, tf.concat([[-1], rest], 0))
    snippets = int(views.shape[1]) // crops
    groups = snippets // segments
    if groups < 1:
        raise ValueError(f"{snippets} test snippets cannot fill a sequence of {segments}")
    x = tf.reshape(views, tf.concat([[shape[0], snippets, crops], rest], 0))[:, : groups * segments]
    x = tf.reshape(x, tf.concat([[shape[0], segments, groups, crops], rest], 0))
    x = tf.transpose(x, [0, 2, 3, 1] + list(range(4, len(views.shape) + 2)))
    return tf.reshape(x, tf.concat([[-1, segments], rest], 0))


def score_videos(model, dataset, entries, classes, *, crops=10, views_per_step=50, progress=True,
                 aggregation="softmax_mean"):
    """Scores every video of a test-mode dataset by aggregating the class scores of its readable views.

    Args:
      model: a stream model (single-frame or TSN segment model), or a two-stream model.
      dataset: the pipelines' test-mode dataset in the order of `entries`: elements `(views, labels,
        readable)` (built with `readable_mask=True`), or `(views, labels)` when every view is to be
        used; views `(B, V, H, W, C)` (or a dict of them for two-stream models), `V = snippets × crops`,
        readable bool `(B, V)`.
      entries: the index entries in dataset order (for the video ids).
      classes: class names.
      crops: crops per snippet (needed to regroup views for recurrent fusion models).
      views_per_step: views scored per model call (memory bound).
      progress: show a tqdm bar.
      aggregation: "softmax_mean" or "logit_mean" (TSN's eval_net); see `aggregate_views`.

    Returns:
      `VideoScores` with one row per video, with `logits` and `votes` when the model's logits can be
      read (it ends in a softmax layer), and with `unreadable_views` and `unscored` when the dataset gives
      readable masks.

    Raises:
      ValueError: "logit_mean" for a model without a final softmax layer.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    view_model = per_view_model(model)
    try:
        view_model, has_logits = logits_model(view_model), True
    except ValueError:
        if aggregation == "logit_mean":
            raise
        has_logits = False
    scorer = _Scorer(view_model, views_per_step)
    segments = sequence_length(model)
    scores, mean_logits, votes, labels, unreadable, unscored = [], [], [], [], [], []
    bar = tqdm(total=len(entries), unit="video", desc="evaluating", disable=not progress)
    for element in dataset:
        views, batch_labels = element[:2]
        if isinstance(views, dict):
            units = {key: to_units(value, crops, segments) for key, value in views.items()}
        else:
            units = to_units(views, crops, segments)
        batch = int(batch_labels.shape[0])
        outputs = scorer(units)
        outputs = outputs.reshape(batch, -1, outputs.shape[-1])
        if len(element) > 2:
            readable = np.asarray(element[2]).reshape(batch, -1)
            usable = np.asarray(readable_units(readable, crops, segments)).reshape(batch, -1)
            unreadable.append(readable.shape[1] - readable.sum(axis=1))
        else:
            usable = np.ones(outputs.shape[:2], bool)
        # A video with no usable view gets uniform scores; `unscored` makes the metrics count it wrong.
        video_scores, video_logits, video_votes = aggregate_views(outputs, aggregation, logits=has_logits,
                                                                  usable=usable)
        scores.append(video_scores)
        mean_logits.append(video_logits)
        votes.append(video_votes)
        unscored.append(usable.sum(axis=1) == 0)
        labels.append(np.asarray(batch_labels).reshape(-1))
        bar.update(batch)
    bar.close()
    scores = np.concatenate(scores) if scores else np.zeros((0, len(classes)))
    mean_logits = (np.concatenate(mean_logits) if mean_logits else np.zeros((0, len(classes)))) if has_logits else None
    votes = np.concatenate(votes) if votes else np.zeros((0, len(classes)), np.int32)
    labels = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
    if len(labels) != len(entries):
        raise RuntimeError(f"the test dataset gave {len(labels)} videos for {len(entries)} index entries (build it "
                           "with readable_mask=True so that videos with unreadable frames are kept)")
    expected = np.array([entry.label for entry in entries])
    if not np.array_equal(expected, labels):
        raise RuntimeError("the test dataset's labels are not in index order")
    extra = {}
    if unreadable:
        extra = dict(unreadable_views=np.concatenate(unreadable), unscored=np.concatenate(unscored))
    return VideoScores([video_id(e) for e in entries], labels, scores, classes, logits=mean_logits,
                       votes=votes if has_logits else None, **extra)


def test_dataset(index, stream, *, image_size, num_snippets=25, crops=10, batch_size=1, stack_length=10,
                 rgb_normalization="tf", test_sampling="centered", frame_size=None, strict=False):
    """The pipelines' test-mode dataset of `index` for a stream ("spatial", "temporal" or "fusion"):
    elements `(views, labels, readable)`; `test_sampling` and `frame_size` as in
    `two_stream_tf.data.pipelines`; with `strict`, an unreadable file raises, naming it."""
    from two_stream_tf.data import pipelines
    common = dict(training=False, batch_size=batch_size, image_size=image_size, num_snippets=num_snippets,
                  crops=crops, deterministic=True, repeat=False, test_sampling=test_sampling,
                  frame_size=frame_size, strict=strict, readable_mask=True)
    if stream == "spatial":
        return pipelines.spatial_dataset(index, rgb_normalization=rgb_normalization, **common)
    if stream == "temporal":
        return pipelines.temporal_dataset(index, stack_length=stack_length, **common)
    if stream == "fusion":
        return pipelines.two_stream_dataset(index, stack_length=stack_length, rgb_normalization=rgb_normalization,
                                            **common)
    raise ValueError(f"unknown stream {stream!r}")


def evaluate(model, index, stream, *, image_size, num_snippets=25, crops=10, batch_size=1, stack_length=10,
             rgb_normalization="tf", views_per_step=50, progress=True, test_sampling="centered", frame_size=None,
             aggregation="softmax_mean", strict=False):
    """Scores every video of `index` by the test protocol.

    Args:
      model: a trained stream model or two-stream model.
      index: a `DatasetIndex` (usually the split's test list).
      stream: "spatial", "temporal" or "fusion" (which inputs the model takes).
      image_size: crop side the model takes.
      num_snippets: evenly spaced snippets per video (TSN: 25).
      crops: 1 (centre), 3, or 10 (4 corners + centre and mirrors; TSN).
      batch_size: videos per pipeline batch.
      stack_length: flow pairs per stack.
      rgb_normalization: the backbone's RGB normalisation.
      views_per_step: views per model call.
      progress: tqdm bar.
      test_sampling: "centered" (tsn-pytorch, mmaction2) or "tsn" (TSN's Caffe eval_net) snippets.
      frame_size: None, or `(height, width)` frames are resized to before cropping (TSN: (256, 340)).
      aggregation: "softmax_mean" or "logit_mean" (TSN's eval_net).
      strict: raise `tf.errors.InvalidArgumentError` naming the first unreadable file (`decode`) instead
        of leaving its view out.

    Returns:
      `VideoScores` (the readable views aggregated per video; with the mean logits and view votes, and
      `unreadable_views` and `unscored`).

    TSN's Caffe protocol value for value: `test_sampling="tsn"`, `frame_size=(256, 340)`,
    `aggregation="logit_mean"`, 25 snippets × 10 crops (docs/conventions.md).
    """
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}, got {crops}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    dataset = test_dataset(index, stream, image_size=image_size, num_snippets=num_snippets, crops=crops,
                           batch_size=batch_size, stack_length=stack_length, rgb_normalization=rgb_normalization,
                           test_sampling=test_sampling, frame_size=frame_size, strict=strict)
    return score_videos(model, dataset, index.entries, index.classes, crops=crops, views_per_step=views_per_step,
                        progress=progress, aggregation=aggregation)
