"""Models and class names for prediction: `.keras` files (or Keras models) sorted into their streams.

A prediction model is one of:
  - a two-stream model from `two_stream_tf.models.two_stream_model` (inputs `{"rgb", "flow"}`);
  - a spatial and a temporal stream model, fused here by the (weighted) average of their softmax scores;
  - a single stream model (spatial or temporal alone).
Each may be given as a Keras model, a `.keras` file, a URL of a `.keras` file (downloaded once and cached,
see `two_stream_tf.models.remote`), or a training run folder (`model_dir`: its `final.keras`, else its
latest checkpoint; a best-by-validation model only when its file is named). Which stream a single-input
model is comes from its input channels: 3 is RGB, 2L is a stack of L flow pairs. TSN segment models are
unfolded into their per-frame models.

What the model file does not hold comes from the run folder's `train_config.json` when there is one
(class names, the RGB normalisation), else from the model's name (`spatial_<backbone>`, as
`spatial_model` names it, gives the backbone's normalisation) or from the caller.
"""
import dataclasses
import os

import keras

from two_stream_tf.errors import UserError

_CONFIG_NAME = "train_config.json"


@dataclasses.dataclass
class PredictionModels:
    """The models prediction runs, and what it needs to know about their inputs.

    Attributes:
      spatial: per-frame spatial stream `(B, H, W, 3) -> (B, K)`, or None.
      temporal: per-stack temporal stream `(B, H, W, 2L) -> (B, K)`, or None.
      fused: a two-stream model `{"rgb", "flow"} -> (B, K)` (then spatial and temporal are None), or None.
      fused_sequence: S when `fused` scores sequences of S snippets (`(B, S, H, W, C)` inputs), else None.
      stream_weights: `(w_rgb, w_flow)` for averaging separate streams, normalised to sum 1.
      num_classes: K.
      rgb_size, flow_size: `(height, width)` of the inputs, or None for an absent stream.
      stack_length: L, or None without a temporal stream.
      rgb_normalization: "tf", "torch", "caffe" or "none", or None without a spatial stream.
      class_names: K names.
      run_configs: the `train_config.json` contents found beside the model files.
    """

    spatial: object = None
    temporal: object = None
    fused: object = None
    fused_sequence: int | None = None
    stream_weights: tuple = (0.5, 0.5)
    num_classes: int = 0
    rgb_size: tuple | None = None
    flow_size: tuple | None = None
    stack_length: int | None = None
    rgb_normalization: str | None = None
    class_names: tuple = ()
    run_configs: list = dataclasses.field(default_factory=list)

    @property
    def uses_rgb(self):
        return self.rgb_size is not None

    @property
    def uses_flow(self):
        return self.flow_size is not None


def load_prediction_models(model_or_paths, class_names=None, *, rgb_normalization=None, stack_length=None,
                           stream_weights=None):
    """Loads and checks the models for prediction.

    Args:
      model_or_paths: a Keras model, a `.keras` path, URL or run folder, or a pair/list of them (a spatial and a
        temporal stream, in any order).
      class_names: class names (a sequence of K strings), a classInd-style file (`1 ApplyEyeMakeup` per
        line), or None to use the run's `train_config.json` (else "class_0" …).
      rgb_normalization: the spatial stream's RGB normalisation; None finds it (see the module docstring).
      stack_length: L; None takes it from the temporal model (given, it must agree).
      stream_weights: `(w_rgb, w_flow)` for separate streams; None averages them equally.

    Returns:
      `PredictionModels`.

    Raises:
      UserError: a missing or unreadable model file, models that do not fit together, a class list of the
        wrong length.
    """
    items = list(model_or_paths) if isinstance(model_or_paths, (list, tuple)) else [model_or_paths]
    if not 1 <= len(items) <= 2:
        raise UserError(f"expected one model (two-stream or single stream) or two stream models, got {len(items)}")
    loaded = [_load(item) for item in items]
    result = PredictionModels(run_configs=[config for _, config, _ in loaded if config])
    for model, _, where in loaded:
        _assign(result, model, where, len(items))
    _check_classes(result, loaded)
    result.stack_length = _stack_length(result, stack_length)
    if result.uses_rgb:
        result.rgb_normalization = _rgb_normalization(result, loaded, rgb_normalization)
    if stream_weights is not None:
        weights = tuple(float(w) for w in stream_weights)
        if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
            raise UserError(f"stream weights {stream_weights}: expected two non-negative numbers (rgb, flow), "
                            "not both zero")
        result.stream_weights = (weights[0] / sum(weights), weights[1] / sum(weights))
    result.class_names = _class_names(class_names, result)
    return result


def _load(item):
    """(model, run config or None, description) of a model argument."""
    if isinstance(item, keras.Model):
        return item, None, f"model {item.name}"
    from two_stream_tf.models import load_model, remote
    from two_stream_tf.training.checkpoints import find_model_file
    path = os.fspath(item)
    if remote.is_url(path):
        path = remote.fetch_model(path)  # downloaded once, then read from the cache
    found = find_model_file(path)
    if found is None:
        what = "no model in folder" if os.path.isdir(path) else "model file not found"
        raise UserError(f"{what}: {path}")
    try:
        model = load_model(found, compile=False)
    except UserError:
        raise
    except Exception as error:  # Keras raises many kinds for a file that is not a Keras model
        raise UserError(f"{found}: cannot be loaded as a Keras model ({type(error).__name__}: "
                        f"{_first_line(error)})") from None
    return model, _run_config(os.path.dirname(os.path.abspath(found))), found


