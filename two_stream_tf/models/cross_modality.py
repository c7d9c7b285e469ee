"""Cross-modality initialisation (TSN): an ImageNet backbone turned into a flow backbone.

The flow backbone takes a stack of L flow pairs, `(B, H, W, 2L)` with channels `[x1, y1, x2, y2, …]`
normalised "symmetric", `(q - 128) / 128` of the quantised flow q (zero motion at 0, range
[-1, 127/128]). Its first convolution kernel is the ImageNet kernel averaged over its 3 RGB input
channels and tiled to 2L channels; every other weight is the ImageNet one. `keras.applications` refuses
ImageNet weights for a 2L-channel input, so the 2L-channel net is built with `weights=None` and the
weights are transplanted from a 3-channel twin.

Scale. TSN feeds the averaged kernel with flow on the pixel scale (q - 128), the scale its RGB kernel
saw (pixel - mean): one flow level drives the kernel as one grey level did. Here flow arrives as
(q - 128) / 128 whatever the backbone, while the ImageNet kernel saw RGB after the backbone's own
normalisation. So each RGB channel c of the kernel is first multiplied by

    s_c = span_c / FLOW_SPAN,   FLOW_SPAN = 255 / 128,

where span_c is how far the first convolution's input moves on channel c when the RGB image goes from
black (0) to white (255), and FLOW_SPAN is how far normalised flow moves over the same 255 levels. A
flow level then drives the kernel exactly as a grey level did (flow v ↔ grey 128 + 128·v):

    "caffe"  BGR - mean, 0..255 scale     s = 128 (TSN's own scale: q - 128 against pixel - mean)
    "tf"     [-1, 1]                      s = 256/255 ≈ 1.004
    "torch"  (x/255 - mean) / std         s_c = 128 / (255 std_c) ≈ 2.2
    "none"   normalised inside the model  s_c measured through the model's own layers

(Models whose flow input is normalised otherwise — "caffe" flow, q - 128, or "none" — get the same
kernel; their first convolution then sees 128 or 255/2 times larger inputs.)

span_c is measured, not looked up: the twin's `preprocess_input` and its layers before the first
convolution are run on a black and a white image. This covers backbones that normalise inside the
model (EfficientNet's Rescaling and Normalization, MobileNetV3's Rescaling): those layers are fitted
to 3 RGB channels and meaningless for flow, so in the flow backbone they are replaced by identities
and flow reaches the first convolution unchanged.

Like timm's adaptation of input convolutions, this is a judgement call: it is much better than a
random init (TSN: 81.7 % → 86.6 % on UCF-101 split 1 for the flow stream), though other channel
mappings might work as well.
"""
import contextlib
import warnings

import keras
import numpy as np

# Keras layers that normalise RGB inside a model; in a flow backbone they are bypassed.
RGB_PREPROCESSING_LAYERS = (keras.layers.Rescaling, keras.layers.Normalization)

FLOW_SPAN = 255.0 / 128.0  # "symmetric" flow (q - 128) / 128 over the 255 quantisation levels


def flow_backbone(spec, input_shape, weights=None, **kwargs):
    """Builds a backbone for flow stacks, with cross-modality init from `weights`.

    Args:
      spec: a `BackboneSpec`.
      input_shape: `(H, W, 2L)`.
      weights: None (random init), "imagenet", or the path of a Keras weights file of the RGB
        backbone; ImageNet weights are transplanted as described in the module docstring.
      **kwargs: passed to the `keras.applications` builder.

    Returns:
      A `keras.Model` named "backbone" from flow `(B, H, W, 2L)` in [-1, 1] to features `(B, F)`.
    """
    height, width, channels = input_shape
    with warnings.catch_warnings():
        # Keras warns that it "usually expects 1 or 3 input channels": 2L channels is the point here.
        warnings.filterwarnings("ignore", message=".*input channels.*")
        net = spec.build((height, width, channels), weights=None, **kwargs)
    net = _bypass_rgb_preprocessing(net, spec)
    if weights is None:
        return net
    with _float32_policy():
        # The twin only lends its weights and its measured input scale: float32 keeps that scale exact
        # under a mixed_float16 policy (float16 would round 255 - 103.939 to 151.0).
        twin = spec.build((height, width, 3), weights=weights, **kwargs)
    transplant(twin, net, spec)
    return net


