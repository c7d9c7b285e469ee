"""Learning-rate schedules by name: constant, step decay (TSN), cosine, each with optional linear warm-up.

Steps are optimizer steps (global batches), as in TSN's Caffe solvers: the RGB solver multiplies the rate
by 0.1 every 1,500 iterations (`step` with boundaries 1500, 3000), the flow solver at 10,000 and 16,000.
Schedules are registered Keras objects, so a saved `.keras` model with its optimizer reloads.
"""
import keras
from keras import ops

SCHEDULES = ("constant", "step", "cosine")


@keras.saving.register_keras_serializable(package="two_stream_tf")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`base_lr * decay_rate ** (number of boundaries <= step)`.

    Args:
      base_lr: rate before the first boundary.
      boundaries: increasing optimizer steps at which the rate is multiplied by `decay_rate`.
      decay_rate: the factor (TSN: 0.1).
    """

    def __init__(self, base_lr, boundaries, decay_rate=0.1):
        self.base_lr = float(base_lr)
        self.boundaries = [int(b) for b in boundaries]
        self.decay_rate = float(decay_rate)
        if self.boundaries != sorted(self.boundaries):
            raise ValueError(f"boundaries must increase, got {self.boundaries}")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        passed = ops.zeros((), "float32")
        for boundary in self.boundaries:
            passed = passed + ops.cast(ops.greater_equal(step, float(boundary)), "float32")
        return self.base_lr * ops.power(self.decay_rate, passed)

    def get_config(self):
        return {"base_lr": self.base_lr, "boundaries": self.boundaries, "decay_rate": self.decay_rate}


@keras.saving.register_keras_serializable(package="two_stream_tf")
class CosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Half-cosine from `base_lr` at step 0 to `base_lr * min_ratio` at `decay_steps`, constant after."""

    def __init__(self, base_lr, decay_steps, min_ratio=0.0):
        self.base_lr = float(base_lr)
        self.decay_steps = max(int(decay_steps), 1)
        self.min_ratio = float(min_ratio)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / float(self.decay_steps), 1.0)
        cosine = 0.5 * (1.0 + ops.cos(3.141592653589793 * progress))
        return self.base_lr * (self.min_ratio + (1.0 - self.min_ratio) * cosine)

    def get_config(self):
        return {"base_lr": self.base_lr, "decay_steps": self.decay_steps, "min_ratio": self.min_ratio}


@keras.saving.register_keras_serializable(package="two_stream_tf")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Ramps linearly from `start_ratio * after(0)` to `after(warmup_steps)`, then follows `after`.

    The wrapped schedule sees the step counted from the start of training (not from the end of the
    warm-up), so step boundaries keep their meaning.

    Args:
      after: the schedule to follow (a `LearningRateSchedule` or a float).
      warmup_steps: length of the ramp in optimizer steps.
      start_ratio: fraction of the rate at step 0.
    """

    def __init__(self, after, warmup_steps, start_ratio=0.0):
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.start_ratio = float(start_ratio)

    def _after(self, step):
        return self.after(step) if callable(self.after) else ops.cast(self.after, "float32")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.warmup_steps <= 0:
            return self._after(step)
        target = self._after(ops.cast(self.warmup_steps, "float32"))
        fraction = ops.minimum(step / float(self.warmup_steps), 1.0)
        warm = target * (self.start_ratio + (1.0 - self.start_ratio) * fraction)
        return ops.where(step < float(self.warmup_steps), warm, self._after(step))

    def get_config(self):
        after = keras.saving.serialize_keras_object(self.after) if callable(self.after) else self.after
        return {"after": after, "warmup_steps": self.warmup_steps, "start_ratio": self.start_ratio}


def scaled_learning_rate(learning_rate, batch_size, reference_batch_size=0):
    """The learning rate for a global batch of `batch_size`, given one for `reference_batch_size`.

    TSN's linear rule: the rate is proportional to the global batch (the RGB solver's 0.001 and the flow
    solver's 0.005 are for 128 = 4 GPUs x 32), so the rate per sample stays the same:
    `learning_rate * batch_size / reference_batch_size`. With `reference_batch_size` 0 (or None) the rate
    is `learning_rate` as given. Boundaries of a step schedule are optimizer steps and are not changed.
    """
    if not reference_batch_size:
        return float(learning_rate)
    if reference_batch_size < 0 or batch_size < 1:
        raise ValueError(f"batch sizes must be positive, got {batch_size} for reference {reference_batch_size}")
    return float(learning_rate) * batch_size / reference_batch_size


def build_schedule(name, base_lr, *, total_steps=None, boundaries=(), decay_rate=0.1, warmup_steps=0,
                   min_ratio=0.0):
    """A learning-rate schedule by name.

    Args:
      name: "constant", "step" (multiply by `decay_rate` at each of `boundaries`) or "cosine" (to
        `base_lr * min_ratio` at `total_steps`).
      base_lr: the peak learning rate.
      total_steps: length of training in optimizer steps (needed by "cosine").
      boundaries: optimizer steps for "step".
      decay_rate: the step factor.
      warmup_steps: linear warm-up from 0 over this many steps (0: none).
      min_ratio: final fraction of the rate for "cosine".

    Returns:
      A `keras.optimizers.schedules.LearningRateSchedule`, or a float for "constant" without warm-up.
    """
    if name == "constant":
        schedule = float(base_lr)
    elif name == "step":
        schedule = StepDecay(base_lr, boundaries, decay_rate)
    elif name == "cosine":
        if not total_steps:
            raise ValueError("the cosine schedule needs total_steps")
        schedule = CosineDecay(base_lr, total_steps, min_ratio)
    else:
        raise ValueError(f"unknown schedule {name!r}; one of {', '.join(SCHEDULES)}")
    if warmup_steps and warmup_steps > 0:
        schedule = LinearWarmup(schedule, warmup_steps)
    return schedule
