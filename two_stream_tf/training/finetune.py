"""Staged fine-tuning: which layers of a stream model train in which epochs.

A schedule is a comma-separated list of stages, each `WHAT@EPOCH` (EPOCH 0-based: the stage starts after
EPOCH epochs; the first stage starts at 0 and may omit `@0`):

  classifier        only the classifier (the layers after the backbone); the backbone is frozen
  blocks:N          the classifier and the backbone's top N blocks (block boundaries per backbone in the
                    registry, see `BackboneSpec.blocks`)
  all               every layer

    stages = parse_stages("classifier@0,blocks:2@10")    # the Keras recipe: top 10 epochs, then 2 blocks
    unfreezing = StagedUnfreezing(model, stages, get_backbone("inception_v3"))   # after model.compile
    model.fit(..., callbacks=[unfreezing])

Frozen layers run in inference mode (BatchNormalization too). Layers the model froze itself before the
schedule took over (TSN's partial BN) stay frozen in every stage.

Changing which variables train needs a new training function in Keras 3 (the trainable variables are
fixed when the step is traced). `StagedUnfreezing` rebuilds it between epochs instead of recompiling,
and builds the optimizer once, up front, for every variable any stage trains: the optimizer object, its
step counter and its slots (momentum, Adam moments) carry on across stages, so the learning-rate
schedule continues where it was and a backup restores the same optimizer state in any stage.
"""
import dataclasses
import re

import keras

from two_stream_tf.errors import UserError

CLASSIFIER, BLOCKS, ALL = "classifier", "blocks", "all"
_STAGE = re.compile(r"^(classifier|all|blocks:(\d+))(?:@(\d+))?$")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a schedule.

    Attributes:
      start_epoch: 0-based epoch the stage starts at.
      what: "classifier", "blocks" or "all".
      blocks: N for "blocks" (the top N backbone blocks train with the classifier), else 0.
    """

    start_epoch: int
    what: str
    blocks: int = 0

    def __str__(self):
        what = f"{BLOCKS}:{self.blocks}" if self.what == BLOCKS else self.what
        return f"{what}@{self.start_epoch}"


def parse_stages(text):
    """`"classifier@0,blocks:2@10"` → `(Stage(0, "classifier"), Stage(10, "blocks", 2))`.

    Raises:
      UserError: a stage that is not `classifier`, `blocks:N` (N >= 1) or `all`, a first stage not at
        epoch 0, or start epochs that do not increase. The message quotes the schedule.
    """
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise UserError("trainable layers: the schedule is empty (e.g. classifier@0,blocks:2@10)")
    stages = []
    for position, item in enumerate(items):
        match = _STAGE.match(item)
        if not match:
            raise UserError(f"trainable layers {text!r}: stage {item!r} is not classifier, blocks:N or all, "
                            "with @EPOCH for when it starts (e.g. classifier@0,blocks:2@10)")
        if match.group(3) is None and position > 0:
            raise UserError(f"trainable layers {text!r}: stage {item!r} needs @EPOCH, the 0-based epoch it "
                            "starts at")
        start = int(match.group(3) or 0)
        blocks = int(match.group(2)) if match.group(2) is not None else 0
        if match.group(2) is not None and blocks < 1:
            raise UserError(f"trainable layers {text!r}: stage {item!r} unfreezes no block; give blocks:1 or more")
        what = BLOCKS if match.group(2) is not None else match.group(1)
        stages.append(Stage(start, what, blocks))
    if stages[0].start_epoch != 0:
        raise UserError(f"trainable layers {text!r}: the first stage must start at epoch 0 (@0)")
    for before, after in zip(stages, stages[1:]):
        if after.start_epoch <= before.start_epoch:
            raise UserError(f"trainable layers {text!r}: stage {after} must start after stage {before}")
    return tuple(stages)


def format_stages(stages):
    """The text form of a schedule (what `parse_stages` reads)."""
    return ",".join(str(stage) for stage in stages)


def stage_at(stages, epoch):
    """The stage that epoch `epoch` (0-based) trains in."""
    current = stages[0]
    for stage in stages:
        if stage.start_epoch <= epoch:
            current = stage
    return current


def check_stages(stages, epochs):
    """Raises UserError if a stage starts at or after the run's last epoch (it would never train)."""
    for stage in stages:
        if stage.start_epoch >= epochs:
            raise UserError(f"trainable layers {format_stages(stages)}: stage {stage} starts after the run's "
                            f"{epochs} epoch(s) (epochs are counted from 0)")


