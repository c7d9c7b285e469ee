"""The spatial (RGB) and temporal (flow) streams: an ImageNet backbone, dropout and a softmax classifier.

Both builders return plain Keras models that `model.fit` trains directly on the datasets of
`two_stream_tf.data.pipelines` with `loss="sparse_categorical_crossentropy"`:

    spec = get_backbone("xception")
    rgb = spatial_model(101, backbone="xception")                       # (B, 299, 299, 3) -> (B, 101)
    flow = temporal_model(101, backbone="xception", stack_length=10)    # (B, 299, 299, 20) -> (B, 101)
    tsn = spatial_model(101, backbone="resnet50", num_segments=3, partial_bn=True)  # (B, 3, 224, 224, 3)

The RGB pipeline must use `rgb_normalization=spec.rgb_normalization`; flow is always in [-1, 1].

Layers every stream model has, by name (generic code such as fusion relies on them):
  "backbone"    the `keras.applications` feature extractor (a nested model)
  "features"    pooled backbone features, `(B, F)` (`(B·S, F)` in a segment model)
  "logits"      class scores before the softmax, `(B, K)` (after the consensus in a segment model)
  "predictions" the softmax, always float32 (also under a mixed_float16 policy)
A segment model also has "merge_segments", "segment_logits" (per-segment scores) and "split_segments".

The classifier starts from N(0, 0.001) weights and zero biases, as in both TSN implementations (Caffe's
fc-action filler, tsn-pytorch's new_fc): the first scores are close to zero and the loss starts at
ln(K). Keras' default (Glorot) init gives the pooled ImageNet features, scaled up by dropout's 1/(1-rate),
scores of several units: with 42 classes a first loss of 8-11 instead of 3.7 and a first gradient norm of
160-220 instead of 15, most of it in the backbone's last blocks. With partial BN the frozen layers cannot re-centre their outputs, so those first
steps push the backbone's last activation to zero everywhere and every video gets the same scores (see
docs/training.md, "Training health").
"""
import keras

from two_stream_tf.errors import UserError
from two_stream_tf.models.backbones import get_backbone
from two_stream_tf.models.consensus import MergeSegments, SegmentConsensus, SplitSegments, check_consensus
from two_stream_tf.models.cross_modality import flow_backbone

# TSN's classifier init (Caffe `gaussian std: 0.001`, tsn-pytorch `normal_(new_fc.weight, 0, 0.001)`).
CLASSIFIER_INIT_STDDEV = 0.001


def spatial_model(num_classes, backbone="xception", weights="imagenet", input_shape=None, dropout=0.5,
                  partial_bn=False, num_segments=None, consensus="average", **backbone_kwargs):
    """Builds the spatial stream: an ImageNet backbone classifying single RGB frames.

    Args:
      num_classes: K, the number of action classes.
      backbone: a registered backbone name (see `list_backbones()`), e.g. "xception", "resnet50".
      weights: "imagenet" (downloaded by Keras), the path of a Keras weights file of the backbone
        without top (`.h5` as Keras publishes them, or `.weights.h5`), or None (random init).
      input_shape: frame shape `(H, W, 3)` or `(H, W)`; default: the backbone's ImageNet size.
      dropout: dropout rate before the classifier (TSN: 0.8 for RGB).
      partial_bn: freeze every BatchNormalization layer but the first (TSN's partial BN).
      num_segments: S for a TSN segment model taking `(B, S, H, W, 3)`; None for single frames.
      consensus: "average" or "max" pooling of segment scores (segment models only).
      **backbone_kwargs: passed to the `keras.applications` builder (e.g. `alpha=0.25` for MobileNet).

    Input shape: `(B, H, W, 3)`, or `(B, S, H, W, 3)` with `num_segments=S`, normalised as
      `get_backbone(backbone).rgb_normalization` says.
    Output shape: `(B, num_classes)` class probabilities (float32).
    """
    spec = get_backbone(backbone)
    shape = _frame_shape(spec, input_shape, 3, "spatial_model")
    features = spec.build(shape, weights=weights, **backbone_kwargs)
    return _stream_model(features, num_classes, dropout=dropout, partial_bn=partial_bn,
                         num_segments=num_segments, consensus=consensus, input_name="rgb",
                         name=f"spatial_{spec.name}")


