"""Training a stream (or a recurrent fusion of two trained streams) with `model.fit` under `tf.distribute`.

    config = TrainConfig(stream="spatial", frames_root="data/ucf101/frames", split_dir="data/ucf101/splits",
                         model_dir="runs/spatial", backbone="resnet50", num_segments=3, ...)
    result = train(config)

`train` builds the split indices, picks the distribution strategy, builds the model and optimizer under
`strategy.scope()`, feeds the input pipelines through `strategy.distribute_datasets_from_function` (the
global batch is split across replicas) and runs `model.fit` with the callbacks of
`two_stream_tf.training.callbacks` (and the caller's own, `train(config, callbacks=[...])`). A run may start
from a trained model (`init_from`, see `two_stream_tf.training.warm_start`) and fine-tune in stages
(`trainable_layers`, see `two_stream_tf.training.finetune`). Everything lands in `model_dir`:

  final.keras                   the model after the last epoch (what evaluation scores by default)
  best.keras                    best model by top-1 on the held-out validation videos
  EPOCH.BEST.CURRENT.keras      periodic checkpoints, e.g. 007.0.8123.0.7990.keras
  done.json                     written once final.keras is: the run is complete
  validation_list.txt           the held-out validation videos (`<class>/<video>.avi` lines)
  evaluation_splitN_validation/ final.keras scored on them by the test protocol (scores.npz, metrics.json):
                                what `fuse --fit_on` fits fusion weights on
  backup/                       the training state while training runs (a rerun resumes from it), with
                                its previous generation (see `two_stream_tf.training.backup`)
  log.csv                       one row per epoch: loss, top-1, top-5, validation, learning rate
  checkpoints.json              validation value per epoch (the best so far survives restarts)
  tensorboard/                  scalars (train/, validation/) and images (images/)
  train_config.json             the run's configuration as plain values, paths absolute (also read by
                                evaluation)
  train.lock                    while a run trains: its pid and host (one run per model_dir)
  health.log                    warnings of the health checks, when there were any (`training.health`)

Validation videos are held out of the split's training list (`validation_split`, a stratified fraction,
or `validation_list`, a list file; see `two_stream_tf.data.holdout`); training never opens the test list.

Rerunning the same call after a crash continues where the backup stopped, with the settings the run was
started with (`two_stream_tf.training.run_folder` names any that changed). model_dir may be on any
`tf.io.gfile` file system (`gs://...`, `ram://...`).
"""
import dataclasses
import json
import math
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from two_stream_tf import storage
from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic, backup as backup_lib, callbacks, checkpoints, data_health, health
from two_stream_tf.training import losses
from two_stream_tf.training import run_folder, schedules, summaries
from two_stream_tf.training import strategy as strategy_lib

_callbacks_module = callbacks

