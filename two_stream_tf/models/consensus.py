"""TSN segment consensus: one backbone shared over S segments, segment scores pooled into one.

A segment model takes `(B, S, H, W, C)`: `MergeSegments` folds the segments into the batch, so the
backbone sees `(B·S, H, W, C)` in one call (one batch for BatchNormalization, as in TSN), the
classifier gives per-segment logits `(B·S, K)`, `SplitSegments` restores `(B, S, K)` and
`SegmentConsensus` averages (or max-pools) them into `(B, K)`; the softmax comes after the consensus.

The layers are registered Keras serializables, so segment models save as `.keras` and load with
`safe_mode=True`.
"""
import keras
from keras import ops

from two_stream_tf.errors import UserError

CONSENSUS_MODES = ("average", "max")


@keras.saving.register_keras_serializable(package="two_stream_tf")
class MergeSegments(keras.layers.Layer):
    """Folds the segment axis into the batch axis.

    Input shape: `(B, S, ...)`. Output shape: `(B·S, ...)`, segment-major within each video.
    """

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, *shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, segments = input_shape[:2]
        merged = None if batch is None or segments is None else batch * segments
        return (merged, *input_shape[2:])


@keras.saving.register_keras_serializable(package="two_stream_tf")
class SplitSegments(keras.layers.Layer):
    """Undoes `MergeSegments`: `(B·S, ...)` back to `(B, S, ...)`.

    Args:
      num_segments: S.
    """

    def __init__(self, num_segments, **kwargs):
        super().__init__(**kwargs)
        self.num_segments = int(num_segments)

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, self.num_segments, *shape[1:]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.num_segments
        return (batch, self.num_segments, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "num_segments": self.num_segments}


@keras.saving.register_keras_serializable(package="two_stream_tf")
class SegmentConsensus(keras.layers.Layer):
    """Pools per-segment scores over the segment axis.

    Args:
      mode: "average" (TSN's default) or "max".

    Input shape: `(B, S, K)`. Output shape: `(B, K)`.
    """

    def __init__(self, mode="average", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_consensus(mode)

    def call(self, inputs):
        if self.mode == "max":
            return ops.max(inputs, axis=1)
        return ops.mean(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def check_consensus(mode):
    """Returns `mode` if it is a consensus mode, else raises UserError."""
    if mode not in CONSENSUS_MODES:
        raise UserError(f"consensus={mode!r}: expected one of {', '.join(CONSENSUS_MODES)}")
    return mode


def num_segments_of(model):
    """S of a segment model (input `(B, S, H, W, C)`), or None for a single-frame model."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    return shape[1] if len(shape) == 5 else None


def frame_model(stream):
    """A single-frame model `(B, H, W, C) -> (B, K)` sharing a stream model's layers.

    For a TSN segment model this gives per-frame class probabilities, as the test protocol needs
    (25 snippets × crops scored one by one); a single-frame stream model is returned as is.
    """
    if num_segments_of(stream) is None:
        return stream
    frame_input = keras.Input(stream.input_shape[2:], name=stream.inputs[0].name)
    x = stream.get_layer("backbone")(frame_input)
    x = stream.get_layer("features")(x)
    x = stream.get_layer("dropout")(x)
    logits = stream.get_layer("segment_logits")(x)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    return keras.Model(frame_input, probabilities, name=f"{stream.name}_frames")
