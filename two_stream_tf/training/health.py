"""Training that watches its own health: a Keras callback that notices a run going nowhere and says why.

A stream can stop learning without an error: its backbone's last activation dies (zero for every input),
every video gets the same scores, the loss settles at ln(K) and top-1 at chance. `TrainingHealth`
looks for that every `every_steps` optimizer steps, on one small fixed batch of training inputs, and
after each validation:

  non-finite     the loss, or a weight, is NaN or infinite
  dead backbone  more than `dead_threshold` of the backbone's last activation is zero on the fixed batch,
                 and more than when training began (a frozen backbone that starts sparse is not news)
  constant       the model gives every input of the fixed batch the same scores

The fixed batch runs as a training step sees it (`as_training_sees_it`: batch statistics in the BN layers
that train, no dropout), so BN moving averages that lag behind young weights do not pass for a collapse.
  chance         from the `chance_after`-th validation on, validation top-1 is at chance level

Each finding is a loud warning (the `two_stream_tf.training.health` logger, stderr, and `health.log` in
the run folder) naming the likely causes. With `stop_on_collapse`, the first finding stops training: the
callback raises `TrainingCollapse` (a `UserError`, so entry points print one line and exit 2) when
`model.fit` ends; checkpoints already written stay.

    health = TrainingHealth(probe_x, num_classes=101, every_steps=50, stop_on_collapse=True,
                            learning_rate=0.001, batch_size=8, log_path="runs/x/health.log")
    model.fit(..., callbacks=[..., health])
"""
import contextlib
import logging
import math
import sys

import keras
import numpy as np

from two_stream_tf.errors import UserError

logger = logging.getLogger(__name__)
# Records reach the application's handlers; without any, the console gets the message from `echo` alone.
logger.addHandler(logging.NullHandler())

LOG_NAME = "health.log"
NON_FINITE = "non-finite"
DEAD_BACKBONE = "dead backbone"
CONSTANT = "constant predictions"
CHANCE = "validation at chance"

# TSN's solvers: 0.001 (RGB) and 0.005 (flow) for a global batch of 128.
_TSN_RGB_RATE_PER_VIDEO = 0.001 / 128
_TSN_FLOW_RATE_PER_VIDEO = 0.005 / 128


class TrainingCollapse(UserError):
    """Training was stopped because it collapsed (`stop_on_collapse`); the message says what was seen."""


class HealthFinding:
    """One problem seen: `kind` (a module constant), `step` (optimizer steps done), `message`."""

    def __init__(self, kind, step, message):
        self.kind, self.step, self.message = kind, int(step), message

    def __repr__(self):
        return f"HealthFinding({self.kind!r}, step={self.step}, {self.message!r})"


def last_activation_layer(backbone):
    """The last ReLU-type layer of a backbone model (MobileNet's `conv_pw_13_relu`, ResNet50's
    `conv5_block3_out`, Xception's `block14_sepconv2_act`), or None when it has none."""
    for layer in reversed(backbone.layers):
        if isinstance(layer, keras.layers.ReLU):
            return layer
        if isinstance(layer, keras.layers.Activation):
            name = getattr(layer.activation, "__name__", str(layer.activation))
            if "relu" in name:
                return layer
    return None


def dead_share(activations):
    """The fraction of units that are not positive (a ReLU's output: zero)."""
    values = np.asarray(activations)
    return float(np.mean(values <= 0)) if values.size else 0.0


