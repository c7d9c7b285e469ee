"""Training a stream (or a recurrent fusion of two trained streams) with `model.fit` under `tf.distribute`.

    config = TrainConfig(stream="spatial", frames_root="data/ucf101/frames", split_dir="data/ucf101/splits",
                         model_dir="runs/spatial", backbone="resnet50", num_segments=3, ...)
    result = train(config)

`train` builds the split indices, picks the distribution strategy, builds the model and optimizer under
`strategy.scope()`, feeds the input pipelines through `strategy.distribute_datasets_from_function` (the
global batch is split across replicas) and runs `model.fit` with the callbacks of
`two_stream_tf.training.callbacks`. Everything lands in `model_dir`:

  best.keras                    best model by validation top-1
  EPOCH.BEST.CURRENT.keras      periodic checkpoints, e.g. 007.0.8123.0.7990.keras
  final.keras                   the model after the last epoch
  backup/                       the BackupAndRestore state while training runs (a rerun resumes from it)
  log.csv                       one row per epoch: loss, top-1, top-5, validation, learning rate
  tensorboard/                  scalars (train/, validation/) and images (images/)
  train_config.json             the run's configuration as plain values (also read by evaluation)
  health.log                    warnings of the health checks, when there were any (`training.health`)

Rerunning the same call after a crash continues where the backup stopped.
"""
import dataclasses
import json
import math
import os
import shutil
import warnings

import keras
import numpy as np
import tensorflow as tf