def temporal_model(num_classes, backbone="xception", weights="imagenet", input_shape=None, stack_length=10,
                   dropout=0.7, partial_bn=False, num_segments=None, consensus="average", **backbone_kwargs):
    """Builds the temporal stream: an ImageNet backbone on stacks of L optical-flow pairs.

    ImageNet weights reach the 2L-channel network by cross-modality init (see
    `two_stream_tf.models.cross_modality`): the first kernel is the RGB kernel averaged over its
    input channels (scaled for flow normalised `(q - 128) / 128`) and tiled to 2L channels.

    Args:
      num_classes: K, the number of action classes.
      backbone: a registered backbone name (see `list_backbones()`).
      weights: "imagenet", the path of a Keras weights file of the RGB backbone without top, or None.
      input_shape: frame shape `(H, W, 2L)` or `(H, W)`; default: the backbone's ImageNet size.
      stack_length: L, flow pairs per stack (10 classic two-stream, 5 TSN).
      dropout: dropout rate before the classifier (TSN: 0.7 for flow).
      partial_bn: freeze every BatchNormalization layer but the first (TSN's partial BN).
      num_segments: S for a TSN segment model taking `(B, S, H, W, 2L)`; None for single stacks.
      consensus: "average" or "max" pooling of segment scores (segment models only).
      **backbone_kwargs: passed to the `keras.applications` builder.

    Input shape: `(B, H, W, 2L)` (or `(B, S, H, W, 2L)`), channels `[x1, y1, x2, y2, …]`, `(q - 128) / 128`
    (the pipelines' "symmetric" flow).
    Output shape: `(B, num_classes)` class probabilities (float32).
    """
    spec = get_backbone(backbone)
    if int(stack_length) < 1:
        raise UserError(f"temporal_model: stack_length={stack_length} must be at least 1")
    shape = _frame_shape(spec, input_shape, 2 * int(stack_length), "temporal_model")
    features = flow_backbone(spec, shape, weights=weights, **backbone_kwargs)
    return _stream_model(features, num_classes, dropout=dropout, partial_bn=partial_bn,
                         num_segments=num_segments, consensus=consensus, input_name="flow",
                         name=f"temporal_{spec.name}")


def apply_partial_bn(model):
    """Freezes every BatchNormalization layer of `model` but the first (TSN's partial BN).

    A frozen Keras BatchNormalization layer keeps gamma/beta fixed and normalises with its moving
    statistics, in training too. The first one stays trainable so it adapts to the new input
    distribution (flow, or the target dataset's frames). Returns the number of frozen layers.
    """
    batch_norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms[1:]:
        layer.trainable = False
    return max(len(batch_norms) - 1, 0)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _frame_shape(spec, input_shape, channels, caller):
    if input_shape is None:
        return (spec.default_input_size, spec.default_input_size, channels)
    shape = tuple(input_shape)
    if len(shape) == 2:
        shape = (*shape, channels)
    if len(shape) != 3:
        raise UserError(f"{caller}: input_shape={tuple(input_shape)} must be (H, W) or (H, W, C) "
                        "(the shape of one frame, also for segment models)")
    if shape[2] != channels:
        what = "RGB frames" if channels == 3 else f"flow stacks of {channels // 2} pairs"
        raise UserError(f"{caller}: input_shape={shape} has {shape[2]} channels, but {what} have {channels}")
    height, width = shape[:2]
    if height is None or width is None or min(height, width) < spec.min_input_size:
        raise UserError(f"{caller}: input_shape={shape} is smaller than {spec.name}'s minimum "
                        f"{spec.min_input_size}x{spec.min_input_size}")
    return shape


def _stream_model(backbone, num_classes, *, dropout, partial_bn, num_segments, consensus, input_name, name):
    if int(num_classes) < 1:
        raise UserError(f"num_classes={num_classes} must be at least 1")
    if partial_bn:
        apply_partial_bn(backbone)
    frame_shape = backbone.input_shape[1:]
    if num_segments is None:
        inputs = keras.Input(frame_shape, name=input_name)
        x = inputs
    else:
        if int(num_segments) < 1:
            raise UserError(f"num_segments={num_segments} must be at least 1")
        consensus = check_consensus(consensus)
        inputs = keras.Input((int(num_segments), *frame_shape), name=input_name)
        x = MergeSegments(name="merge_segments")(inputs)
    x = backbone(x)
    x = keras.layers.Identity(name="features")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    classifier = dict(kernel_initializer=keras.initializers.RandomNormal(stddev=CLASSIFIER_INIT_STDDEV),
                      bias_initializer="zeros")
    if num_segments is None:
        logits = keras.layers.Dense(int(num_classes), name="logits", **classifier)(x)
    else:
        x = keras.layers.Dense(int(num_classes), name="segment_logits", **classifier)(x)
        x = SplitSegments(int(num_segments), name="split_segments")(x)
        logits = SegmentConsensus(consensus, name="logits")(x)
    # float32 softmax: under mixed_float16 the probabilities (and the loss) stay in full precision.
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    return keras.Model(inputs, probabilities, name=name)
