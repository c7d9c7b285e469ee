"""Callbacks for crash-safe training runs: backups, named checkpoints, a resumable CSV log, TensorBoard images.

Everything written goes through `two_stream_tf.training.atomic`, so killing the process at any instant
leaves files that load; the CSV log and the checkpoint history keep their previous generation, so a
damaged one falls back to it with a warning. Rerunning the same command resumes (see
`two_stream_tf.training.backup`), and the CSV log and checkpoint history drop the rows of epochs that are
trained again. Paths may be on any `tf.io.gfile` file system (`two_stream_tf.storage`).
"""
import csv
import io
import json
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from two_stream_tf import storage
from two_stream_tf.training import atomic, backup, checkpoints, summaries


# The backup callback lives in `two_stream_tf.training.backup`; this name is kept for existing callers.
AtomicBackupAndRestore = backup.RunBackup


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (`learning_rate`), for the CSV log."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class ResumableCSVLogger(keras.callbacks.Callback):
    """One CSV row per epoch, rewritten atomically, that survives restarts.

    On the first epoch of a run, rows of that epoch and later (left by an interrupted run that is now
    repeating them) are dropped; earlier rows are kept. Columns: `epoch` (0-based, as Keras'
    `CSVLogger`), then the logged values in sorted order.

    Args:
      path: the CSV file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self._rows = None

    @staticmethod
    def parse(path):
        """The rows of one CSV log file as dicts of floats (epoch as int); raises ValueError on a damaged one."""
        text = storage.read_text(path)
        if text and not text.endswith("\n"):
            raise ValueError("the last line is cut off")
        rows = []
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            if None in row or None in row.values():
                raise ValueError(f"line {number} has a different number of fields than the header")
            try:
                rows.append({k: (int(v) if k == "epoch" else float(v) if v != "" else None) for k, v in row.items()})
            except ValueError as error:
                raise ValueError(f"line {number}: {error}") from None
        if rows and [r["epoch"] for r in rows] != sorted({r["epoch"] for r in rows}):
            raise ValueError("the epochs are not in increasing order")
        return rows

    @staticmethod
    def read_rows(path):
        """The rows of a CSV log as dicts of floats (epoch as int); a damaged log falls back to its previous
        generation with a warning, and no readable one gives []."""
        rows, _ = atomic.read_generations(path, ResumableCSVLogger.parse, "training log")
        return rows or []

    def on_epoch_begin(self, epoch, logs=None):
        if self._rows is None:
            self._rows = [row for row in self.read_rows(self.path) if row["epoch"] < epoch]

    def on_epoch_end(self, epoch, logs=None):
        if self._rows is None:
            self._rows = []
        row = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            value = np.asarray(value)
            if value.size == 1:
                row[key] = float(value)
        self._rows.append(row)
        keys = sorted({k for r in self._rows for k in r} - {"epoch"})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["epoch"] + keys, lineterminator="\n")
        writer.writeheader()
        for r in self._rows:
            writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in ["epoch"] + keys})
        atomic.write_generation_text(self.path, buffer.getvalue())


class EpochCheckpoints(keras.callbacks.Callback):
    """Saves `best.keras` (best by validation top-1) and periodic `EPOCH.BEST.CURRENT.keras` checkpoints.

    Epochs without a validation (see `validation_freq` of `fit`) neither change the best nor have a value
    of their own: a periodic checkpoint of such an epoch carries the latest measured value as CURRENT.
    The history of measured values survives restarts through `checkpoints.json` in the same folder (epoch
    → value, rewritten atomically with its previous generation kept; entries of epochs being trained again
    are dropped). When neither generation can be read, the history is rebuilt from the names of the
    periodic checkpoints, with a warning.

    Args:
      directory: where to write (the model_dir, or a throw-away folder on non-chief workers).
      monitor: the log key to rank by ("val_top1"; "top1" for runs without validation data).
      period: save a periodic checkpoint every this many epochs (and after the last epoch).
      total_epochs: number of epochs of the run, to always save the last one.
      keep: keep only the newest `keep` periodic checkpoints (0: all); best.keras is never deleted.
    """

    HISTORY = "checkpoints.json"

    def __init__(self, directory, monitor="val_top1", period=1, total_epochs=None, keep=0):
        super().__init__()
        self.directory = os.fspath(directory)
        self.monitor = monitor
        self.period = max(int(period), 1)
        self.total_epochs = total_epochs
        self.keep = max(int(keep or 0), 0)
        self._history = None
        self.best = None

    def _history_path(self):
        return storage.join(self.directory, self.HISTORY)

    def _measured(self):
        return [(epoch, value) for epoch, value in sorted(self._history.items()) if value is not None]

    @staticmethod
    def _parse(path):
        saved = json.loads(storage.read_text(path))
        if not isinstance(saved, dict):
            raise ValueError("not an object of epoch -> value")
        return {int(k): (None if v is None else float(v)) for k, v in saved.items()}

    def _read_history(self):
        path = self._history_path()
        saved, _ = atomic.read_generations(path, self._parse, "checkpoint history")
        if saved is not None:
            return saved
        found = checkpoints.list_periodic(self.directory)
        if found and (storage.exists(path) or storage.exists(atomic.previous_path(path))):
            warnings.warn(f"{path}: no readable generation; the best value so far is taken from the names of "
                          f"{len(found)} periodic checkpoints", RuntimeWarning, stacklevel=2)
        return {c.epoch: c.current_top1 for c in found}

    def on_epoch_begin(self, epoch, logs=None):
        if self._history is not None:
            return
        self._history = {k: v for k, v in self._read_history().items() if k < epoch + 1}
        values = [value for _, value in self._measured()]
        self.best = max(values) if values else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._history is None:
            self.on_epoch_begin(epoch)
        value = logs.get(self.monitor)
        value = None if value is None else float(value)
        number = epoch + 1
        self._history[number] = value
        if value is not None and (self.best is None or value > self.best):
            self.best = value
            checkpoints.save_model(self.model, storage.join(self.directory, checkpoints.BEST_NAME))
        last = self.total_epochs is not None and number == self.total_epochs
        if number % self.period == 0 or last:
            measured = self._measured()
            current = measured[-1][1] if measured else 0.0
            checkpoints.save_model(self.model, storage.join(
                self.directory, checkpoints.periodic_name(number, self.best or 0.0, current)))
        atomic.write_generation_text(self._history_path(),
                                     json.dumps({str(k): v for k, v in sorted(self._history.items())}))
        if self.keep:
            self.prune()

    def prune(self):
        """Deletes all but the newest `keep` periodic checkpoints; returns the deleted paths."""
        found = checkpoints.list_periodic(self.directory)
        # A rerun may leave two names for one epoch (trained again): the newest epochs win, one file each.
        doomed = found[:-self.keep] if len(found) > self.keep else []
        for checkpoint in doomed:
            storage.remove(checkpoint.path)
        return [c.path for c in doomed]


def display_rgb(images, normalization="tf"):
    """Undoes an RGB normalisation for display: float `(..., 3)` → uint8 RGB.

    Args:
      images: normalised RGB as the pipelines produce it.
      normalization: "tf" ([-1, 1]), "torch" (ImageNet mean/std), "caffe" (BGR minus ImageNet mean) or "none".
    """
    x = np.asarray(images, dtype=np.float32)
    if normalization == "tf":
        x = (x + 1.0) * 127.5
    elif normalization == "torch":
        x = (x * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255.0
    elif normalization == "caffe":
        x = (x + np.array([103.939, 116.779, 123.68]))[..., ::-1]
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


class TensorBoardImages(keras.callbacks.Callback):
    """TensorBoard images: sample inputs (RGB, and flow in colour) once, a confusion matrix every epoch.

    Args:
      log_dir: TensorBoard folder (images go to `log_dir/images`).
      samples: a batch of model inputs as NumPy: RGB or flow `(B, [S,] H, W, C)`, or a dict with "rgb"
        and "flow" for two-stream models.
      stream: "spatial", "temporal" or "fusion" (how to draw `samples`).
      classes: class names.
      validation: optional `(x, labels)` NumPy arrays of a few validation videos for the confusion matrix.
      rgb_normalization: how `samples` RGB were normalised (see `display_rgb`).
      flow_bound: the flow quantisation bound (normalised flow × bound = pixels per frame).
      max_images: images per summary.
      period: confusion matrix every this many epochs.
    """

    def __init__(self, log_dir, samples, stream, classes, validation=None, rgb_normalization="tf",
                 flow_bound=20.0, max_images=4, period=1):
        super().__init__()
        self.log_dir = os.path.join(os.fspath(log_dir), "images")
        self.samples, self.stream, self.classes = samples, stream, list(classes)
        self.validation = validation
        self.rgb_normalization, self.flow_bound = rgb_normalization, float(flow_bound)
        self.max_images, self.period = int(max_images), max(int(period), 1)
        self._writer = None

    def _first_snippets(self, x):
        x = np.asarray(x)[: self.max_images]
        return x[:, 0] if x.ndim == 5 else x  # first segment of TSN inputs

    def _rgb_images(self, x):
        return display_rgb(self._first_snippets(x), self.rgb_normalization)

    def _flow_images(self, x):
        from two_stream_tf.flow.visualize import flow_to_color
        x = self._first_snippets(x)
        # First flow pair of each stack, back to pixels per frame, drawn on one common scale: normalised flow
        # (q - 128) / 128 times the bound is the flow within 1/255 of the bound, and zero motion stays 0.
        flows = x[..., :2] * self.flow_bound
        scale = float(np.hypot(flows[..., 0], flows[..., 1]).max()) or 1.0
        return np.stack([flow_to_color(f, max_magnitude=scale) for f in flows])

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            if self.stream in ("spatial", "fusion"):
                rgb = self.samples["rgb"] if isinstance(self.samples, dict) else self.samples
                summaries.images("inputs/rgb", self._rgb_images(rgb), step=0, max_outputs=self.max_images)
            if self.stream in ("temporal", "fusion"):
                flow = self.samples["flow"] if isinstance(self.samples, dict) else self.samples
                summaries.images("inputs/flow_colour", self._flow_images(flow), step=0,
                                 max_outputs=self.max_images)
        self._writer.flush()

    def confusion(self):
        """The confusion matrix of the model on `validation`, `(K, K)` int."""
        from two_stream_tf.evaluation import metrics
        x, labels = self.validation
        # Direct calls, not predict(): no distribution, so the chief alone can do this on a cluster.
        chunks = []
        for start in range(0, len(labels), 16):
            part = ({k: v[start:start + 16] for k, v in x.items()} if isinstance(x, dict)
                    else x[start:start + 16])
            chunks.append(keras.ops.convert_to_numpy(self.model(part, training=False)))
        probabilities = np.concatenate(chunks)
        return metrics.confusion_matrix(labels, np.argmax(probabilities, axis=-1), len(self.classes))

    def on_epoch_end(self, epoch, logs=None):
        if self.validation is None or (epoch + 1) % self.period:
            return
        from two_stream_tf.evaluation import plots
        figure = plots.confusion_figure(self.confusion(), self.classes, title=f"epoch {epoch + 1}")
        with self._writer.as_default():
            summaries.images("confusion_matrix", plots.figure_to_array(figure)[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
