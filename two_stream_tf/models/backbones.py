"""Registry of ImageNet backbones from `keras.applications`, each with the facts generic code needs.

A `BackboneSpec` says how to build a backbone (`include_top=False`, global average pooling), which
input size it was trained at, the smallest input it accepts, how its RGB input must be normalised
(the name the input pipeline understands, and Keras' own `preprocess_input`) and where its first
convolution is, and how its layers group into blocks (for fine-tuning the top blocks). Stream builders,
the cross-modality init and staged fine-tuning read these facts, so they need no branch per architecture.

    spec = get_backbone("mobilenet")          # also "MobileNet", "mobilenet_v3_small", "ResNet50V2", ...
    spec.rgb_normalization                    # "tf": the pipeline maps RGB to [-1, 1]
    features = spec.build((112, 112, 3), weights=None, alpha=0.25)   # (B, 112, 112, 3) -> (B, 256)
    spec.blocks(features)[-2:]                # the top two blocks: Block("12", layers), Block("13", layers)

RGB normalisations (the names `two_stream_tf.data.pipelines` takes as `rgb_normalization`):
  "tf"     x / 127.5 - 1, in [-1, 1]
  "torch"  (x / 255 - ImageNet mean) / ImageNet std
  "caffe"  RGB -> BGR, minus the ImageNet mean (0..255 scale)
  "none"   0..255 as decoded: the backbone normalises inside the model (EfficientNet, MobileNetV3)
"""
import dataclasses
import inspect
import numbers
import os
import re
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
      block_pattern: a regular expression whose first group names the block a layer belongs to (e.g.
        `^(mixed\\d+)$` for InceptionV3's mixed0..mixed10), or None for a backbone without registered
        blocks. See `blocks`.
    """

    name: str
    keras_name: str
    builder: Callable[..., keras.Model] = dataclasses.field(repr=False)
    preprocess_input: Callable[[Any], Any] = dataclasses.field(repr=False)
    default_input_size: int
    min_input_size: int
    rgb_normalization: str
    first_conv_layer: Optional[str]
    block_pattern: Optional[str] = None

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
        check_builder_arguments(self, kwargs)
        weights = resolve_weights(weights)
        try:
            model = self.builder(include_top=False, weights=weights, input_shape=tuple(input_shape),
                                 pooling="avg", **kwargs)
        except (TypeError, ValueError, KeyError, OSError) as error:
            # Keras rejects unknown arguments, ImageNet weights for an unpublished variant (e.g. MobileNet
            # alpha=0.3) and weights files of another architecture with these exceptions.
            if weights in (None, "imagenet") or not self._builds_without_weights(input_shape, kwargs):
                raise UserError(f"backbone {self.name} {_describe(kwargs)} with weights={weights!r}: "
                                f"{_first_line(error)}") from error
            raise UserError(f"weights file {weights} does not fit backbone {self.name} "
                            f"{_describe(kwargs)}: {_first_line(error)}") from error
        model.name = "backbone"
        return model

    def _builds_without_weights(self, input_shape, kwargs):
        # Tells a weights file that does not fit from arguments that fit no weights at all.
        try:
            self.builder(include_top=False, weights=None, input_shape=tuple(input_shape), pooling="avg", **kwargs)
        except (TypeError, ValueError, KeyError, OSError):
            return False
        return True

    def first_conv(self, model):
        """The backbone's first convolution layer in `model` (a model built by `build`)."""
        if self.first_conv_layer is not None:
            return model.get_layer(self.first_conv_layer)
        for layer in model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                return layer
        raise ValueError(f"backbone {self.name} has no Conv2D layer")

    def blocks(self, model):
        """The backbone's blocks in `model` (a model built by `build`), input side first.

        A block holds every layer from just after the graph cut that precedes the first layer named by
        `block_pattern` for it, up to the next block: so auto-named layers (Inception's branch
        convolutions, Xception's residual projections) land in the block they compute. Layers before the
        first block (the stem) belong to none; layers after the last block's named layers (a final
        convolution, the pooling) belong to the last.

        Returns:
          A tuple of `Block`s.

        Raises:
          UserError: the backbone has no registered blocks.
        """
        if self.block_pattern is None:
            raise UserError(f"backbone {self.name} has no registered blocks; fine-tune it whole ('all') "
                            "or its classifier alone ('classifier')")
        layers = list(model.layers)
        pattern = re.compile(self.block_pattern)
        first_seen = {}
        for position, layer in enumerate(layers):
            match = pattern.search(layer.name)
            if match and match.group(1) not in first_seen:
                first_seen[match.group(1)] = position
        if not first_seen:
            raise ValueError(f"backbone {self.name}: no layer of {model.name!r} matches {self.block_pattern!r}")
        cuts = _graph_cuts(layers)
        starts = []
        for name, position in first_seen.items():
            start = max(cut for cut in cuts if cut < position) + 1
            if starts and start <= starts[-1][1]:
                raise ValueError(f"backbone {self.name}: block {name!r} does not follow block {starts[-1][0]!r}")
            starts.append((name, start))
        ends = [start for _, start in starts[1:]] + [len(layers)]
        return tuple(Block(name, tuple(layers[start:end])) for (name, start), end in zip(starts, ends))


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a backbone: its name (e.g. "mixed9", "block14", "conv5_block3") and its layers."""

    name: str
    layers: tuple = dataclasses.field(repr=False)


def _graph_cuts(layers):
    """Positions c in `layers` (a topological order) where the graph narrows to one point: no layer after c
    reads from a layer before c. Blocks begin right after such a point."""
    position = {id(layer): index for index, layer in enumerate(layers)}
    earliest_input = []
    for index, layer in enumerate(layers):
        parents = [position[id(parent.operation)] for node in layer._inbound_nodes
                   for parent in node.parent_nodes if id(parent.operation) in position]
        earliest_input.append(min(parents, default=index))
    cuts, reach = [], len(layers)
    for index in range(len(layers) - 1, -1, -1):
        if reach >= index:
            cuts.append(index)
        reach = min(reach, earliest_input[index])
    return sorted(cuts)


def _describe(kwargs):
    return "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())) + ")" if kwargs else ""


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_builder_arguments(spec, kwargs):
    """Raises UserError for a backbone argument its `keras.applications` builder does not take, or a value
    of another kind than the builder's default (a word where it takes a number, ...)."""
    try:
        parameters = inspect.signature(spec.builder).parameters
    except (TypeError, ValueError):  # a builder without a readable signature: let Keras judge
        return
    accepted = [name for name in parameters if name not in RESERVED_ARGUMENTS]
    for name, value in sorted(kwargs.items()):
        if name in RESERVED_ARGUMENTS:
            continue  # check_backbone_arguments explains these
        if name not in parameters:
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
                continue  # a builder taking **kwargs: Keras judges the name
            raise UserError(f"backbone {spec.name} takes no argument {name!r} (it takes "
                            f"{', '.join(accepted) or 'none'})")
        default = parameters[name].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise UserError(f"backbone {spec.name}: {name}={value!r} is not true or false (default {default})")
        elif isinstance(default, numbers.Number) and not (isinstance(value, numbers.Number)
                                                          and not isinstance(value, bool)):
            raise UserError(f"backbone {spec.name}: {name}={value!r} is not a number (default {default})")


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
    # (name, Keras builder, preprocess module, default size, min size, rgb normalisation, first conv,
    #  block pattern: group 1 names the block of a layer, see BackboneSpec.blocks)
    table = [
        ("xception", "Xception", "xception", 299, 71, "tf", "block1_conv1", r"^(block\d+)_"),
        ("inception_v3", "InceptionV3", "inception_v3", 299, 75, "tf", None, r"^(mixed\d+)$"),
        ("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 299, 75, "tf", None,
         r"^(mixed_\d[a-z]|block\d+_\d+)(?:_|$)"),
        ("resnet50", "ResNet50", "resnet", 224, 32, "caffe", "conv1_conv", r"^(conv\d_block\d+)_"),
        ("resnet101", "ResNet101", "resnet", 224, 32, "caffe", "conv1_conv", r"^(conv\d_block\d+)_"),
        ("resnet152", "ResNet152", "resnet", 224, 32, "caffe", "conv1_conv", r"^(conv\d_block\d+)_"),
        ("resnet50_v2", "ResNet50V2", "resnet_v2", 224, 32, "tf", "conv1_conv", r"^(conv\d_block\d+)_"),
        ("resnet101_v2", "ResNet101V2", "resnet_v2", 224, 32, "tf", "conv1_conv", r"^(conv\d_block\d+)_"),
        ("resnet152_v2", "ResNet152V2", "resnet_v2", 224, 32, "tf", "conv1_conv", r"^(conv\d_block\d+)_"),
        ("vgg16", "VGG16", "vgg16", 224, 32, "caffe", "block1_conv1", r"^(block\d)_"),
        ("vgg19", "VGG19", "vgg19", 224, 32, "caffe", "block1_conv1", r"^(block\d)_"),
        ("mobilenet", "MobileNet", "mobilenet", 224, 32, "tf", "conv1", r"^conv_(?:dw|pw|pad)_(\d+)(?:_|$)"),
        ("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, "tf", "Conv1", r"^(expanded_conv|block_\d+)_"),
        # MobileNetV3 rescales inside the model (include_preprocessing=True, Keras' default).
        ("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224, 32, "none", "conv",
         r"^(expanded_conv(?:_\d+)?)_"),
        ("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224, 32, "none", "conv",
         r"^(expanded_conv(?:_\d+)?)_"),
        # EfficientNet rescales and normalises inside the model.
        ("efficientnet_b0", "EfficientNetB0", "efficientnet", 224, 32, "none", "stem_conv", r"^(block\d[a-z])_"),
        ("efficientnet_b1", "EfficientNetB1", "efficientnet", 240, 32, "none", "stem_conv", r"^(block\d[a-z])_"),
        ("efficientnet_b2", "EfficientNetB2", "efficientnet", 260, 32, "none", "stem_conv", r"^(block\d[a-z])_"),
        ("efficientnet_b3", "EfficientNetB3", "efficientnet", 300, 32, "none", "stem_conv", r"^(block\d[a-z])_"),
        ("densenet121", "DenseNet121", "densenet", 224, 32, "torch", "conv1_conv", r"^(conv\d_block\d+|pool\d)_"),
    ]
    for name, keras_name, module, size, min_size, normalization, first_conv, blocks in table:
        register_backbone(BackboneSpec(
            name=name, keras_name=keras_name, builder=getattr(apps, keras_name),
            preprocess_input=getattr(apps, module).preprocess_input, default_input_size=size,
            min_input_size=min_size, rgb_normalization=normalization, first_conv_layer=first_conv,
            block_pattern=blocks))


_register_keras_applications()