def constant_predictions(logits, tolerance=1e-4):
    """True when all rows of `logits` (B, K) are the same up to `tolerance` relative to their size.

    A model whose features died gives each input `bias` exactly; a young healthy model with TSN's small
    classifier init gives small scores that still differ from input to input by a good part of their
    size, so the spread is measured against the scores' own scale.
    """
    values = np.asarray(logits, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2:
        return False
    spread = float(np.max(np.std(values, axis=0)))
    scale = float(np.max(np.abs(values))) + 1e-12
    return spread <= tolerance * scale or spread < 1e-9


def likely_causes(kind, *, learning_rate=None, batch_size=None, partial_bn=False):
    """A sentence naming the likely causes of a finding, with the run's own numbers where they matter."""
    causes = []
    if learning_rate is not None and batch_size:
        per_video = learning_rate / batch_size
        note = ""
        if per_video > _TSN_FLOW_RATE_PER_VIDEO:
            note = (f", {per_video / _TSN_RGB_RATE_PER_VIDEO:.0f}x TSN's RGB and "
                    f"{per_video / _TSN_FLOW_RATE_PER_VIDEO:.0f}x its flow rate per video (0.001 and 0.005 for "
                    "128); give the rate for a reference batch with --reference_batch_size, or lower it")
        causes.append(f"the learning rate {learning_rate:g} is too high for a global batch of {batch_size}{note}")
    else:
        causes.append("a learning rate too high for the batch size")
    if kind in (DEAD_BACKBONE, CONSTANT, CHANCE) and partial_bn:
        causes.append("partial BN (frozen BN layers cannot re-centre the backbone's outputs, so units that "
                      "steps push below zero stay off for good; try a smaller rate, --nopartial_bn or "
                      "--freeze_backbone)")
    if kind == NON_FINITE:
        causes.append("no gradient clipping (--clip_norm) or float16 overflow (--mixed_precision)")
    if kind == CHANCE:
        causes.append("labels that do not match the inputs (split files, --class_subset)")
    return "likely cause: " + "; or ".join(causes)


class TrainingHealth(keras.callbacks.Callback):
    """Warns (and with `stop_on_collapse` stops training) when a run collapses; see the module docstring.

    Args:
      probe_x: a small fixed batch the model takes (NumPy array or dict of arrays), e.g. 8 training inputs.
      num_classes: K (chance level is 1/K).
      every_steps: check the loss, weights and the fixed batch every this many optimizer steps (and at
        each epoch's end).
      dead_threshold: the largest healthy share of zeros in the backbone's last activation.
      chance_after: check validation top-1 from this validation on (the first ones may be at chance).
      chance_margin: validation top-1 at most `(1 + chance_margin) / K` counts as chance.
      stop_on_collapse: stop training at the first finding (raise `TrainingCollapse` when fit ends).
      learning_rate, batch_size, partial_bn: the run's settings, for the message about likely causes.
      log_path: a file each finding is appended to (None: none).
      echo: also print findings to stderr (Keras' progress bar hides log records in some consoles).

    Attributes:
      findings: every `HealthFinding`, in order.
      stopped: the finding that stopped training, or None.
    """

    def __init__(self, probe_x, num_classes, *, every_steps=50, dead_threshold=0.98, chance_after=3,
                 chance_margin=0.25, stop_on_collapse=False, learning_rate=None, batch_size=None,
                 partial_bn=False, log_path=None, echo=True):
        super().__init__()
        if int(every_steps) < 1:
            raise UserError(f"health checks: every_steps={every_steps} must be at least 1")
        self.probe_x = probe_x
        self.num_classes = int(num_classes)
        self.every_steps = int(every_steps)
        self.dead_threshold = float(dead_threshold)
        self.chance_after = int(chance_after)
        self.chance_margin = float(chance_margin)
        self.stop_on_collapse = bool(stop_on_collapse)
        self.settings = dict(learning_rate=learning_rate, batch_size=batch_size, partial_bn=partial_bn)
        self.log_path = log_path
        self.echo = echo
        self.findings = []
        self.stopped = None
        self._warned = set()
        self._validations = 0
        self._probe = None
        self.start_dead_share = None
        self.last_dead_share = None

    # --- probes ----------------------------------------------------------------------------------------

    def _build_probe(self):
        # Scores of the fixed batch, and the backbone's last activation when there is one backbone.
        model = self.model
        logits = _layer_or_none(model, "logits")
        self._scores = keras.Model(model.input, logits.output) if logits is not None else model
        backbone = _layer_or_none(model, "backbone")
        activation = last_activation_layer(backbone) if isinstance(backbone, keras.Model) else None
        self._activation = (keras.Model(backbone.input, activation.output)
                            if activation is not None else None)
        self._activation_name = activation.name if activation is not None else None
        self._probe = True

    def _dead_share(self):
        x = self._backbone_input() if self._activation is not None else None
        if x is None:
            return None
        with as_training_sees_it(self.model):
            return dead_share(self._activation(x, training=True))

    def _backbone_input(self):
        # A segment model's backbone sees (B·S, H, W, C).
        x = self.probe_x
        if isinstance(x, dict):
            return None
        x = np.asarray(x)
        frame_rank = len(self._activation.input.shape)
        return x.reshape((-1, *x.shape[-(frame_rank - 1):])) if x.ndim > frame_rank else x

    # --- checks ----------------------------------------------------------------------------------------

    def check(self, step, loss=None):
        """Runs the step checks now; returns the new findings (also recorded and reported)."""
        if self._probe is None:
            self._build_probe()
        found = []
        if loss is not None and not math.isfinite(float(loss)):
            found.append(HealthFinding(NON_FINITE, step, f"the training loss is {float(loss)}"))
        bad = [v.path for v in self.model.trainable_variables
               if not np.all(np.isfinite(keras.ops.convert_to_numpy(v)))]
        if bad:
            found.append(HealthFinding(NON_FINITE, step, f"{len(bad)} weight tensors hold NaN or inf "
                                       f"(first: {bad[0]})"))
        if not bad:
            share = self.last_dead_share = self._dead_share()
            if share is not None and share > self.dead_threshold and share > (self.start_dead_share or 0.0):
                found.append(HealthFinding(
                    DEAD_BACKBONE, step, f"{100 * share:.1f} % of the backbone's last activation "
                    f"({self._activation_name}) is zero on a fixed batch of training inputs "
                    f"({100 * (self.start_dead_share or 0.0):.1f} % when training began; healthy: at most "
                    f"{100 * self.dead_threshold:g} %)"))
            with as_training_sees_it(self.model):
                scores = keras.ops.convert_to_numpy(self._scores(self.probe_x, training=True))
            if constant_predictions(scores):
                found.append(HealthFinding(CONSTANT, step, "the model gives every input of a fixed batch "
                                           "of training inputs the same scores"))
        return self._report(found)

    def _report(self, found):
        for finding in found:
            self.findings.append(finding)
            if finding.kind in self._warned and not self.stop_on_collapse:
                continue  # one warning per kind: a collapsed run would repeat it every check
            self._warned.add(finding.kind)
            text = (f"TRAINING HEALTH: {finding.kind} at step {finding.step}: {finding.message}. "
                    f"{likely_causes(finding.kind, **self.settings)}.")
            logger.warning(text)
            if self.echo:
                print(f"\nWARNING: {text}", file=sys.stderr, flush=True)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as handle:
                    handle.write(text + "\n")
            if self.stop_on_collapse and self.stopped is None:
                self.stopped = finding
                self.model.stop_training = True
        return found

    def _optimizer_steps(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    # --- Keras hooks -----------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self._probe is None:
            self._build_probe()
        if self.start_dead_share is None:  # the weights training starts (or resumes) from
            self.start_dead_share = self._dead_share()

    def on_train_batch_end(self, batch, logs=None):
        step = self._optimizer_steps()
        if step % self.every_steps == 0 and self.stopped is None:
            self.check(step, (logs or {}).get("loss"))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = self._optimizer_steps()
        if self.stopped is None and step % self.every_steps:
            self.check(step, logs.get("loss"))
        if "val_top1" in logs and self.stopped is None:
            self._validations += 1
            top1 = float(logs["val_top1"])
            chance = 1.0 / self.num_classes
            if self._validations >= self.chance_after and top1 <= (1 + self.chance_margin) * chance:
                self._report([HealthFinding(CHANCE, step, f"validation top-1 is {100 * top1:.1f} % after "
                                            f"{self._validations} validations, chance is {100 * chance:.1f} %")])

    def on_train_end(self, logs=None):
        if self.stopped is not None:
            finding = self.stopped
            raise TrainingCollapse(f"training stopped at step {finding.step} (--stop_on_collapse): "
                                   f"{finding.kind}: {finding.message}; "
                                   f"{likely_causes(finding.kind, **self.settings)}")


@contextlib.contextmanager
def as_training_sees_it(model):
    """Within: `model(x, training=True)` computes what a training step sees, without its side effects.

    BatchNormalization layers that train normalise by the batch's statistics, as in a training step (in
    inference mode their moving averages, which lag behind young weights, would make a healthy model look
    collapsed); their moving statistics are put back afterwards. Dropout is off (rate 0 draws no random
    numbers, so training's random sequence is untouched). Frozen layers run in inference mode either way.
    """
    layers = list(_all_layers(model))
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)
                   and layer.trainable]
    dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    numpy = keras.ops.convert_to_numpy
    statistics = [(numpy(layer.moving_mean), numpy(layer.moving_variance)) for layer in batch_norms]
    rates = [layer.rate for layer in dropouts]
    try:
        for layer in dropouts:
            layer.rate = 0.0
        yield model
    finally:
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate
        for layer, (mean, variance) in zip(batch_norms, statistics):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _layer_or_none(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None
