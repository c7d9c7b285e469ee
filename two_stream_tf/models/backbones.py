"""Registry of ImageNet backbones from `keras.applications`, each with the facts generic code needs.

A `BackboneSpec` says how to build a backbone (`include_top=False`, global average pooling), which
input size it was trained at, the smallest input it accepts, how its RGB input must be normalised
(the name the input pipeline understands, and Keras' own `preprocess_input`) and where its first
convolution is. Stream builders and the cross-modality init read these facts, so they need no branch
per architecture.

    spec = get_backbone("mobilenet")          # also "MobileNet", "mobilenet_v3_small", "ResNet50V2", ...
    spec.rgb_normalization                    # "tf": the pipeline maps RGB to [-1, 1]
    features = spec.build((112, 112, 3), weights=None, alpha=0.25)   # (B, 112, 112, 3) -> (B, 256)

RGB normalisations (the names `two_stream_tf.data.pipelines` takes as `rgb_normalization`):
  "tf"     x / 127.5 - 1, in [-1, 1]
  "torch"  (x / 255 - ImageNet mean) / ImageNet std
  "caffe"  RGB -> BGR, minus the ImageNet mean (0..255 scale)
  "none"   0..255 as decoded: the backbone normalises inside the model (EfficientNet, MobileNetV3)
"""
import dataclasses
import os
from typing import Any, Callable, Optional

import keras

from two_stream_tf.errors import UserError

RGB_NORMALIZATIONS = ("tf", "torch", "caffe", "none")

# Arguments the stream builders set themselves; a user passing them through **kwargs is a mistake.
RESERVED_ARGUMENTS = ("include_top", "weights", "input_shape", "input_tensor", "pooling", "classes",
                      "classifier_activation", "name")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registered ImageNet backbone.

    Attributes:
      name: registry key, lowercase with underscores (e.g. "mobilenet_v3_small").
      keras_name: the `keras.applications` builder's name (e.g. "MobileNetV3Small").
      builder: the `keras.applications` builder function.
      preprocess_input: Keras' `preprocess_input` for this backbone: maps RGB 0..255 to what the
        backbone expects (the callable form of `rgb_normalization`).
      default_input_size: side of the square input the ImageNet weights were trained at.
      min_input_size: smallest height or width the architecture accepts.
      rgb_normalization: "tf", "torch", "caffe" or "none" (see the module docstring); what the input
        pipeline must do to RGB frames for this backbone.
      first_conv_layer: name of the first convolution, or None where Keras leaves it auto-named
        (InceptionV3, InceptionResNetV2); then it is the first `Conv2D` in layer order.
    """

    name: str
    keras_name: str
    builder: Callable[..., keras.Model] = dataclasses.field(repr=False)
    preprocess_input: Callable[[Any], Any] = dataclasses.field(repr=False)
    default_input_size: int
    min_input_size: int
    rgb_normalization: str
    first_conv_layer: Optional[str]

    def build(self, input_shape, weights=None, **kwargs):
        """Builds the backbone as a feature extractor named "backbone".

        Args:
          input_shape: `(H, W, C)`; C need not be 3 when `weights` is None.
          weights: None (random init), "imagenet" (downloaded by Keras) or the path of a Keras weights
            file of this backbone without top (`.h5` as Keras publishes them, or `.weights.h5`).
          **kwargs: passed to the `keras.applications` builder (e.g. `alpha` for MobileNet).

        Returns:
          A `keras.Model` from `(B, H, W, C)` to pooled features `(B, F)`.

        Raises:
          UserError: a reserved argument in `kwargs`, a missing weights file, or a weights file that
            does not fit this backbone.
        """
        check_backbone_arguments(self, kwargs)
        weights = resolve_weights(weights)
        try:
            model = self.builder(include_top=False, weights=weights, input_shape=tuple(input_shape),
                                 pooling="avg", **kwargs)
        except (TypeError, ValueError, KeyError, OSError) as error:
            # Keras rejects unknown arguments, ImageNet weights for an unpublished variant (e.g. MobileNet
            # alpha=0.3) and weights files of another architecture with these exceptions.
            if weights in (None, "imagenet"):
                raise UserError(f"backbone {self.name} {_describe(kwargs)} with weights={weights!r}: "
                                f"{error}") from error
            raise UserError(f"weights file {weights} does not fit backbone {self.name} "
                            f"{_describe(kwargs)}: {error}") from error
        model.name = "backbone"
        return model

    def first_conv(self, model):
        """The backbone's first convolution layer in `model` (a model built by `build`)."""
        if self.first_conv_layer is not None:
            return model.get_layer(self.first_conv_layer)
        for layer in model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                return layer
        raise ValueError(f"backbone {self.name} has no Conv2D layer")


