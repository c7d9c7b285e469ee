"""`two-stream train`: trains a spatial or temporal stream, or a recurrent fusion of two trained streams.

    two-stream train --flagfile=experiments/configs/ucf101_resnet50_spatial_split1.cfg
    two-stream train --stream=temporal --frames_root=data/ucf101/frames --split_dir=data/ucf101/splits \\
        --backbone=mobilenet --backbone_kwargs=alpha=0.25 --epochs=10 --model_dir=runs/flow
    two-stream train --stream=spatial --init_from=runs/ucf101_rgb --frames_root=data/hmdb51/frames \\
        --split_dir=data/hmdb51/splits --trainable_layers=classifier@0,blocks:2@10 --epochs=20 \\
        --model_dir=runs/hmdb51_rgb_from_ucf101

absl flags (see `--help`), also from `--flagfile`; the experiments scripts `experiments/train_*.py` run
this command. Rerunning the same command after a crash resumes from the backup in `--model_dir`
(see docs/reliability.md: one run per model_dir, the run's settings checked, damaged state files
falling back to their previous generation). With `--init_from`, flags the command line does not give
among --backbone, --backbone_kwargs, --stack_length and --image_size come from the trained model's
`train_config.json`.

A training sample with a frame that cannot be decoded (empty, truncated, a damaged header, another size
than the rest of its stack) is skipped and counted; each epoch that skipped any prints one line naming
the files, and log.csv has the count (`skipped_samples`). `--strict` stops at the first such file
instead, naming it (exit 2).
"""
import os

from absl import flags

from two_stream_tf.addresses import parse_address
from two_stream_tf.commands import _training_flags as common
from two_stream_tf.errors import UserError

HELP = "train a spatial / temporal stream or a recurrent fusion (tf.distribute, resumes after a crash)"


