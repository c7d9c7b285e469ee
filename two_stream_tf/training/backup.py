"""The training state a rerun resumes from: weights, optimizer state, random-generator state, position.

`RunBackup` is a Keras callback on public hooks only. It records where training is from the epoch and
batch numbers Keras passes to `on_epoch_begin` / `on_train_batch_end`, and writes `backup.weights.h5`
(Keras' weights file: model weights and optimizer variables, the step counter `iterations` among them)
with the position and the states of the models' random generators (dropout masks) as extra entries.
The file before it stays as `backup.prev.weights.h5` (see `atomic.generation_output`), so a backup torn
or corrupted on disk falls back to the previous one with a warning.

Resuming is explicit: `restore(model)` before `model.fit(..., initial_epoch=state.epoch)`, then
`rewind_step_counter` so that the optimizer's counter (which drives the learning-rate schedule) is the
one of the epoch start training resumes at. Keras' own `BackupAndRestore` reaches into private model
attributes for this; here nothing private is used.
"""
import dataclasses
import warnings

import h5py
import keras
import numpy as np

from two_stream_tf import storage
from two_stream_tf.training import atomic

FILE_NAME = "backup.weights.h5"
_POSITION = ("two_stream_epoch", "two_stream_batch", "two_stream_iterations")
_RANDOM_GROUP = "two_stream_random_state"


@dataclasses.dataclass(frozen=True)
class BackupState:
    """Where a backup was taken.

    Attributes:
      epoch: 0-based epoch being trained (after an epoch's end: the next one).
      batch: batches of `epoch` done (0 at an epoch boundary).
      iterations: the optimizer's step counter when it was saved.
      path: the file it was read from.
    """

    epoch: int
    batch: int
    iterations: int
    path: str

    def as_dict(self):
        return {"epoch": self.epoch, "batch": self.batch}


def _read_position(path):
    with storage.local_copy(path) as local, h5py.File(local, "r") as handle:
        epoch, batch, iterations = (int(handle.attrs[key]) for key in _POSITION)
        # Touch every dataset: a truncated file often opens but fails on its last blocks.
        handle.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    return BackupState(epoch, batch, iterations, path)


def _random_variables(model):
    # Random-generator states (Keras SeedGenerator variables, e.g. of Dropout) are model variables but not
    # weights, so Keras' weights file leaves them out; a resumed run would draw other dropout masks.
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def read_state(backup_dir):
    """The `BackupState` of the newest readable backup in `backup_dir`, or None (warns on a damaged one)."""
    state, _ = atomic.read_generations(storage.join(backup_dir, FILE_NAME), _read_position, "backup")
    return state


class RunBackup(keras.callbacks.Callback):
    """Backs up the training state at every epoch end and, with `save_freq=N`, every N batches.

    Args:
      backup_dir: the backup folder (read on every worker; shared by the workers of a cluster).
      save_freq: "epoch", or a number of batches between mid-epoch backups.
      write_dir: where this process writes (default `backup_dir`); non-chief workers of a cluster pass a
        private folder so that only the chief's backup is kept.
    """

    FILE_NAME = FILE_NAME

    def __init__(self, backup_dir, save_freq="epoch", write_dir=None):
        super().__init__()
        if save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq <= 0):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}")
        self.backup_dir = backup_dir
        self.write_dir = write_dir or backup_dir
        self.save_freq = save_freq
        self.restored = None  # (epoch, batch) of the backup training resumed from, if any
        self._epoch = 0
        self._since_save = 0
        self._last_batch = -1

    @property
    def backup_path(self):
        return storage.join(self.backup_dir, FILE_NAME)

    @staticmethod
    def read_state(backup_dir):
        """`{"epoch": …, "batch": …}` of the backup in `backup_dir`, or None without one."""
        state = read_state(backup_dir)
        return None if state is None else state.as_dict()

    def restore(self, model):
        """Loads the newest good backup into `model` (built and compiled); returns its `BackupState` or None.

        A damaged generation is skipped with a warning and the previous one is loaded.
        """
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # the backup holds optimizer variables

        def load(path):
            state = _read_position(path)
            with storage.local_copy(path) as local:
                model.load_weights(local)
                with h5py.File(local, "r") as handle:
                    group = handle.get(_RANDOM_GROUP)
                    variables = _random_variables(model)
                    if group is not None and len(group) == len(variables):
                        for number, variable in enumerate(variables):
                            variable.assign(np.asarray(group[str(number)]))
            return state

        state, _ = atomic.read_generations(self.backup_path, load, "backup")
        if state is not None:
            self.restored = (state.epoch, state.batch)
            self._epoch = state.epoch
        return state

    def save(self, epoch, batch):
        """Writes the backup now, recording position (`epoch`, `batch` batches done)."""
        model = self.model
        with atomic.generation_output(storage.join(self.write_dir, FILE_NAME)) as tmp:
            model.save_weights(tmp)
            with h5py.File(tmp, "a") as handle:
                for key, value in zip(_POSITION, (epoch, batch, int(model.optimizer.iterations.numpy()))):
                    handle.attrs[key] = int(value)
                group = handle.create_group(_RANDOM_GROUP)
                for number, variable in enumerate(_random_variables(model)):
                    group.create_dataset(str(number), data=keras.ops.convert_to_numpy(variable))

    def remove(self):
        """Deletes this process's backup folder (after the run's final model is safely written)."""
        storage.rmtree(self.write_dir)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._since_save = 0
        self._last_batch = -1

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # With steps_per_execution > 1 Keras reports only every k-th batch: count what was skipped.
        self._since_save += batch - self._last_batch
        self._last_batch = batch
        if self._since_save >= self.save_freq:
            self._since_save = 0
            self.save(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)


def rewind_step_counter(model, state, steps_per_epoch):
    """Sets the optimizer's step counter to the first step of `state.epoch`, where training resumes.

    An epoch-boundary backup already holds that value; a mid-epoch one holds a larger one (the epoch is
    trained again from its start, so without rewinding the schedule would run ahead by the batches done
    before the crash and the run would take more optimizer steps than planned).

    Returns:
      The counter's value before rewinding.
    """
    optimizer = model.optimizer
    before = int(optimizer.iterations.numpy())
    target = int(state.epoch) * int(steps_per_epoch)
    if before != target:
        if state.batch == 0:
            warnings.warn(f"backup {state.path}: step counter {before} does not match epoch {state.epoch} x "
                          f"{steps_per_epoch} steps; set to {target}", RuntimeWarning, stacklevel=2)
        optimizer.iterations.assign(target)
    return before