STREAMS = ("spatial", "temporal", "fusion")
CONFIG_NAME = "train_config.json"
CSV_NAME = "log.csv"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs, as plain values (entry points fill it from flags).

    Data:
      stream: "spatial", "temporal" or "fusion" (recurrent fusion of two trained, frozen streams).
      frames_root: folder of the frame folders; layout: its frame layout ("auto" detects it).
      split_dir, split, dataset: the split files (dataset "auto", "ucf101" or "hmdb51").
      class_subset: None, a list of class names, or a classInd-style file.
      index_cache: cache frame counts beside the frames.
    Model:
      backbone, backbone_kwargs, weights ("imagenet", None or a weights file), image_size (None: the
      backbone's), dropout (None: the stream's default), partial_bn, freeze_backbone (train only the
      classifier, Keras' transfer-learning recipe, and a temporal stream's first convolution), num_segments (None: single
      snippets), stack_length; for "fusion": spatial_model and temporal_model (.keras files or model
      dirs) and fusion ("recurrent").
    Fine-tuning:
      init_from: start from a trained stream model (a .keras file, a run folder or a URL of a .keras file):
        all its weights for the same classes, all but the classifier for others (`weights` is then
        unused; image_size None takes the model's).
      trainable_layers: a staged schedule such as "classifier@0,blocks:2@10" (the classifier alone for
        10 epochs, then also the backbone's top two blocks); None trains every layer. See
        `two_stream_tf.training.finetune`.
    Optimisation:
      batch_size (global), epochs or train_steps, steps_per_epoch (None: one pass over the training list),
      optimizer, learning_rate, reference_batch_size (the global batch learning_rate is given for; the
      rate used is learning_rate * batch_size / reference_batch_size, TSN's linear rule; 0: as given),
      momentum, weight_decay, lr_schedule ("constant", "step", "cosine"),
      lr_boundaries (optimizer steps), lr_decay, warmup_steps, label_smoothing, clip_norm (global norm,
      0: off), mixed_precision, jit_compile.
    Run:
      strategy (see `two_stream_tf.training.strategy`), tpu, model_dir, seed, deterministic,
      shuffle_buffer, data_threads, tf_data_service (`grpc://HOST:PORT` of a tf.data service dispatcher:
      the training pipeline runs on its workers, see `two_stream_tf.data.service`), strict (stop with an
      error naming the file at the first unreadable frame instead of skipping its sample; always so with
      tf_data_service), frame_size (None, or `(height, width)` that frames stored at another size are
      resized to before cropping, as `cv2.resize` does: TSN's 340×256 is (256, 340)).
    Validation (model selection; never on the test list):
      validation_split (a stratified fraction of the training videos held out, 0: none) or
      validation_list (a list file of training videos to hold out); validation (validate every
      validation_freq epochs), validation_videos (a stratified subset of that many per validation, 0: all),
      validation_scores (score final.keras on the held-out videos by the test protocol at the end:
      protocol_snippets snippets x protocol_crops crops).
    Checkpoints and logs:
      checkpoint_every (epochs), keep_checkpoints (keep the newest N periodic checkpoints, 0: all),
      backup_every_steps (0: each epoch), tensorboard_images, verbose.
    Health (see `two_stream_tf.training.health`):
      health_checks (on by default), health_every_steps, stop_on_collapse.
    """

    stream: str
    frames_root: str
    split_dir: str
    model_dir: str
    split: int = 1
    layout: str = "auto"
    dataset: str = "auto"
    class_subset: object = None
    index_cache: bool = True
    backbone: str = "xception"
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    weights: object = "imagenet"
    image_size: int = None
    dropout: float = None
    partial_bn: bool = False
    freeze_backbone: bool = False
    num_segments: int = None
    stack_length: int = 10
    spatial_model: str = None
    temporal_model: str = None
    fusion: str = "recurrent"
    init_from: str = None
    trainable_layers: str = None
    batch_size: int = 32
    epochs: int = None
    train_steps: int = None
    steps_per_epoch: int = None
    optimizer: str = "sgd"
    learning_rate: float = 0.001
    reference_batch_size: int = 0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "step"
    lr_boundaries: tuple = ()
    lr_decay: float = 0.1
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    clip_norm: float = 0.0
    mixed_precision: bool = False
    jit_compile: bool = False
    strategy: str = "auto"
    tpu: str = None
    seed: int = 0
    deterministic: bool = False
    shuffle_buffer: int = None
    data_threads: int = 0
    tf_data_service: str = None
    validation: bool = True
    validation_freq: int = 1
    validation_videos: int = 0
    validation_split: float = 0.0
    validation_list: str = None
    validation_scores: bool = True
    protocol_snippets: int = 25
    protocol_crops: int = 10
    strict: bool = False
    frame_size: tuple = None
    checkpoint_every: int = 1
    keep_checkpoints: int = 0
    backup_every_steps: int = 0
    tensorboard_images: bool = True
    verbose: int = 1
    health_checks: bool = True
    health_every_steps: int = 50
    stop_on_collapse: bool = False

    def to_json(self):
        values = dataclasses.asdict(self)
        values["lr_boundaries"] = list(values["lr_boundaries"])
        if values["trainable_layers"] is not None and not isinstance(values["trainable_layers"], str):
            from two_stream_tf.training.finetune import format_stages
            values["trainable_layers"] = format_stages(self.trainable_layers)
        if values["frame_size"] is not None:
            values["frame_size"] = list(values["frame_size"])
        if values["class_subset"] is not None and not isinstance(values["class_subset"], str):
            values["class_subset"] = list(values["class_subset"])
        return values


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced.

    Attributes:
      model_dir: the run folder.
      final_path: `final.keras`.
      best_path: `best.keras`, or None when no best model was saved.
      history: one dict per epoch of this call (Keras `History.history` transposed).
      resumed_from_epoch: 0-based epoch the run resumed at, or None for a fresh start.
      num_replicas: replicas the global batch was split across.
      validation_scores_path: `evaluation_splitN_validation/scores.npz` (final.keras on the held-out
        validation videos), or None when the run has none.
    """

    model_dir: str
    final_path: str
    best_path: str
    history: list
    resumed_from_epoch: int
    num_replicas: int
    validation_scores_path: str = None


def load_run_config(model_dir):
    """The `train_config.json` of a run folder (any `tf.io.gfile` path) as a dict, or None."""
    path = storage.join(model_dir, CONFIG_NAME)
    if not storage.isfile(path):
        return None
    return json.loads(storage.read_text(path))


# --- data --------------------------------------------------------------------------------------------------

SUBSETS = ("train", "validation", "test")
VALIDATION_LIST_NAME = "validation_list.txt"


def split_lists(config):
    """The split's entries of each subset: `{"train", "validation", "test"}` -> tuple of `SplitEntry`.

    "train" is the training list without the held-out validation videos; "validation" is None when the
    config holds none out (`validation_split` 0 and no `validation_list`). Only the split files are read.

    Raises:
      UserError: unreadable split files, a video in both the training and the test list, both ways of
        holding out given, a bad validation fraction or list.
    """
    from two_stream_tf.data import holdout
    from two_stream_tf.data.splits import load_split
    split = load_split(config.split_dir, config.split, class_subset=config.class_subset, dataset=config.dataset)
    if config.validation_list and config.validation_split:
        raise UserError(f"validation_split={config.validation_split:g} and validation_list={config.validation_list} "
                        "both given: hold validation videos out one way")
    train, validation = split.train, None
    if config.validation_list:
        train, validation = holdout.holdout_from_list(split.train, config.validation_list, split.classes,
                                                      test_entries=split.test,
                                                      check_labels=config.class_subset is None)
    elif config.validation_split:
        train, validation = holdout.holdout_by_fraction(split.train, config.validation_split, seed=config.seed,
                                                        classes=split.classes)
    return {"train": train, "validation": validation, "test": split.test, "classes": split.classes}


def open_indices(config, subsets=("train", "validation")):
    """The dataset indices (`DatasetIndex`) of the subsets named, in that order.

    Subsets are "train" (the training list without the validation videos), "validation" (the held-out
    training videos; None when the config holds none out) and "test". Only the frame folders of the subsets
    named are opened: training asks for ("train", "validation") and never reads the test list's videos.

    Raises:
      UserError: see `split_lists`, an unknown subset, or split entries whose frame folders are broken or
        not under frames_root.
    """
    from two_stream_tf.data.index import build_index
    unknown = [subset for subset in subsets if subset not in SUBSETS]
    if unknown:
        raise UserError(f"unknown subset {unknown[0]!r}; one of {', '.join(SUBSETS)}")
    lists = split_lists(config)
    return tuple(None if lists[subset] is None else
                 build_index(config.frames_root, lists[subset], lists["classes"], layout=config.layout,
                             cache=config.index_cache)
                 for subset in subsets)


def _data_options(config):
    # Element order is the pipelines' business (`deterministic`); only the thread pool is set here.
    options = tf.data.Options()
    if config.data_threads:
        options.threading.private_threadpool_size = int(config.data_threads)
    return options


def dataset_fn(config, index, *, training, rgb_normalization, image_size, num_snippets=None, crops=1,
               batch_size=None, repeat=None, start_batch=0, stats=None):
    """A function `input_context -> tf.data.Dataset` for `strategy.distribute_datasets_from_function`.

    `start_batch` (training) starts the sample sequence that many batches in, where a resumed run is.

    Training elements are `(x, label)` as the model takes them. Validation elements use the test mode of
    the pipelines with `num_snippets` snippets × `crops` crops per video, reshaped to what the training
    model takes: `(B, S, H, W, C)` for TSN segment models (S = num_segments snippets), `(B, H, W, C)`
    otherwise (one centre snippet). Samples (videos) with unreadable frames are skipped and counted in
    `stats` (a `DecodeStats`, shared by every pipeline the function makes), unless `config.strict`.
    """
    from two_stream_tf.data import pipelines

    segments = config.num_segments or None
    batch_size = batch_size or config.batch_size
    service = config.tf_data_service if training else None
    # Workers of a tf.data service cannot call back into this process's Python, so there a corrupt JPEG
    # stops training with an error naming the file instead of being skipped and counted.
    common = dict(batch_size=batch_size, image_size=image_size, seed=config.seed,
                  deterministic=config.deterministic, strict=bool(service) or bool(config.strict), stats=stats,
                  frame_size=None if config.frame_size is None else tuple(config.frame_size))
    if config.stream == "spatial":
        build, extra = pipelines.spatial_dataset, dict(rgb_normalization=rgb_normalization)
    elif config.stream == "temporal":
        build, extra = pipelines.temporal_dataset, dict(stack_length=config.stack_length)
    else:
        build, extra = pipelines.two_stream_dataset, dict(stack_length=config.stack_length,
                                                          rgb_normalization=rgb_normalization)

    def make(input_context=None):
        if training:
            dataset = build(index, training=True, num_segments=segments, input_context=input_context,
                            shuffle_buffer=config.shuffle_buffer, repeat=repeat, start_batch=start_batch,
                            **common, **extra)
        else:
            snippets = num_snippets or segments or 1
            dataset = build(index, training=False, num_snippets=snippets, crops=crops,
                            input_context=input_context, repeat=repeat, **common, **extra)
            dataset = dataset.map(_views_to_model_input(segments), num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.with_options(_data_options(config))
        if service:
            from two_stream_tf.data.service import distribute_dataset
            # Validation stays local; the (sharded) training pipeline is this trainer's own service job.
            # Workers send single samples that are batched again here: small messages move faster.
            local_batch = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
            dataset = distribute_dataset(dataset, service, training=True, batch_size=local_batch)
        return dataset

    return make


def _views_to_model_input(segments):
    # Test mode gives (B, V, H, W, C) per video; with one crop, V = snippets. A segment model takes
    # them as its S segments; a single-snippet model takes the one snippet.
    def convert(views):
        return views if segments else views[:, 0]

    def apply(views, label):
        if isinstance(views, dict):
            return {key: convert(value) for key, value in views.items()}, label
        return convert(views), label

    return apply


# --- model ---------------------------------------------------------------------------------------------

def _load_stream(path, which):
    from two_stream_tf.models import load_model
    found = checkpoints.find_model_file(path) if path else None
    if found is None:
        raise UserError(f"{which}: no trained model at {path!r} (a .keras file or a model_dir with final.keras)")
    return load_model(found, compile=False)


def build_model(config, num_classes, image_size, classes=None):
    """The Keras model of a run (call under `strategy.scope()`).

    With `config.init_from`, the model takes the trained model's weights (see
    `two_stream_tf.training.warm_start`); `classes` (the run's class names) decide whether its classifier
    is kept.
    """
    from two_stream_tf import models

    segments = config.num_segments or None
    kwargs = dict(config.backbone_kwargs)
    if config.stream in ("spatial", "temporal"):
        extra = {} if config.dropout is None else {"dropout": config.dropout}
        # Weights from a trained model replace the ImageNet ones: no need to read those first.
        weights = None if config.init_from else config.weights
        if config.stream == "spatial":
            model = models.spatial_model(num_classes, backbone=config.backbone, weights=weights,
                                         input_shape=(image_size, image_size), partial_bn=config.partial_bn,
                                         num_segments=segments, **extra, **kwargs)
        else:
            model = models.temporal_model(num_classes, backbone=config.backbone, weights=weights,
                                          input_shape=(image_size, image_size), stack_length=config.stack_length,
                                          partial_bn=config.partial_bn, num_segments=segments, **extra, **kwargs)
        if config.init_from:
            from two_stream_tf.training import warm_start
            start = warm_start.initialize_from(model, config.init_from, classes=classes)
            if config.verbose:
                print(f"init_from {start.source}: "
                      f"{'all weights but the classifier (new classes)' if start.reheaded else 'all weights'}",
                      flush=True)
        if config.freeze_backbone:
            _freeze_backbone(model.get_layer("backbone"), models.get_backbone(config.backbone),
                             keep_first_conv=config.stream == "temporal")
        return model
    if config.init_from:
        raise UserError("init_from: a fusion run starts from its trained streams (spatial_model, "
                        "temporal_model); init_from takes a stream run")
    spatial = _load_stream(config.spatial_model, "spatial_model")
    temporal = _load_stream(config.temporal_model, "temporal_model")
    for stream in (spatial, temporal):
        stream.trainable = False
    extra = {} if config.dropout is None else {"dropout": config.dropout}
    return models.two_stream_model(spatial, temporal, fusion=config.fusion, num_segments=segments, **extra)


def _freeze_backbone(backbone, spec, keep_first_conv):
    """Freezes the backbone; with `keep_first_conv`, all of it but the first convolution.

    A temporal stream's first convolution is the one layer whose input is not what ImageNet trained it on:
    its cross-modality kernel is the same for every channel, so it sees only the sum of all x and y flow
    planes. Training it lets a classifier on frozen features tell horizontal from vertical motion (measured
    on the synthetic recipe: 72 % -> 91 % of test videos with the right motion). Frozen layers,
    BatchNormalization included, run in inference mode.
    """
    first = spec.first_conv(backbone) if keep_first_conv else None
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer is first


def stream_input_facts(config):
    """(image_size, rgb_normalization) of a run: from the backbone, or from the streams of a fusion."""
    if config.stream == "fusion":
        spatial = _load_stream(config.spatial_model, "spatial_model")
        run = load_run_config(storage.dirname(checkpoints.find_model_file(config.spatial_model))) or {}
        image_size = spatial.input_shape[-2]
        return image_size, run.get("rgb_normalization", "tf")
    from two_stream_tf.models import get_backbone
    spec = get_backbone(config.backbone)
    if config.init_from and not config.image_size:
        from two_stream_tf.training import warm_start
        return warm_start.source_image_size(config.init_from), spec.rgb_normalization
    return config.image_size or spec.default_input_size, spec.rgb_normalization


def build_optimizer(config, total_steps):
    """The optimizer with its learning-rate schedule, weight decay (not on biases and BN) and clipping."""
    learning_rate = schedules.scaled_learning_rate(config.learning_rate, config.batch_size,
                                                   config.reference_batch_size)
    schedule = schedules.build_schedule(config.lr_schedule, learning_rate, total_steps=total_steps,
                                        boundaries=config.lr_boundaries, decay_rate=config.lr_decay,
                                        warmup_steps=config.warmup_steps)
    common = dict(learning_rate=schedule, weight_decay=config.weight_decay or None,
                  global_clipnorm=config.clip_norm or None)
    if config.optimizer == "sgd":
        # Keras applies weight decay decoupled (w -= lr * wd * w); Caffe adds wd * w to the gradient.
        # Without momentum the two coincide; with momentum 0.9 the difference is small in practice.
        optimizer = keras.optimizers.SGD(momentum=config.momentum, **common)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(**{**common, "weight_decay": config.weight_decay})
    elif config.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(momentum=config.momentum, **common)
    else:
        raise UserError(f"unknown optimizer {config.optimizer!r}")
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def compile_model(model, config, total_steps, num_classes):
    """Compiles with the run's optimizer, loss (with label smoothing) and top-1 / top-5 metrics."""
    model.compile(
        optimizer=build_optimizer(config, total_steps),
        loss=losses.SparseCategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1"),
                 keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes), name="top5")],
        jit_compile=bool(config.jit_compile))
    return model


# --- the run -------------------------------------------------------------------------------------------

def _absolute_paths(config):
    # Stored absolute, so that `evaluate` and a resume find the data and models from any folder.
    def absolute(value):
        return storage.absolute(value) if value else value

    weights = config.weights
    if isinstance(weights, str) and weights not in ("imagenet",) and (storage.is_remote(weights)
                                                                        or os.path.exists(weights)):
        weights = storage.absolute(weights)
    return dataclasses.replace(config, frames_root=absolute(config.frames_root),
                               split_dir=absolute(config.split_dir), model_dir=absolute(config.model_dir),
                               spatial_model=absolute(config.spatial_model),
                               temporal_model=absolute(config.temporal_model), weights=weights,
                               init_from=absolute(config.init_from))


def _finished_epochs(model_dir):
    """The epoch count of a completed run in `model_dir` (done marker, or a log of all epochs with no backup
    left), or None when the run is not complete."""
    stored = load_run_config(model_dir) or {}
    epochs = stored.get("epochs_resolved")
    if run_folder.is_done(model_dir):
        return epochs or 0
    if epochs and not storage.isdir(storage.join(model_dir, BACKUP_DIR)):
        rows = callbacks.ResumableCSVLogger.read_rows(storage.join(model_dir, CSV_NAME))
        if rows and rows[-1]["epoch"] == epochs - 1:
            return epochs
    return None


def run_length(config, num_train_videos):
    """`(steps_per_epoch, epochs, total_steps)` of a run over `num_train_videos` training videos."""
    steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(num_train_videos / config.batch_size))
    epochs = config.epochs or max(1, math.ceil((config.train_steps or steps_per_epoch) / steps_per_epoch))
    return steps_per_epoch, epochs, config.train_steps or epochs * steps_per_epoch


def check_optimisation(config):
    """Raises UserError for a learning rate (or another optimiser number) that is not finite, or a
    non-positive learning rate or negative warm-up."""
    for name in ("learning_rate", "momentum", "weight_decay", "lr_decay", "label_smoothing", "clip_norm"):
        value = getattr(config, name)
        if value is not None and not math.isfinite(float(value)):
            raise UserError(f"{name}={value} is not a finite number")
    if not config.learning_rate > 0:
        raise UserError(f"learning_rate={config.learning_rate} must be positive")
    if config.warmup_steps < 0:
        raise UserError(f"warmup_steps={config.warmup_steps} must not be negative")


def check_warmup(config, total_steps):
    """Raises UserError when the linear warm-up would not end before the run does."""
    if config.warmup_steps and config.warmup_steps >= total_steps:
        raise UserError(f"warmup_steps={config.warmup_steps} is not shorter than the run ({total_steps} "
                        "optimizer steps): the learning rate would never reach its base value")


def _stages(config):
    if not config.trainable_layers:
        return ()
    from two_stream_tf.training import finetune
    if config.stream == "fusion":
        raise UserError("trainable_layers: a fusion run trains only its head on frozen streams")
    if config.freeze_backbone:
        raise UserError("trainable_layers and freeze_backbone both given: freeze_backbone is the schedule "
                        "'classifier@0'; give one")
    stages = config.trainable_layers
    return finetune.parse_stages(stages) if isinstance(stages, str) else tuple(stages)


def _check_not_finished(model_dir, chief=True):
    """Raises UserError for a finished run; rewrites a finished run's missing final.keras (on the chief) and
    returns its path."""
    final = storage.join(model_dir, checkpoints.FINAL_NAME)
    has_backup = storage.isdir(storage.join(model_dir, BACKUP_DIR))
    if storage.isfile(final) and (run_folder.is_done(model_dir) or not has_backup):
        raise UserError(f"{model_dir} already holds a finished run ({checkpoints.FINAL_NAME}); choose "
                        "another model_dir, or delete it to train again")
    epochs = _finished_epochs(model_dir)
    if epochs is None or storage.isfile(final):
        return None
    # Complete but final.keras is gone (deleted, or a crash right after the backup was removed): the last
    # epoch's periodic checkpoint is the same model state; never train the run again.
    last = checkpoints.latest_periodic(model_dir)
    if last is None or (epochs and last.epoch != epochs):
        raise UserError(f"{model_dir} holds a finished run ({run_folder.DONE_NAME}, {CSV_NAME}) whose "
                        f"{checkpoints.FINAL_NAME} is missing, and no checkpoint of its last epoch {epochs} is left "
                        "to rewrite it from; choose another model_dir, or delete this one to train again")
    if not chief:
        return final
    with atomic.atomic_output(final) as tmp:
        storage.copy(last.path, tmp)
    print(f"{model_dir}: the run had finished; {checkpoints.FINAL_NAME} rewritten from "
          f"{storage.basename(last.path)} (nothing trained)", flush=True)
    return final


def _finished_result(model_dir, final, replicas):
    best = storage.join(model_dir, checkpoints.BEST_NAME)
    return TrainResult(model_dir=model_dir, final_path=final, best_path=best if storage.isfile(best) else None,
                       history=[], resumed_from_epoch=None, num_replicas=replicas)


def _mixed_precision_policy(strategy):
    if isinstance(strategy, tf.distribute.TPUStrategy) or not tf.config.list_logical_devices("GPU"):
        return "mixed_bfloat16"
    return "mixed_float16"


def _numpy_batch(dataset_function, limit):
    # A few elements of the (undistributed) dataset as NumPy, for TensorBoard images.
    xs, ys = [], []
    count = 0
    for x, y in dataset_function(None):
        xs.append(x)
        ys.append(y.numpy())
        count += len(ys[-1])
        if count >= limit:
            break
    if isinstance(xs[0], dict):
        x = {key: np.concatenate([item[key].numpy() for item in xs])[:limit] for key in xs[0]}
    else:
        x = np.concatenate([item.numpy() for item in xs])[:limit]
    return x, np.concatenate(ys)[:limit]


def train(config, *, strategy=None, indices=None, flags_text=None, callbacks=None):
    """Trains the model `config` describes and writes the run folder (see the module docstring).

    A rerun with the same config resumes an interrupted run: from the newest good backup (a damaged one
    falls back to the previous generation with a warning), at the epoch and optimizer step it recorded.
    A finished run is not trained again (its final.keras is rewritten from the last checkpoint if missing).

    Args:
      config: a `TrainConfig`.
      strategy: a `tf.distribute.Strategy` (default: `create_strategy(config.strategy, config.tpu)`).
      indices: `(train_index, validation_index)` already opened (default: `open_indices(config)`); the
        validation index may be None (no validation).
      flags_text: the command-line flags used, saved as `model_dir/flags.cfg` (flagfile format).
      callbacks: Keras callbacks of the caller (e.g. `keras.callbacks.EarlyStopping`, a TensorBoard of
        one's own), run after the library's own in `model.fit`. A callback that stops training
        (`model.stop_training = True`) ends the run: `final.keras` is the model at that epoch.

    Returns:
      A `TrainResult`.

    Raises:
      UserError: bad paths, a split that does not match the frames, a batch size the replicas cannot
        share, a model_dir holding a finished run, used by another live run (naming its pid), or holding
        a run with other settings (naming the flags), a learning rate that is not a positive finite number,
        a warm-up longer than the run, a fine-tuning schedule that does not fit the run or backbone, an
        init_from model that does not fit.
    """
    # The `callbacks` argument hides the module of the same name here; keep both apart.
    user_callbacks, callbacks = list(callbacks or ()), _callbacks_module
    if config.stream not in STREAMS:
        raise UserError(f"unknown stream {config.stream!r}; one of {', '.join(STREAMS)}")
    # Settings that cannot train fail before the run folder is made (nothing is left behind).
    check_optimisation(config)
    stages = _stages(config)
    indices = indices if indices is not None else open_indices(config)
    train_index = indices[0]
    if len(train_index) == 0:
        raise UserError(f"the training list of split {config.split} in {config.split_dir} has no videos")
    _, epochs, total_steps = run_length(config, len(train_index))
    check_warmup(config, total_steps)
    if stages:
        from two_stream_tf.training import finetune
        finetune.check_stages(stages, epochs)
    model_dir = run_folder.prepare(config.model_dir)
    config = _absolute_paths(dataclasses.replace(config, model_dir=model_dir))
    strategy = strategy or strategy_lib.create_strategy(config.strategy, config.tpu)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"batch size {config.batch_size} cannot be split evenly across {replicas} replicas")
    chief = strategy_lib.is_chief(strategy)
    lock = run_folder.RunLock(model_dir)
    if chief:
        lock.acquire()
    try:
        final = _check_not_finished(model_dir, chief)
        if final is not None:
            return _finished_result(model_dir, final, replicas)
        return _train_locked(config, strategy, indices, flags_text, chief, user_callbacks)
    finally:
        lock.release()