def _layer_tree(layer):
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _layer_tree(child)


class StagedUnfreezing(keras.callbacks.Callback):
    """Sets which layers train at the start of each stage's first epoch (also after a resume).

    Create it after `model.compile` (under the strategy's scope when there is one): it builds the
    optimizer for every variable some stage trains and applies the first stage. Then pass it to
    `model.fit`.

    Args:
      model: a stream model of `two_stream_tf.models` (a nested "backbone" model and a classifier after it).
      stages: the `Stage`s of `parse_stages`.
      spec: the backbone's `BackboneSpec` (its block boundaries), needed for "blocks" stages.
      verbose: print a line when a stage starts.

    Attributes:
      applied: `(epoch, stage)` for each time the trainable layers changed, in order.

    Raises:
      UserError: a "blocks" stage on a backbone without registered blocks, or more blocks than it has.
    """

    def __init__(self, model, stages, spec=None, verbose=False):
        super().__init__()
        self.stages = tuple(stages)
        self.verbose = verbose
        self.applied = []
        self._current = None
        backbone = model.get_layer("backbone")
        # Layers the model froze itself (partial BN) keep their state whatever the schedule says.
        self._kept_frozen = {id(layer) for layer in _layer_tree(model) if not layer.trainable}
        self._backbone = backbone
        self._head = [layer for layer in model.layers if layer is not backbone]
        wanted = max((stage.blocks for stage in self.stages if stage.what == BLOCKS), default=0)
        self._blocks = ()
        if wanted:
            blocks = spec.blocks(backbone) if spec is not None else None
            if blocks is None:
                raise UserError("trainable layers: blocks:N needs the backbone's registered blocks")
            if wanted > len(blocks):
                raise UserError(f"trainable layers {format_stages(self.stages)}: backbone {spec.name} has "
                                f"{len(blocks)} blocks, fewer than {wanted}; use 'all' to train every layer")
            self._blocks = blocks
        # Every variable a stage will train is trainable while the optimizer builds its slots, so later
        # stages find theirs; then the first stage sets the real state.
        self._set(Stage(0, ALL) if any(stage.what == ALL for stage in self.stages) else
                  Stage(0, BLOCKS, wanted) if wanted else Stage(0, CLASSIFIER))
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self._set(self.stages[0])
        self._current = self.stages[0]

    def trainable_layers(self, stage):
        """The backbone layers `stage` trains (the classifier always trains)."""
        if stage.what == ALL:
            return list(self._backbone.layers)
        if stage.what == BLOCKS:
            return [layer for block in self._blocks[-stage.blocks:] for layer in block.layers]
        return []

    def _set(self, stage):
        train = {id(layer) for layer in self.trainable_layers(stage)}
        self._backbone.trainable = True  # Keras sets nested layers recursively; then each one below
        for layer in self._backbone.layers:
            layer.trainable = id(layer) in train and id(layer) not in self._kept_frozen
        for layer in self._head:
            for inner in _layer_tree(layer):
                inner.trainable = id(inner) not in self._kept_frozen

    def on_epoch_begin(self, epoch, logs=None):
        stage = stage_at(self.stages, epoch)
        if stage == self._current:
            if self.applied:
                return
            # The first stage was set up front: the training function already fits it.
        else:
            self._set(stage)
            self._current = stage
            # The traced step holds the old trainable variables; trace a new one for this stage.
            self.model.make_train_function(force=True)
        self.applied.append((epoch, stage))
        if self.verbose:
            count = sum(int(keras.ops.size(v)) for v in self.model.trainable_variables)
            what = {CLASSIFIER: "the classifier", ALL: "every layer"}.get(stage.what, f"the top {stage.blocks} blocks")
            print(f"epoch {epoch + 1}: training {what} ({count:,} weights)", flush=True)
