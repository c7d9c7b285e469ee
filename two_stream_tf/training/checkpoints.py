"""Checkpoint files in a model_dir: names, atomic saving, finding the best and the latest.

Periodic checkpoints are named `EPOCH.BEST_TOP1.CURRENT_TOP1.keras`, e.g. `007.0.8123.0.7990.keras`:
epoch 7 (1-based), best validation top-1 so far 0.8123, this epoch's 0.7990 — the naming of the Keras
Xception two-stream implementation, which lets a folder listing show the run's progress. The best model
by top-1 on the held-out validation videos (never the test list) is also kept as `best.keras`; a run
folder given as a model means its `final.keras` (see `find_model_file`).
"""
import dataclasses
import os
import re

from two_stream_tf import storage
from two_stream_tf.training import atomic

BEST_NAME = "best.keras"
FINAL_NAME = "final.keras"
_PERIODIC = re.compile(r"^(\d{3,})\.(\d\.\d{4})\.(\d\.\d{4})\.keras$")


@dataclasses.dataclass(frozen=True, order=True)
class PeriodicCheckpoint:
    """A parsed periodic checkpoint name.

    Attributes:
      epoch: 1-based epoch after which it was saved.
      best_top1: best validation top-1 up to and including this epoch.
      current_top1: this epoch's validation top-1.
      path: the file.
    """

    epoch: int
    best_top1: float
    current_top1: float
    path: str = dataclasses.field(compare=False)


def periodic_name(epoch, best_top1, current_top1):
    """`periodic_name(7, 0.8123, 0.799) == "007.0.8123.0.7990.keras"` (epoch 1-based)."""
    return f"{int(epoch):03d}.{float(best_top1):.4f}.{float(current_top1):.4f}.keras"


def parse_periodic_name(name):
    """The `PeriodicCheckpoint` a file name encodes, or None for other names."""
    match = _PERIODIC.match(storage.basename(name))
    if not match:
        return None
    return PeriodicCheckpoint(int(match.group(1)), float(match.group(2)), float(match.group(3)), os.fspath(name))


def list_periodic(model_dir):
    """The periodic checkpoints in `model_dir` (any `tf.io.gfile` path), oldest epoch first."""
    found = (parse_periodic_name(storage.join(model_dir, name)) for name in storage.listdir(model_dir))
    return sorted(c for c in found if c is not None)


def latest_periodic(model_dir):
    """The periodic checkpoint of the highest epoch, or None."""
    checkpoints = list_periodic(model_dir)
    return checkpoints[-1] if checkpoints else None


def find_model_file(path):
    """Resolves a model argument: a `.keras` file, or a model_dir.

    A model_dir gives its `final.keras` (the model after the last epoch, what published numbers report),
    else, while a run is still going, its latest periodic checkpoint, else `best.keras`. The best model by
    validation is only taken first when asked for by its file name, so no number is quietly a selected one.

    Paths may be on any `tf.io.gfile` file system (`gs://`, `ram://`).

    Returns:
      the `.keras` file path, or None when `path` holds no model.
    """
    path = os.fspath(path)
    if storage.isfile(path):
        return path
    if storage.isdir(path):
        final = storage.join(path, FINAL_NAME)
        if storage.isfile(final):
            return final
        latest = latest_periodic(path)
        if latest is not None:
            return latest.path
        best = storage.join(path, BEST_NAME)
        if storage.isfile(best):
            return best
    return None


def save_model(model, path):
    """Saves a Keras model (`.keras`) atomically: a kill mid-save leaves the previous file intact."""
    with atomic.atomic_output(path) as tmp:
        model.save(tmp)


def save_weights(model, path):
    """Saves model (and optimizer) weights (`.weights.h5`) atomically."""
    with atomic.atomic_output(path) as tmp:
        model.save_weights(tmp)