def config_from_flags(fv):
    """Checks the parsed flags and turns them into a `TrainConfig` (no work done yet).

    Raises:
      UserError: the first bad value, naming its flag.
    """
    from two_stream_tf.training.fit import TrainConfig

    common.require(fv, "stream", "frames_root", "split_dir", "model_dir")
    common.check_folder(fv, "frames_root")
    common.check_folder(fv, "split_dir")
    model_dir = common.check_model_dir(fv)
    common.check_finite_numbers(fv)
    model_values = _model_values(fv, model_dir)
    if fv.epochs is None and fv.train_steps is None:
        raise UserError("--epochs or --train_steps is required")
    if fv.epochs is not None and fv.train_steps is not None:
        raise UserError(f"--epochs={fv.epochs} and --train_steps={fv.train_steps} both given; give one")
    boundaries = common.parse_int_list(fv.lr_boundaries, "lr_boundaries")
    if fv.lr_schedule == "step" and not boundaries and fv["lr_boundaries"].present:
        raise UserError("--lr_boundaries is empty")
    if fv.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {fv.learning_rate}")
    kwargs = model_values["backbone_kwargs"]
    weights = common.check_weights(fv.weights)
    stages = None
    if fv.trainable_layers is not None:
        from two_stream_tf.training import finetune
        try:
            stages = finetune.format_stages(finetune.parse_stages(fv.trainable_layers))
        except UserError as error:
            detail = str(error).replace(f"trainable layers {fv.trainable_layers!r}: ", "")
            raise UserError(f"--trainable_layers={fv.trainable_layers}: {detail}") from None
        if fv.freeze_backbone:
            raise UserError("--trainable_layers and --freeze_backbone both given: --freeze_backbone is "
                            "--trainable_layers=classifier@0; give one")
    if fv.stream == "fusion":
        common.require(fv, "spatial_model", "temporal_model")
        from two_stream_tf.training.checkpoints import find_model_file
        for name in ("spatial_model", "temporal_model"):
            if find_model_file(fv[name].value) is None:
                raise UserError(f"--{name}: no trained model at {fv[name].value} (a .keras file, or a model_dir "
                                "with final.keras)")
        if fv.fusion != "recurrent":
            raise UserError(f"--fusion={fv.fusion}: only recurrent fusion has weights to train; fixed "
                            "weightings of the scores are done by `two-stream fuse`")
        if not fv.num_segments:
            raise UserError("--num_segments: recurrent fusion reads sequences of snippets; give their number")
        for name in ("init_from", "trainable_layers"):
            if fv[name].value:
                raise UserError(f"--{name}: a fusion run trains its head on the frozen --spatial_model and "
                                "--temporal_model; give it to the stream runs")
    else:
        spec = common.check_backbone(model_values["backbone"])
        image_size = model_values["image_size"]
        if image_size is not None and image_size < spec.min_input_size:
            raise UserError(f"--image_size={image_size} is smaller than backbone {spec.name}'s minimum "
                            f"{spec.min_input_size}")
        common.check_backbone_kwargs(spec, kwargs, fv.backbone_kwargs)
    if fv.strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    if fv.tf_data_service:
        parse_address(fv.tf_data_service, "--tf_data_service")
    validation_split, validation_list = common.validation_values(fv)
    return TrainConfig(
        stream=fv.stream, frames_root=fv.frames_root, split_dir=fv.split_dir, model_dir=model_dir,
        split=fv.split, layout=fv.layout, dataset=fv.dataset, class_subset=common.class_subset(fv.class_subset),
        index_cache=fv.index_cache, backbone=model_values["backbone"], backbone_kwargs=kwargs, weights=weights,
        image_size=model_values["image_size"], dropout=fv.dropout, partial_bn=fv.partial_bn,
        freeze_backbone=fv.freeze_backbone, num_segments=fv.num_segments or None,
        stack_length=model_values["stack_length"], spatial_model=fv.spatial_model, temporal_model=fv.temporal_model,
        fusion=fv.fusion, init_from=fv.init_from, trainable_layers=stages, batch_size=fv.batch_size,
        epochs=fv.epochs, train_steps=fv.train_steps,
        steps_per_epoch=fv.steps_per_epoch, optimizer=fv.optimizer, learning_rate=fv.learning_rate,
        momentum=fv.momentum, weight_decay=fv.weight_decay, lr_schedule=fv.lr_schedule,
        lr_boundaries=tuple(boundaries), lr_decay=fv.lr_decay, warmup_steps=fv.warmup_steps,
        label_smoothing=fv.label_smoothing, clip_norm=fv.clip_norm, mixed_precision=fv.mixed_precision,
        jit_compile=fv.jit_compile, strategy=fv.strategy, tpu=fv.tpu, seed=fv.seed,
        deterministic=fv.deterministic, shuffle_buffer=fv.shuffle_buffer, data_threads=fv.data_threads,
        tf_data_service=fv.tf_data_service, strict=fv.strict,
        frame_size=common.frame_size(fv.frame_size, "frame_size"),
        validation=fv.validation, validation_freq=fv.validation_freq, validation_videos=fv.validation_videos,
        validation_split=validation_split, validation_list=validation_list, validation_scores=fv.validation_scores,
        protocol_snippets=fv.test_snippets, protocol_crops=int(fv.test_crops),
        checkpoint_every=fv.checkpoint_every, keep_checkpoints=fv.keep_checkpoints,
        backup_every_steps=fv.backup_every_steps,
        tensorboard_images=fv.tensorboard_images, verbose=fv.verbose,
        reference_batch_size=fv.reference_batch_size, health_checks=fv.health_checks,
        health_every_steps=fv.health_every_steps, stop_on_collapse=fv.stop_on_collapse)


# Model flags a run started with --init_from takes from the trained model's run when not given.
_FROM_INIT_RUN = ("backbone", "backbone_kwargs", "stack_length", "image_size")


def _model_values(fv, model_dir):
    """backbone, backbone_kwargs (parsed), stack_length and image_size: from the flags, or for flags not
    given, from the --init_from model's train_config.json. Also checks --init_from against `model_dir`
    (the absolute --model_dir)."""
    values = {name: fv[name].value for name in _FROM_INIT_RUN}
    values["backbone_kwargs"] = common.parse_kwargs(fv.backbone_kwargs)
    if not fv.init_from:
        return values
    from two_stream_tf import storage
    from two_stream_tf.models import remote
    from two_stream_tf.training import checkpoints, fit
    if remote.is_url(fv.init_from):
        return values  # downloaded when training starts; a URL has no run folder beside it
    found = checkpoints.find_model_file(storage.check(fv.init_from, "--init_from"))
    if found is None:
        raise UserError(f"--init_from: no trained model at {fv.init_from} (a .keras file, a run folder with "
                        "final.keras, periodic checkpoints or best.keras, or a URL of a .keras file)")
    source_dir = storage.dirname(storage.absolute(found))
    if model_dir == source_dir:
        raise UserError(f"--model_dir={fv.model_dir} is the --init_from run's folder; a run started from a "
                        "model needs a new --model_dir")
    try:
        run = fit.load_run_config(source_dir) or {}
    except ValueError:
        run = {}
    for name in _FROM_INIT_RUN:
        if not fv[name].present and run.get(name) is not None:
            values[name] = dict(run[name]) if name == "backbone_kwargs" else run[name]
    return values