from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic, callbacks, checkpoints, health, losses, schedules, summaries
from two_stream_tf.training import strategy as strategy_lib

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
      the training pipeline runs on its workers, see `two_stream_tf.data.service`), validation,
      validation_freq, validation_videos (0: all),
      checkpoint_every (epochs), backup_every_steps (0: each epoch), tensorboard_images, verbose.
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
    checkpoint_every: int = 1
    backup_every_steps: int = 0
    tensorboard_images: bool = True
    verbose: int = 1
    health_checks: bool = True
    health_every_steps: int = 50
    stop_on_collapse: bool = False

    def to_json(self):
        values = dataclasses.asdict(self)
        values["lr_boundaries"] = list(values["lr_boundaries"])
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
    """

    model_dir: str
    final_path: str
    best_path: str
    history: list
    resumed_from_epoch: int
    num_replicas: int


def load_run_config(model_dir):
    """The `train_config.json` of a run folder as a dict, or None."""
    path = os.path.join(model_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# --- data --------------------------------------------------------------------------------------------------

def open_indices(config, subsets=("train", "test")):
    """The dataset indices (`DatasetIndex`) of the split's lists named in `subsets`, in that order.

    Raises:
      UserError: unreadable split files, or split entries whose frame folders are not under frames_root.
    """
    from two_stream_tf.data.index import build_index
    from two_stream_tf.data.splits import load_split
    split = load_split(config.split_dir, config.split, class_subset=config.class_subset, dataset=config.dataset)
    return tuple(build_index(config.frames_root, split.subset(subset), split.classes, layout=config.layout,
                             cache=config.index_cache) for subset in subsets)


def head(index, count):
    """The first `count` videos of an index (all when `count` is 0 or larger than the index)."""
    if not count or count >= len(index):
        return index
    return dataclasses.replace(index, entries=tuple(index.entries[:count]))


def _data_options(config):
    # Element order is the pipelines' business (`deterministic`); only the thread pool is set here.
    options = tf.data.Options()
    if config.data_threads:
        options.threading.private_threadpool_size = int(config.data_threads)
    return options


def dataset_fn(config, index, *, training, rgb_normalization, image_size, num_snippets=None, crops=1,
               batch_size=None, repeat=None):
    """A function `input_context -> tf.data.Dataset` for `strategy.distribute_datasets_from_function`.

    Training elements are `(x, label)` as the model takes them. Validation elements use the test mode of
    the pipelines with `num_snippets` snippets × `crops` crops per video, reshaped to what the training
    model takes: `(B, S, H, W, C)` for TSN segment models (S = num_segments snippets), `(B, H, W, C)`
    otherwise (one centre snippet).
    """
    from two_stream_tf.data import pipelines

    segments = config.num_segments or None
    batch_size = batch_size or config.batch_size
    service = config.tf_data_service if training else None
    # Workers of a tf.data service cannot call back into this process's Python, so there a corrupt JPEG
    # stops training with an error naming the file instead of being skipped and counted.
    common = dict(batch_size=batch_size, image_size=image_size, seed=config.seed,
                  deterministic=config.deterministic, strict=bool(service))
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
                            shuffle_buffer=config.shuffle_buffer, repeat=repeat, **common, **extra)
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
        raise UserError(f"{which}: no trained model at {path!r} (a .keras file or a model_dir with best.keras)")
    return load_model(found, compile=False)


def build_model(config, num_classes, image_size):
    """The Keras model of a run (call under `strategy.scope()`)."""
    from two_stream_tf import models

    segments = config.num_segments or None
    kwargs = dict(config.backbone_kwargs)
    if config.stream in ("spatial", "temporal"):
        extra = {} if config.dropout is None else {"dropout": config.dropout}
        if config.stream == "spatial":
            model = models.spatial_model(num_classes, backbone=config.backbone, weights=config.weights,
                                         input_shape=(image_size, image_size), partial_bn=config.partial_bn,
                                         num_segments=segments, **extra, **kwargs)
        else:
            model = models.temporal_model(num_classes, backbone=config.backbone, weights=config.weights,
                                          input_shape=(image_size, image_size), stack_length=config.stack_length,
                                          partial_bn=config.partial_bn, num_segments=segments, **extra, **kwargs)
        if config.freeze_backbone:
            _freeze_backbone(model.get_layer("backbone"), models.get_backbone(config.backbone),
                             keep_first_conv=config.stream == "temporal")
        return model
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
        run = load_run_config(os.path.dirname(checkpoints.find_model_file(config.spatial_model))) or {}
        image_size = spatial.input_shape[-2]
        return image_size, run.get("rgb_normalization", "tf")
    from two_stream_tf.models import get_backbone
    spec = get_backbone(config.backbone)
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

def _check_not_finished(model_dir):
    final = os.path.join(model_dir, checkpoints.FINAL_NAME)
    if os.path.isfile(final) and not os.path.isdir(os.path.join(model_dir, BACKUP_DIR)):
        raise UserError(f"{model_dir} already holds a finished run ({checkpoints.FINAL_NAME}); choose "
                        "another model_dir, or delete it to train again")


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


def train(config, *, strategy=None, indices=None, flags_text=None):
    """Trains the model `config` describes and writes the run folder (see the module docstring).

    Args:
      config: a `TrainConfig`.
      strategy: a `tf.distribute.Strategy` (default: `create_strategy(config.strategy, config.tpu)`).
      indices: `(train_index, test_index)` already opened (default: `open_indices(config)`).
      flags_text: the command-line flags used, saved as `model_dir/flags.cfg` (flagfile format).

    Returns:
      A `TrainResult`.

    Raises:
      UserError: bad paths, a split that does not match the frames, a batch size the replicas cannot
        share, a model_dir holding a finished run.
    """
    if config.stream not in STREAMS:
        raise UserError(f"unknown stream {config.stream!r}; one of {', '.join(STREAMS)}")
    model_dir = os.path.abspath(config.model_dir)
    _check_not_finished(model_dir)
    train_index, test_index = indices if indices is not None else open_indices(config)
    if len(train_index) == 0:
        raise UserError(f"the training list of split {config.split} in {config.split_dir} has no videos")
    num_classes = len(train_index.classes)
    strategy = strategy or strategy_lib.create_strategy(config.strategy, config.tpu)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"batch size {config.batch_size} cannot be split evenly across {replicas} replicas")
    chief = strategy_lib.is_chief(strategy)
    write_dir = strategy_lib.write_dir(model_dir, strategy)
    os.makedirs(write_dir, exist_ok=True)
    if chief:
        atomic.remove_stale_temporaries(model_dir)

    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy().name
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(_mixed_precision_policy(strategy))
    try:
        image_size, rgb_normalization = stream_input_facts(config)
        steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(len(train_index) / config.batch_size))
        epochs = config.epochs or max(1, math.ceil((config.train_steps or steps_per_epoch) / steps_per_epoch))
        total_steps = config.train_steps or epochs * steps_per_epoch

        with strategy.scope():
            model = build_model(config, num_classes, image_size)
            compile_model(model, config, total_steps, num_classes)

        train_fn = dataset_fn(config, train_index, training=True, rgb_normalization=rgb_normalization,
                              image_size=image_size, repeat=True)
        train_data = strategy.distribute_datasets_from_function(train_fn)
        validation_data = validation_steps = None
        val_index = head(test_index, config.validation_videos)
        if config.validation and len(val_index):
            # One pass over the test list per validation; on a cluster, an endless dataset and a fixed step
            # count instead, since workers whose shards ran dry at different steps would stall the all-reduce.
            cluster = strategy_lib.task_info(strategy)[0] is not None
            val_fn = dataset_fn(config, val_index, training=False, rgb_normalization=rgb_normalization,
                                image_size=image_size, repeat=True if cluster else None)
            validation_data = strategy.distribute_datasets_from_function(val_fn)
            validation_steps = max(1, math.ceil(len(val_index) / config.batch_size)) if cluster else None

        if chief:
            run = dict(config.to_json(), image_size=image_size, rgb_normalization=rgb_normalization,
                       classes=list(train_index.classes), num_classes=num_classes, epochs_resolved=epochs,
                       steps_per_epoch_resolved=steps_per_epoch, total_steps=total_steps, num_replicas=replicas,
                       layout_resolved=getattr(getattr(train_index, "layout", None), "name", config.layout))
            atomic.write_text(os.path.join(model_dir, CONFIG_NAME), json.dumps(run, indent=2) + "\n")
            if flags_text is not None:
                atomic.write_text(os.path.join(model_dir, "flags.cfg"), flags_text)

        backup = callbacks.AtomicBackupAndRestore(
            os.path.join(model_dir, BACKUP_DIR), save_freq=config.backup_every_steps or "epoch",
            write_dir=os.path.join(write_dir, BACKUP_DIR))
        run_callbacks = [
            backup,
            callbacks.LearningRateLogger(),
            callbacks.EpochCheckpoints(write_dir, monitor="val_top1" if validation_data is not None else "top1",
                                       period=config.checkpoint_every, total_epochs=epochs),
            callbacks.ResumableCSVLogger(os.path.join(write_dir, CSV_NAME)),
            summaries.EpochScalars(os.path.join(write_dir, TENSORBOARD_DIR)),
        ]
        if config.tensorboard_images and chief:
            samples, _ = _numpy_batch(train_fn, 4)
            validation = None
            if len(val_index):
                small = dataset_fn(config, head(val_index, 64), training=False, rgb_normalization=rgb_normalization,
                                   image_size=image_size, batch_size=min(config.batch_size, 16), repeat=False)
                validation = _numpy_batch(small, 64)
            run_callbacks.append(callbacks.TensorBoardImages(
                os.path.join(write_dir, TENSORBOARD_DIR), samples, config.stream, train_index.classes,
                validation=validation, rgb_normalization=rgb_normalization,
                period=config.validation_freq))

        if config.health_checks:
            # Last in the list: with stop_on_collapse its on_train_end raises, after the others have run.
            run_callbacks.append(health.TrainingHealth(
                _numpy_batch(train_fn, 8)[0], num_classes, every_steps=config.health_every_steps,
                stop_on_collapse=config.stop_on_collapse, batch_size=config.batch_size,
                learning_rate=schedules.scaled_learning_rate(config.learning_rate, config.batch_size,
                                                             config.reference_batch_size),
                partial_bn=config.partial_bn, echo=chief,
                log_path=os.path.join(write_dir, health.LOG_NAME) if chief else None))

        with warnings.catch_warnings():
            # Each validation reads the finite test list to its end, which Keras reports as running out
            # of data; the training data repeats, so the warning never concerns it.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            history = model.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                validation_data=validation_data, validation_steps=validation_steps,
                                validation_freq=config.validation_freq, callbacks=run_callbacks,
                                verbose=config.verbose, shuffle=False)
        final_path = os.path.join(write_dir, checkpoints.FINAL_NAME)
        checkpoints.save_model(model, final_path)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)
    # One row per epoch of this call, from the CSV log (validation values only on validation epochs).
    rows = [row for row in callbacks.ResumableCSVLogger.read_rows(os.path.join(model_dir, CSV_NAME))
            if row["epoch"] in set(history.epoch)]
    best = os.path.join(model_dir, checkpoints.BEST_NAME)
    return TrainResult(model_dir=model_dir, final_path=os.path.join(model_dir, checkpoints.FINAL_NAME),
                       best_path=best if os.path.isfile(best) else None, history=rows,
                       resumed_from_epoch=backup.restored[0] if backup.restored else None, num_replicas=replicas)
