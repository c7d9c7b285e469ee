"""Starting a new run from a trained stream model (`TrainConfig.init_from`).

The source is a `.keras` file, a run folder (its `final.keras`, else its latest checkpoint, else
`best.keras`) or a URL of a `.keras` file (downloaded once, see `two_stream_tf.models.remote`). The new
model is built as the run describes it and then takes the source's weights:

  - the same classes: every weight, the classifier included;
  - other classes (another count, or other names in the source run's `train_config.json`): every weight
    but the classifier, which keeps its fresh initialisation ("re-heading").

The two must be the same kind of stream (RGB or flow), with the same stack length, input size and
backbone; otherwise `UserError` says which differs. Single-snippet and TSN segment models share their
weights, so either may start from the other.
"""
import dataclasses
import os

from two_stream_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What `initialize_from` did.

    Attributes:
      source: the `.keras` file the weights came from (the cached download for a URL).
      reheaded: True when the classifier was left new because the classes differ.
      source_classes: the source's class count.
    """

    source: str
    reheaded: bool
    source_classes: int


def resolve_source(location, cache_dir=None):
    """The local `.keras` file of an init_from location (a file, a run folder or a URL).

    Raises:
      UserError: nothing loadable there.
    """
    from two_stream_tf.models import remote
    from two_stream_tf.training import checkpoints
    if remote.is_url(location):
        return remote.fetch_model(location, cache_dir=cache_dir)
    found = checkpoints.find_model_file(location) if location else None
    if found is None:
        raise UserError(f"init_from {location}: no trained model there (a .keras file, a run folder with "
                        "final.keras, periodic checkpoints or best.keras, or a URL of a .keras file)")
    return found


def load_source(location, cache_dir=None):
    """`(model, path, run config or None)` of an init_from location."""
    from two_stream_tf.models import load_model
    from two_stream_tf.training.fit import load_run_config
    path = resolve_source(location, cache_dir=cache_dir)
    try:
        model = load_model(path, compile=False)
    except UserError:
        raise
    except Exception as error:  # Keras raises many kinds for a file that is not a Keras model
        raise UserError(f"init_from {path}: cannot be loaded as a Keras model ({type(error).__name__})") from None
    try:
        run = load_run_config(os.path.dirname(os.path.abspath(path)))
    except ValueError:  # a broken JSON file beside the model: decide on the model alone
        run = None
    return model, path, run


def frame_shape(model):
    """`(H, W, C)` one frame or stack of a stream model takes (also for a segment model)."""
    if isinstance(model.input, dict):
        return None
    return tuple(model.input_shape[-3:])


def _describe_input(shape):
    height, width, channels = shape
    what = "RGB" if channels == 3 else f"flow, {channels // 2} pairs"
    return f"{height}x{width} {what}"


def _classifier(model):
    from keras.layers import Dense
    backbone = model.get_layer("backbone")
    dense = [layer for layer in model.layers if layer is not backbone and isinstance(layer, Dense)]
    if len(dense) != 1:
        raise UserError(f"model {model.name}: expected one classifier layer after the backbone, found {len(dense)}")
    return dense[0]


def check_compatible(source, target, where):
    """Raises UserError unless `source` can initialise `target` (stream, stack length, size, backbone)."""
    if frame_shape(source) is None:
        raise UserError(f"init_from {where}: a two-stream model; start a stream run from a stream model")
    try:
        source.get_layer("backbone")
    except ValueError:
        raise UserError(f"init_from {where}: model {source.name} has no 'backbone' layer; it was not built by "
                        "spatial_model/temporal_model") from None
    have, want = frame_shape(source), frame_shape(target)
    if (have[2] == 3) != (want[2] == 3):
        kinds = {True: "spatial (RGB)", False: "temporal (flow)"}
        raise UserError(f"init_from {where}: a {kinds[have[2] == 3]} stream model; this run trains the "
                        f"{kinds[want[2] == 3]} stream")
    if have[2] != want[2]:
        raise UserError(f"init_from {where}: takes stacks of {have[2] // 2} flow pairs; this run's stack_length "
                        f"is {want[2] // 2}")
    if have[:2] != want[:2]:
        raise UserError(f"init_from {where}: takes {_describe_input(have)} inputs; this run builds "
                        f"{_describe_input(want)} (set image_size to {have[0]})")
    source_weights = source.get_layer("backbone").weights
    target_weights = target.get_layer("backbone").weights
    for theirs, mine in zip(source_weights, target_weights):
        if tuple(theirs.shape) != tuple(mine.shape):
            raise UserError(f"init_from {where}: its backbone ({source.name}) is not this run's ({target.name}): "
                            f"{_short_path(theirs)} is {tuple(theirs.shape)}, here {tuple(mine.shape)}; give the "
                            "same backbone and backbone_kwargs")
    if len(source_weights) != len(target_weights):
        raise UserError(f"init_from {where}: its backbone ({source.name}, {len(source_weights)} weights) is not "
                        f"this run's ({target.name}, {len(target_weights)} weights); give the same backbone and "
                        "backbone_kwargs")


def _short_path(variable):
    # "spatial_mobilenet/backbone/conv1/kernel" -> "conv1/kernel"
    return "/".join(variable.path.split("/")[-2:])


def initialize_from(model, location, classes=None, cache_dir=None):
    """Copies a trained stream model's weights into `model` (see the module docstring).

    Args:
      model: the new run's stream model (built, e.g. with random or ImageNet weights).
      location: a `.keras` file, a run folder or a URL.
      classes: the new run's class names (compared with the source run's, when it recorded them).
      cache_dir: where URL downloads are cached (default: Keras' cache folder).

    Returns:
      A `WarmStart`.

    Raises:
      UserError: no model at `location`, or one that does not fit `model`.
    """
    source, path, run = load_source(location, cache_dir=cache_dir)
    check_compatible(source, model, path)
    model.get_layer("backbone").set_weights(source.get_layer("backbone").get_weights())
    source_head, target_head = _classifier(source), _classifier(model)
    source_classes = int(source_head.kernel.shape[-1])
    same = source_classes == int(target_head.kernel.shape[-1])
    recorded = (run or {}).get("classes")
    if same and classes is not None and recorded is not None and list(recorded) != list(classes):
        same = False  # as many classes, but other ones (or in another order): a new classifier
    if same:
        target_head.set_weights(source_head.get_weights())
    return WarmStart(source=path, reheaded=not same, source_classes=source_classes)


def source_image_size(location, cache_dir=None):
    """The input side of the model at an init_from location (for a run that does not set image_size)."""
    source, path, _ = load_source(location, cache_dir=cache_dir)
    shape = frame_shape(source)
    if shape is None:
        raise UserError(f"init_from {path}: a two-stream model; start a stream run from a stream model")
    return shape[0]