def check_run_length(config, num_train_videos):
    """Raises UserError (naming the flags) for a warm-up that outlasts the run or a fine-tuning stage
    that starts after it."""
    from two_stream_tf.training import finetune, fit
    steps_per_epoch, epochs, total_steps = fit.run_length(config, num_train_videos)
    if config.warmup_steps and config.warmup_steps >= total_steps:
        length = (f"--train_steps={config.train_steps}" if config.train_steps else
                  f"--epochs={epochs} x {steps_per_epoch} steps")
        raise UserError(f"--warmup_steps={config.warmup_steps} is not shorter than the run ({total_steps} "
                        f"optimizer steps: {length})")
    if config.trainable_layers:
        try:
            finetune.check_stages(finetune.parse_stages(config.trainable_layers), epochs)
        except UserError as error:
            raise UserError(f"--trainable_layers: {error}") from None


def open_indices_for_flags(config):
    """Opens the training and validation indices (never the test list); errors name the flags involved."""
    from two_stream_tf.training import fit
    flags_involved = "--split_dir/--frames_root"
    if config.validation_list:
        flags_involved += "/--validation_list"
    elif config.validation_split:
        flags_involved += "/--validation_split"
    try:
        return fit.open_indices(config, subsets=("train", "validation"))
    except UserError as error:
        raise UserError(f"{flags_involved} (split {config.split}): {error}") from None


def _rate_note(config):
    if not config.reference_batch_size:
        return ""
    from two_stream_tf.training.schedules import scaled_learning_rate
    rate = scaled_learning_rate(config.learning_rate, config.batch_size, config.reference_batch_size)
    return (f", learning rate {rate:g} (--learning_rate={config.learning_rate:g} for a batch of "
            f"{config.reference_batch_size}, scaled linearly)")


def main(argv, stream=None, prog="two-stream train"):
    """Parses flags, checks them, and trains. Returns 0 (or raises UserError for bad input).

    Args:
      argv: the flags, without the program name.
      stream: force a stream ("spatial", "temporal", "fusion"), as the experiments scripts do.
      prog: the program name for messages.
    """
    fv = flags.FlagValues()
    common.define_all(fv)
    if stream is not None:
        fv.set_default("stream", stream)
    if common.parse(fv, argv, prog) is None:
        return 0
    if stream is not None and fv.stream != stream:
        raise UserError(f"--stream={fv.stream}: {prog} trains the {stream} stream")
    config = config_from_flags(fv)

    from two_stream_tf.training import fit, strategy as strategy_lib
    if fv.cpu_devices:
        strategy_lib.split_cpu(fv.cpu_devices)
    indices = open_indices_for_flags(config)
    check_run_length(config, len(indices[0]))
    try:
        strategy = strategy_lib.create_strategy(config.strategy, config.tpu)
    except UserError as error:
        raise UserError(f"--strategy={config.strategy}: {error}") from None
    if config.batch_size % strategy.num_replicas_in_sync:
        raise UserError(f"--batch_size={config.batch_size} cannot be split evenly across "
                        f"{strategy.num_replicas_in_sync} replicas")
    validation = f"{len(indices[1])} held-out validation videos" if indices[1] is not None else "no validation"
    print(f"{prog}: {config.stream} stream, {len(indices[0])} training videos, {validation}, "
          f"{len(indices[0].classes)} classes, {strategy.num_replicas_in_sync} replica(s) "
          f"({type(strategy).__name__}), global batch {config.batch_size}{_rate_note(config)}", flush=True)
    import tensorflow as tf
    try:
        result = fit.train(config, strategy=strategy, indices=indices, flags_text=fv.flags_into_string())
    except tf.errors.InvalidArgumentError as error:
        failure = common.strict_failure(error)
        if failure is None:
            raise
        raise failure from None
    if result.history:
        last = result.history[-1]
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(last.items()) if k != "epoch" and v is not None)
        print(f"{prog}: finished epoch {last['epoch'] + 1}: {shown}")
    print(f"{prog}: model_dir {result.model_dir} (final.keras, best.keras, log.csv, tensorboard/)")
    if result.validation_scores_path:
        print(f"{prog}: validation scores of final.keras: {result.validation_scores_path}")
    return 0