def _first_line(error):
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else "no details"


def _run_config(folder):
    from two_stream_tf.training.fit import load_run_config
    try:
        return load_run_config(folder)
    except ValueError:  # a broken JSON file beside the model: ignore it, the caller can pass what it held
        return None


def _assign(result, model, where, count):
    from two_stream_tf.evaluation.protocol import per_view_model, sequence_length
    if isinstance(model.input, dict):
        if count != 1:
            raise UserError(f"{where} is a two-stream model; give it alone, not with another model")
        names = set(model.input)
        if names != {"rgb", "flow"}:
            raise UserError(f"{where}: a two-stream model takes inputs 'rgb' and 'flow', this one {sorted(names)}")
        result.fused = model
        result.fused_sequence = sequence_length(model)
        rgb_shape, flow_shape = (tuple(model.input[key].shape[-3:]) for key in ("rgb", "flow"))
        result.rgb_size, result.flow_size = rgb_shape[:2], flow_shape[:2]
        result.stack_length = flow_shape[2] // 2
        result.num_classes = int(model.output_shape[-1])
        _check_sizes(result, where)
        return
    model = per_view_model(model)
    shape = tuple(model.input_shape[-3:])
    channels = shape[2]
    if channels == 3:
        if result.spatial is not None:
            raise UserError(f"{where} is a second spatial (RGB) model; give one spatial and one temporal model")
        result.spatial, result.rgb_size = model, shape[:2]
    elif channels and channels % 2 == 0:
        if result.temporal is not None:
            raise UserError(f"{where} is a second temporal (flow) model; give one spatial and one temporal model")
        result.temporal, result.flow_size = model, shape[:2]
        result.stack_length = channels // 2
    else:
        raise UserError(f"{where}: input has {channels} channels; expected 3 (RGB) or 2L (L flow pairs)")
    classes = int(model.output_shape[-1])
    if result.num_classes and classes != result.num_classes:
        raise UserError(f"{where} scores {classes} classes, the other model {result.num_classes}")
    result.num_classes = classes
    _check_sizes(result, where)


def _check_sizes(result, where):
    for size in (result.rgb_size, result.flow_size):
        if size is None:
            continue
        if None in size:
            raise UserError(f"{where}: the model takes inputs of any size; build it with a fixed input_shape")
        if size[0] != size[1]:
            raise UserError(f"{where}: input {size[0]}x{size[1]} is not square; the test crops are square")


def _check_classes(result, loaded):
    if result.num_classes < 1:
        raise UserError(f"{loaded[0][2]}: the model outputs no classes")


def _stack_length(result, stack_length):
    if not result.uses_flow:
        return None
    if stack_length is not None and int(stack_length) != result.stack_length:
        raise UserError(f"stack length {stack_length} does not fit the temporal model, which takes "
                        f"{2 * result.stack_length} channels = {result.stack_length} flow pairs")
    return result.stack_length


def _rgb_normalization(result, loaded, given):
    from two_stream_tf.models import RGB_NORMALIZATIONS, get_backbone
    if given is not None:
        if given not in RGB_NORMALIZATIONS:
            raise UserError(f"RGB normalisation {given!r}: expected one of {', '.join(RGB_NORMALIZATIONS)}")
        return given
    for config in result.run_configs:
        if config.get("rgb_normalization") in RGB_NORMALIZATIONS:
            return config["rgb_normalization"]
    for model, _, _ in loaded:
        for name in [model.name] + [layer.name for layer in model.layers]:
            if name.startswith("spatial_"):
                try:
                    return get_backbone(name[len("spatial_"):].removesuffix("_frames")).rgb_normalization
                except UserError:
                    continue
    raise UserError(f"{loaded[0][2]}: cannot tell how the RGB stream normalises its input (no train_config.json "
                    "beside it, and not named spatial_<backbone>); give the RGB normalisation "
                    "(tf, torch, caffe or none)")


def _class_names(class_names, result):
    from two_stream_tf.data.splits import read_class_index
    where = None
    if isinstance(class_names, (str, os.PathLike)):
        where = os.fspath(class_names)
        if not os.path.isfile(where):
            raise UserError(f"class index file not found: {where}")
        names = tuple(read_class_index(where))
    elif class_names is not None:
        names, where = tuple(str(name) for name in class_names), "the class names given"
    else:
        names = ()
        for config in result.run_configs:
            if config.get("classes"):
                names, where = tuple(config["classes"]), _CONFIG_NAME
                break
        if not names:
            return tuple(f"class_{k}" for k in range(result.num_classes))
    if len(names) != result.num_classes:
        raise UserError(f"{where}: {len(names)} classes, but the model scores {result.num_classes}")
    return names
