"""Saving and loading stream and two-stream models: `.keras` files and TensorFlow SavedModels.

Models hold no Lambda layers; the library's own layers are registered with
`keras.saving.register_keras_serializable`, so `.keras` files load with Keras' safe mode on (nothing
arbitrary runs on load). Importing `two_stream_tf.models` registers the layers; `load_model` does it
for you.

    save_model(model, "spatial.keras")
    model = load_model("spatial.keras")
    export_saved_model(model, "export/spatial")         # serving signature "serving_default"
    serve = tf.saved_model.load("export/spatial").signatures["serving_default"]
"""
import os

import keras

# Imported for their side effect: registering the custom layers before a model is deserialised.
from two_stream_tf.models import consensus, fusion  # noqa: F401
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
    """Loads a `.keras` model saved by `save_model` (or `model.save`), with `safe_mode=True`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"model file not found: {path}")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def export_saved_model(model, export_dir):
    """Exports `model` for serving as a TensorFlow SavedModel.

    The SavedModel's `serving_default` signature (and its `serve` function) takes the model's
    inputs by name ("rgb", "flow" or both) and returns the class probabilities; load it with
    `tf.saved_model.load(export_dir)`, without Keras or this library.
    """
    export_dir = os.fspath(export_dir)
    model.export(export_dir, format="tf_saved_model", verbose=False)
    return export_dir
