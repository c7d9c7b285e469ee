"""Saving and loading stream and two-stream models: `.keras` files and TensorFlow SavedModels.

Models hold no Lambda layers; the library's own layers, learning-rate schedules and loss are registered
with `keras.saving.register_keras_serializable`, so `.keras` files (training checkpoints with their
optimizer included) load with Keras' safe mode on (nothing arbitrary runs on load). Importing
`two_stream_tf.models` registers them; `load_model` does it for you. Paths may be on any `tf.io.gfile`
file system (`gs://`, `ram://`).

    save_model(model, "spatial.keras")
    model = load_model("spatial.keras")
    export_saved_model(model, "export/spatial")         # serving signature "serving_default"
    serve = tf.saved_model.load("export/spatial").signatures["serving_default"]
"""
import os

import keras

# Imported for their side effect: registering the custom layers, and the schedules and loss a training
# checkpoint's optimizer and compile settings name, before a model is deserialised.
from two_stream_tf.models import consensus, fusion  # noqa: F401
from two_stream_tf.training import losses, schedules  # noqa: F401
from two_stream_tf import storage
from two_stream_tf.errors import UserError
from two_stream_tf.training import checkpoints


def save_model(model, path):
    """Saves `model` as a `.keras` file (architecture, weights, optimizer state), atomically.

    Returns:
      The path written.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise UserError(f"model file {path}: the name must end with .keras")
    checkpoints.save_model(model, path)
    return path


def load_model(path, compile=True):
    """Loads a `.keras` model saved by `save_model` (or `model.save`, or a training checkpoint), with
    `safe_mode=True`.

    Raises:
      UserError: the file does not exist, or its file system cannot be reached (naming the path).
    """
    path = os.fspath(path)
    storage.check(path, "model file")
    if not storage.isfile(path):
        raise UserError(f"model file not found: {path}")
    with storage.local_copy(path) as local:
        return keras.saving.load_model(local, compile=compile, safe_mode=True)


def export_saved_model(model, export_dir):
    """Exports `model` for serving as a TensorFlow SavedModel.

    The SavedModel's `serving_default` signature (and its `serve` function) takes the model's
    inputs by name ("rgb", "flow" or both) and returns the class probabilities; load it with
    `tf.saved_model.load(export_dir)`, without Keras or this library.
    """
    export_dir = os.fspath(export_dir)
    model.export(export_dir, format="tf_saved_model", verbose=False)
    return export_dir