def _describe(kwargs):
    return "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())) + ")" if kwargs else ""


def check_backbone_arguments(spec, kwargs):
    """Raises UserError if `kwargs` sets an argument the stream builders control."""
    reserved = sorted(set(kwargs) & set(RESERVED_ARGUMENTS))
    if reserved:
        raise UserError(f"backbone {spec.name}: argument(s) {', '.join(reserved)} are set by the model "
                        "builder; pass input_shape/weights to spatial_model/temporal_model instead")


def resolve_weights(weights):
    """Checks a `weights` argument: None, "imagenet" or an existing file; returns it (paths as str)."""
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise UserError(f"weights file not found: {path} (weights must be None, 'imagenet' or "
                            "the path of a Keras weights file)")
        return path
    raise UserError(f"weights={weights!r}: expected None, 'imagenet' or the path of a Keras weights file")


_REGISTRY: dict[str, BackboneSpec] = {}


def _lookup_key(name):
    # "ResNet50V2", "resnet50_v2" and "resnet50v2" all name the same backbone.
    return name.lower().replace("_", "").replace("-", "")


def register_backbone(spec):
    """Adds a backbone to the registry (under its `name` and its Keras name) and returns it."""
    if spec.rgb_normalization not in RGB_NORMALIZATIONS:
        raise ValueError(f"rgb_normalization must be one of {RGB_NORMALIZATIONS}, got {spec.rgb_normalization!r}")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones():
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


def get_backbone(name):
    """The `BackboneSpec` registered as `name` (a registry key or a Keras class name, any case).

    Raises:
      UserError: no backbone of that name; the message lists the registered names.
    """
    if isinstance(name, BackboneSpec):
        return name
    wanted = _lookup_key(str(name))
    for spec in _REGISTRY.values():
        if wanted in (_lookup_key(spec.name), _lookup_key(spec.keras_name)):
            return spec
    raise UserError(f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}")


def _register_keras_applications():
    apps = keras.applications
    # (name, Keras builder, preprocess module, default size, min size, rgb normalisation, first conv)
    table = [
        ("xception", "Xception", "xception", 299, 71, "tf", "block1_conv1"),
        ("inception_v3", "InceptionV3", "inception_v3", 299, 75, "tf", None),
        ("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 299, 75, "tf", None),
        ("resnet50", "ResNet50", "resnet", 224, 32, "caffe", "conv1_conv"),
        ("resnet101", "ResNet101", "resnet", 224, 32, "caffe", "conv1_conv"),
        ("resnet152", "ResNet152", "resnet", 224, 32, "caffe", "conv1_conv"),
        ("resnet50_v2", "ResNet50V2", "resnet_v2", 224, 32, "tf", "conv1_conv"),
        ("resnet101_v2", "ResNet101V2", "resnet_v2", 224, 32, "tf", "conv1_conv"),
        ("resnet152_v2", "ResNet152V2", "resnet_v2", 224, 32, "tf", "conv1_conv"),
        ("vgg16", "VGG16", "vgg16", 224, 32, "caffe", "block1_conv1"),
        ("vgg19", "VGG19", "vgg19", 224, 32, "caffe", "block1_conv1"),
        ("mobilenet", "MobileNet", "mobilenet", 224, 32, "tf", "conv1"),
        ("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, "tf", "Conv1"),
        # MobileNetV3 rescales inside the model (include_preprocessing=True, Keras' default).
        ("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224, 32, "none", "conv"),
        ("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224, 32, "none", "conv"),
        # EfficientNet rescales and normalises inside the model.
        ("efficientnet_b0", "EfficientNetB0", "efficientnet", 224, 32, "none", "stem_conv"),
        ("efficientnet_b1", "EfficientNetB1", "efficientnet", 240, 32, "none", "stem_conv"),
        ("efficientnet_b2", "EfficientNetB2", "efficientnet", 260, 32, "none", "stem_conv"),
        ("efficientnet_b3", "EfficientNetB3", "efficientnet", 300, 32, "none", "stem_conv"),
        ("densenet121", "DenseNet121", "densenet", 224, 32, "torch", "conv1_conv"),
    ]
    for name, keras_name, module, size, min_size, normalization, first_conv in table:
        register_backbone(BackboneSpec(
            name=name, keras_name=keras_name, builder=getattr(apps, keras_name),
            preprocess_input=getattr(apps, module).preprocess_input, default_input_size=size,
            min_input_size=min_size, rgb_normalization=normalization, first_conv_layer=first_conv))


_register_keras_applications()