def _train_locked(config, strategy, indices, flags_text, chief, user_callbacks=()):
    model_dir = config.model_dir
    replicas = strategy.num_replicas_in_sync
    train_index, val_index = indices  # opened and checked by `train`
    num_classes = len(train_index.classes)
    steps_per_epoch, epochs, total_steps = run_length(config, len(train_index))
    stages = _stages(config)
    if stages:
        from two_stream_tf.training import finetune
    write_dir = strategy_lib.write_dir(model_dir, strategy)
    storage.makedirs(write_dir)
    backup_dir = storage.join(model_dir, BACKUP_DIR)
    if chief:
        for folder in (model_dir, backup_dir):
            atomic.remove_stale_temporaries(folder)

    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy().name
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(_mixed_precision_policy(strategy))
    try:
        image_size, rgb_normalization = stream_input_facts(config)

        run = dict(config.to_json(), image_size=image_size, rgb_normalization=rgb_normalization,
                   classes=list(train_index.classes), num_classes=num_classes, train_videos=len(train_index),
                   epochs_resolved=epochs, steps_per_epoch_resolved=steps_per_epoch, total_steps=total_steps,
                   num_replicas=replicas,
                   layout_resolved=getattr(getattr(train_index, "layout", None), "name", config.layout))
        resuming = backup_lib.read_state(backup_dir) is not None
        stored = load_run_config(model_dir) if resuming else None
        if stored is not None:
            run_folder.check_resume(model_dir, stored, run)
        if chief:
            atomic.write_text(storage.join(model_dir, CONFIG_NAME), json.dumps(run, indent=2) + "\n")
            if flags_text is not None:
                atomic.write_text(storage.join(model_dir, "flags.cfg"), flags_text)
            if val_index is not None:
                from two_stream_tf.data.holdout import format_list
                atomic.write_text(storage.join(model_dir, VALIDATION_LIST_NAME),
                                  format_list(_split_entries_of(val_index)))

        with strategy.scope():
            model = build_model(config, num_classes, image_size, classes=train_index.classes)
            compile_model(model, config, total_steps, num_classes)
            if stages:
                # Builds the optimizer for every stage's variables: under the scope, like the model (and
                # before the backup is restored, so the optimizer's variables are there to restore into).
                from two_stream_tf.models import get_backbone
                unfreezing = finetune.StagedUnfreezing(model, stages, get_backbone(config.backbone),
                                                       verbose=bool(config.verbose))
        backup = backup_lib.RunBackup(backup_dir, save_freq=config.backup_every_steps or "epoch",
                                      write_dir=storage.join(write_dir, BACKUP_DIR))
        initial_epoch = 0
        with strategy.scope():
            state = backup.restore(model)
        if state is not None:
            initial_epoch = min(state.epoch, epochs)
            # A mid-epoch backup: the epoch is trained again from its start, so the step counter (and with it
            # the learning-rate schedule) goes back to that start; the run then takes the planned steps.
            backup_lib.rewind_step_counter(model, backup_lib.BackupState(initial_epoch, state.batch,
                                                                         state.iterations, state.path),
                                           steps_per_epoch)
            again = f"its first {state.batch} batches are trained again, " if state.batch else ""
            print(f"Resuming from the backup in {backup_dir}: continuing at epoch {state.epoch + 1}. "
                  f"({again}from optimizer step {initial_epoch * steps_per_epoch}.)", flush=True)

        # The training samples continue where the run stopped (each batch's samples are a stateless function
        # of the seed and the position, so with --deterministic the resumed run sees the same batches).
        from two_stream_tf.data.decode import DecodeStats
        train_stats = DecodeStats()
        train_fn = dataset_fn(config, train_index, training=True, rgb_normalization=rgb_normalization,
                              image_size=image_size, repeat=True, start_batch=initial_epoch * steps_per_epoch,
                              stats=train_stats)
        train_data = strategy.distribute_datasets_from_function(train_fn)
        validation_data = validation_steps = None
        per_epoch_index = None
        if val_index is not None and len(val_index):
            from two_stream_tf.data.holdout import stratified_index
            per_epoch_index = stratified_index(val_index, config.validation_videos, seed=config.seed)
        if config.validation and per_epoch_index is not None:
            # One pass over the validation videos per validation; on a cluster, an endless dataset and a fixed step
            # count instead, since workers whose shards ran dry at different steps would stall the all-reduce.
            cluster = strategy_lib.task_info(strategy)[0] is not None
            val_fn = dataset_fn(config, per_epoch_index, training=False, rgb_normalization=rgb_normalization,
                                image_size=image_size, repeat=True if cluster else None)
            validation_data = strategy.distribute_datasets_from_function(val_fn)
            validation_steps = max(1, math.ceil(len(per_epoch_index) / config.batch_size)) if cluster else None

        run_callbacks = [
            # First, so that the checkpoint, CSV and TensorBoard callbacks see its log values.
            data_health.SkippedSamplesReport(train_stats),
            backup,
            callbacks.LearningRateLogger(),
            callbacks.EpochCheckpoints(write_dir, monitor="val_top1" if validation_data is not None else "top1",
                                       period=config.checkpoint_every, total_epochs=epochs,
                                       keep=config.keep_checkpoints),
            callbacks.ResumableCSVLogger(storage.join(write_dir, CSV_NAME)),
            summaries.EpochScalars(storage.join(write_dir, TENSORBOARD_DIR)),
        ]
        if stages:
            run_callbacks.append(unfreezing)
        if config.tensorboard_images and chief:
            samples, _ = _numpy_batch(train_fn, 4)
            validation = None
            if per_epoch_index is not None and validation_data is not None:
                # The confusion matrix of a stratified 64 videos: the lists are sorted by class, so their
                # first 64 would show one or two classes.
                from two_stream_tf.data.holdout import stratified_index
                subset = stratified_index(per_epoch_index, 64, seed=config.seed)
                small = dataset_fn(config, subset, training=False, rgb_normalization=rgb_normalization,
                                   image_size=image_size, batch_size=min(config.batch_size, 16), repeat=False)
                validation = _numpy_batch(small, 64)
            run_callbacks.append(callbacks.TensorBoardImages(
                storage.join(write_dir, TENSORBOARD_DIR), samples, config.stream, train_index.classes,
                validation=validation, rgb_normalization=rgb_normalization,
                period=config.validation_freq))
        run_callbacks.extend(user_callbacks)

        if config.health_checks:
            # Last in the list, after the caller's callbacks too: with stop_on_collapse its on_train_end
            # raises, after the others have run.
            run_callbacks.append(health.TrainingHealth(
                _numpy_batch(train_fn, 8)[0], num_classes, every_steps=config.health_every_steps,
                stop_on_collapse=config.stop_on_collapse, batch_size=config.batch_size,
                learning_rate=schedules.scaled_learning_rate(config.learning_rate, config.batch_size,
                                                             config.reference_batch_size),
                partial_bn=config.partial_bn, echo=chief,
                log_path=storage.join(write_dir, health.LOG_NAME) if chief else None))

        trained_epochs = []
        if initial_epoch < epochs:
            with warnings.catch_warnings():
                # Each validation reads the finite test list to its end, which Keras reports as running out
                # of data; the training data repeats, so the warning never concerns it.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                history = model.fit(train_data, epochs=epochs, initial_epoch=initial_epoch,
                                    steps_per_epoch=steps_per_epoch, validation_data=validation_data,
                                    validation_steps=validation_steps, validation_freq=config.validation_freq,
                                    callbacks=run_callbacks, verbose=config.verbose, shuffle=False)
            trained_epochs = list(history.epoch)
        # Order matters for a kill at any point: final.keras, then the done marker, then the backup goes.
        final = storage.join(write_dir, checkpoints.FINAL_NAME)
        checkpoints.save_model(model, final)
        scores_path = None
        if chief and config.validation_scores and val_index is not None and len(val_index):
            # Before the done marker: a kill while scoring resumes at the last epoch and scores again.
            scores_path = score_validation(config, final, val_index, image_size=image_size,
                                           rgb_normalization=rgb_normalization)
        if chief:
            run_folder.mark_done(model_dir, {"epochs": epochs, "total_steps": epochs * steps_per_epoch,
                                             "optimizer_steps": int(model.optimizer.iterations.numpy()),
                                             "final": checkpoints.FINAL_NAME})
        backup.remove()
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            storage.rmtree(write_dir)
    # One row per epoch of this call, from the CSV log (validation values only on validation epochs).
    rows = [row for row in callbacks.ResumableCSVLogger.read_rows(storage.join(model_dir, CSV_NAME))
            if row["epoch"] in set(trained_epochs)]
    best = storage.join(model_dir, checkpoints.BEST_NAME)
    return TrainResult(model_dir=model_dir, final_path=storage.join(model_dir, checkpoints.FINAL_NAME),
                       best_path=best if storage.isfile(best) else None, history=rows,
                       resumed_from_epoch=backup.restored[0] if backup.restored else None, num_replicas=replicas,
                       validation_scores_path=scores_path)


