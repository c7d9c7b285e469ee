"""Two-stream fusion: one Keras model from `{"rgb", "flow"}` to class probabilities.

Fusions:
  "average"    mean of the two streams' softmax scores (Simonyan & Zisserman's default);
               with `weights=(w_rgb, w_flow)` a weighted mean.
  "weighted"   weighted mean of softmax scores, `weights` default (1, 1.5) as TSN's eval_scores.py.
  "logits"     softmax of the (weighted, default 1:1) sum of the streams' logits.
  "recurrent"  a small LSTM (or GRU) over per-snippet backbone features of both streams,
               `(B, S, F_rgb + F_flow)`, then a softmax classifier; the streams are frozen and only
               the recurrent head trains.

The fused model calls the stream models given (it shares their layers; it does not copy them).
"""
import keras
from keras import ops

from two_stream_tf.errors import UserError
from two_stream_tf.models.consensus import MergeSegments, SplitSegments, num_segments_of

FUSIONS = ("average", "weighted", "logits", "recurrent")
TSN_WEIGHTS = (1.0, 1.5)  # RGB : flow, yjxiong/temporal-segment-networks tools/eval_scores.py
RECURRENT_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


@keras.saving.register_keras_serializable(package="two_stream_tf")
class WeightedSum(keras.layers.Layer):
    """Weighted sum of same-shaped tensors: `sum_i w_i * x_i`.

    Args:
      stream_weights: one float per input.

    Input: a list of tensors of shape `(B, K)`. Output shape: `(B, K)`.
    """

    def __init__(self, stream_weights, **kwargs):
        super().__init__(**kwargs)
        self.stream_weights = [float(w) for w in stream_weights]

    def call(self, inputs):
        if len(inputs) != len(self.stream_weights):
            raise ValueError(f"WeightedSum has {len(self.stream_weights)} weights for {len(inputs)} inputs")
        total = inputs[0] * self.stream_weights[0]
        for weight, tensor in zip(self.stream_weights[1:], inputs[1:]):
            total = ops.add(total, tensor * weight)
        return total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "stream_weights": list(self.stream_weights)}


def two_stream_model(spatial, temporal, fusion="average", weights=None, *, rnn="lstm", units=256,
                     dropout=0.5, num_segments=None, name=None):
    """Fuses a spatial and a temporal stream model into one two-stream model.

    Args:
      spatial: a stream model from `spatial_model` (or any model with layers "logits"/"features").
      temporal: a stream model from `temporal_model`.
      fusion: "average", "weighted", "logits" or "recurrent" (see the module docstring).
      weights: `(w_rgb, w_flow)` for "average"/"weighted" (normalised to sum 1, so the output stays a
        probability) and "logits"; None for the fusion's default. Not used by "recurrent".
      rnn: "lstm" or "gru" (recurrent fusion).
      units: recurrent units (recurrent fusion).
      dropout: dropout before the recurrent fusion's classifier.
      num_segments: S snippets per video for recurrent fusion of single-frame streams; segment
        models bring their own S.
      name: model name; default "two_stream_<fusion>".

    Input: `{"rgb": (B, [S,] H, W, 3), "flow": (B, [S,] H, W, 2L)}` as the streams take them (recurrent
      fusion always takes S snippets per stream).
    Output shape: `(B, K)` class probabilities (float32).

    Note: recurrent fusion sets `trainable = False` on the streams' layers, which the given stream
    models share.
    """
    if fusion not in FUSIONS:
        raise UserError(f"fusion={fusion!r}: expected one of {', '.join(FUSIONS)}")
    num_classes = _num_classes(spatial, temporal)
    name = name or f"two_stream_{fusion}"
    if fusion == "recurrent":
        if weights is not None:
            raise UserError("two_stream_model: fusion='recurrent' learns its weights; pass weights=None")
        return _recurrent_fusion(spatial, temporal, num_classes, rnn=rnn, units=units, dropout=dropout,
                                 num_segments=num_segments, name=name)
    rgb = keras.Input(spatial.input_shape[1:], name="rgb")
    flow = keras.Input(temporal.input_shape[1:], name="flow")
    if fusion == "logits":
        stream_weights = _check_weights(weights, (1.0, 1.0), normalise=False)
        scores = [_logits_model(spatial)(rgb), _logits_model(temporal)(flow)]
        logits = WeightedSum(stream_weights, dtype="float32", name="logits")(scores)
        outputs = keras.layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    else:
        default = TSN_WEIGHTS if fusion == "weighted" else (1.0, 1.0)
        stream_weights = _check_weights(weights, default, normalise=True)
        outputs = WeightedSum(stream_weights, dtype="float32", name="predictions")([spatial(rgb), temporal(flow)])
    return keras.Model({"rgb": rgb, "flow": flow}, outputs, name=name)


def _num_classes(spatial, temporal):
    classes = (spatial.output_shape[-1], temporal.output_shape[-1])
    if classes[0] != classes[1]:
        raise UserError(f"two_stream_model: the spatial stream has {classes[0]} classes and the temporal "
                        f"stream {classes[1]}; both must classify the same classes")
    return classes[0]


def _check_weights(weights, default, normalise):
    weights = default if weights is None else tuple(weights)
    if len(weights) != 2 or any(float(w) < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"two_stream_model: weights={weights} must be two non-negative numbers "
                        "(w_rgb, w_flow), not both zero")
    if normalise:
        total = float(sum(weights))
        return [float(w) / total for w in weights]
    return [float(w) for w in weights]


def _sub_model(stream, layer_name, suffix):
    try:
        output = stream.get_layer(layer_name).output
    except ValueError as error:
        raise UserError(f"two_stream_model: model {stream.name} has no layer {layer_name!r}; build the "
                        "streams with spatial_model/temporal_model") from error
    return keras.Model(stream.inputs, output, name=f"{stream.name}_{suffix}")


def _logits_model(stream):
    return _sub_model(stream, "logits", "logits")


def _recurrent_fusion(spatial, temporal, num_classes, *, rnn, units, dropout, num_segments, name):
    if rnn not in RECURRENT_CELLS:
        raise UserError(f"two_stream_model: rnn={rnn!r}: expected one of {', '.join(RECURRENT_CELLS)}")
    segments = {num_segments_of(spatial), num_segments_of(temporal), num_segments} - {None}
    if len(segments) != 1:
        raise UserError("two_stream_model: recurrent fusion needs one number of snippets per video: "
                        f"the streams have {num_segments_of(spatial)} and {num_segments_of(temporal)} "
                        f"segments, num_segments={num_segments}")
    segments = segments.pop()
    inputs, sequences = {}, []
    for key, stream in (("rgb", spatial), ("flow", temporal)):
        features = _sub_model(stream, "features", "features")
        features.trainable = False
        stream_segments = num_segments_of(stream)
        frame_shape = stream.input_shape[2:] if stream_segments else stream.input_shape[1:]
        inputs[key] = keras.Input((segments, *frame_shape), name=key)
        x = inputs[key] if stream_segments else MergeSegments(name=f"{key}_merge_segments")(inputs[key])
        # Frozen BatchNormalization layers normalise with their moving statistics, in training too.
        x = features(x)
        sequences.append(SplitSegments(segments, name=f"{key}_snippet_features")(x))
    x = keras.layers.Concatenate(name="snippet_features")(sequences)
    x = RECURRENT_CELLS[rnn](units, name=rnn)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    return keras.Model(inputs, outputs, name=name)