@contextlib.contextmanager
def _float32_policy():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def rgb_input_scale(spec, model):
    """Per-channel factor s_c = span_c / FLOW_SPAN of the module docstring, measured on an RGB `model`.

    Args:
      spec: the model's `BackboneSpec` (for `preprocess_input` and the first convolution).
      model: a 3-channel backbone built by `spec.build`.

    Returns:
      float64 array `(3,)`, one factor per input channel of the first convolution's kernel.
    """
    first = spec.first_conv(model)
    stem = keras.Model(model.input, first.input)
    height, width = model.input_shape[1:3]
    black_and_white = np.stack([np.zeros((height, width, 3), np.float32),
                                np.full((height, width, 3), 255.0, np.float32)])
    # Keras' preprocess_input may work in place; give it a copy.
    seen = np.asarray(stem(spec.preprocess_input(black_and_white.copy())), np.float64)
    # The centre pixel: away from any zero padding the stem adds.
    centre = seen[:, seen.shape[1] // 2, seen.shape[2] // 2, :]
    return (centre[1] - centre[0]) / FLOW_SPAN


def cross_modality_kernel(kernel, rgb_scale, channels):
    """The flow kernel: the RGB kernel scaled per channel, averaged over RGB, tiled to `channels`.

    Args:
      kernel: RGB kernel `(kh, kw, 3, filters)`.
      rgb_scale: `(3,)` factors s_c (see `rgb_input_scale`); 256/255 for "tf" backbones.
      channels: input channels of the flow kernel (2L).

    Returns:
      `(kh, kw, channels, filters)` array of the kernel's dtype.
    """
    kernel = np.asarray(kernel)
    scale = np.asarray(rgb_scale, np.float64).reshape(1, 1, 3, 1)
    if np.all(scale == 1.0):
        mean = kernel.mean(axis=2, keepdims=True)  # exactly TSN's average, no rounding from scaling
    else:
        mean = (kernel.astype(np.float64) * scale).mean(axis=2, keepdims=True)
    return np.repeat(mean, channels, axis=2).astype(kernel.dtype)


def transplant(twin, net, spec):
    """Copies the RGB `twin`'s weights into the flow `net`, the first kernel by cross-modality init.

    Both models come from `spec.build` with the same arguments but the number of input channels.
    Layers before the first convolution (RGB normalisation) are not copied.
    """
    source, target = _layers_from_first_conv(twin, spec), _layers_from_first_conv(net, spec)
    if len(source) != len(target):
        raise ValueError(f"{spec.name}: RGB and flow backbones differ ({len(source)} vs {len(target)} "
                         "layers with weights)")
    rgb_scale = rgb_input_scale(spec, twin)
    channels = net.input_shape[-1]
    for index, (src, dst) in enumerate(zip(source, target)):
        if type(src) is not type(dst):
            raise ValueError(f"{spec.name}: layer {src.name} ({type(src).__name__}) does not match "
                             f"{dst.name} ({type(dst).__name__})")
        values = src.get_weights()
        if index == 0:
            values[0] = cross_modality_kernel(values[0], rgb_scale, channels)
        dst.set_weights(values)


def _layers_from_first_conv(model, spec):
    """Layers with weights from the first convolution on, in the order Keras built them."""
    layers = list(model.layers)
    start = layers.index(spec.first_conv(model))
    for layer in layers[:start]:
        if layer.weights and not isinstance(layer, RGB_PREPROCESSING_LAYERS):
            raise ValueError(f"{spec.name}: layer {layer.name} with weights precedes the first convolution")
    return [layer for layer in layers[start:] if layer.weights]


def _bypass_rgb_preprocessing(net, spec):
    """`net` with its RGB normalisation layers (before the first convolution) replaced by identities."""
    layers = list(net.layers)
    stem = layers[:layers.index(spec.first_conv(net))]
    bypassed = {id(layer) for layer in stem if isinstance(layer, RGB_PREPROCESSING_LAYERS)}
    if not bypassed:
        return net

    def clone(layer):
        if id(layer) in bypassed:
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    clone_net = keras.models.clone_model(net, clone_function=clone)
    clone_net.name = net.name
    return clone_net