def evaluation_dir(model_dir, split, subset):
    """Where a run's scores of a subset go: `<model_dir>/evaluation_split<N>_<subset>` (as `evaluate` writes)."""
    return storage.join(model_dir, f"evaluation_split{int(split)}_{subset}")


def score_validation(config, model_path, val_index, *, image_size, rgb_normalization):
    """Scores a model file on the validation videos by the test protocol; writes the evaluation report.

    The scores are what `two-stream fuse --fit_on` fits fusion weights on before applying them to the test
    scores of the same models, so fusion weights are never chosen on test videos.

    Returns:
      The path of the written `scores.npz` (in `evaluation_dir(model_dir, split, "validation")`).
    """
    from two_stream_tf.evaluation import protocol, report
    from two_stream_tf.models import load_model
    model = load_model(model_path, compile=False)
    scores = protocol.evaluate(model, val_index, config.stream, image_size=image_size,
                               num_snippets=config.protocol_snippets, crops=config.protocol_crops,
                               stack_length=config.stack_length, rgb_normalization=rgb_normalization,
                               frame_size=None if config.frame_size is None else tuple(config.frame_size),
                               progress=config.verbose == 1)
    output_dir = evaluation_dir(storage.dirname(model_path), config.split, "validation")
    report.write_report(output_dir, scores, title=f"{config.stream} split {config.split} validation",
                        protocol={"model": model_path, "snippets": config.protocol_snippets,
                                  "crops": config.protocol_crops, "subset": "validation", "split": config.split,
                                  "stream": config.stream})
    return storage.join(output_dir, report.SCORES_NAME)


def _split_entries_of(index):
    # Index entries carry the folder path (`<Class>/<video>` or `<video>`); the list file names the video
    # as the split files do, `<Class>/<video>.avi`.
    from two_stream_tf.data.splits import SplitEntry
    classes = index.classes
    return [SplitEntry(video=os.path.basename(entry.video), label=entry.label,
                       path=f"{classes[entry.label]}/{os.path.basename(entry.video)}.avi") for entry in index.entries]
