"""`two-stream train`: trains a spatial or temporal stream, or a recurrent fusion of two trained streams.

    two-stream train --flagfile=experiments/configs/ucf101_resnet50_spatial_split1.cfg
    two-stream train --stream=temporal --frames_root=data/ucf101/frames --split_dir=data/ucf101/splits \\
        --backbone=mobilenet --backbone_kwargs=alpha=0.25 --epochs=10 --model_dir=runs/flow

absl flags (see `--help`), also from `--flagfile`; the experiments scripts `experiments/train_*.py` run
this command. Rerunning the same command after a crash resumes from the backup in `--model_dir`.
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
    if fv.epochs is None and fv.train_steps is None:
        raise UserError("--epochs or --train_steps is required")
    if fv.epochs is not None and fv.train_steps is not None:
        raise UserError(f"--epochs={fv.epochs} and --train_steps={fv.train_steps} both given; give one")
    boundaries = common.parse_int_list(fv.lr_boundaries, "lr_boundaries")
    if fv.lr_schedule == "step" and not boundaries and fv["lr_boundaries"].present:
        raise UserError("--lr_boundaries is empty")
    if fv.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {fv.learning_rate}")
    kwargs = common.parse_kwargs(fv.backbone_kwargs)
    weights = common.check_weights(fv.weights)
    if fv.stream == "fusion":
        common.require(fv, "spatial_model", "temporal_model")
        from two_stream_tf.training.checkpoints import find_model_file
        for name in ("spatial_model", "temporal_model"):
            if find_model_file(fv[name].value) is None:
                raise UserError(f"--{name}: no trained model at {fv[name].value} (a .keras file, or a model_dir "
                                "with best.keras or final.keras)")
        if fv.fusion != "recurrent":
            raise UserError(f"--fusion={fv.fusion}: only recurrent fusion has weights to train; fixed "
                            "weightings of the scores are done by `two-stream fuse`")
        if not fv.num_segments:
            raise UserError("--num_segments: recurrent fusion reads sequences of snippets; give their number")
    else:
        spec = common.check_backbone(fv.backbone)
        if fv.image_size is not None and fv.image_size < spec.min_input_size:
            raise UserError(f"--image_size={fv.image_size} is smaller than backbone {spec.name}'s minimum "
                            f"{spec.min_input_size}")
    if fv.strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    if fv.tf_data_service:
        parse_address(fv.tf_data_service, "--tf_data_service")
    return TrainConfig(
        stream=fv.stream, frames_root=fv.frames_root, split_dir=fv.split_dir, model_dir=fv.model_dir,
        split=fv.split, layout=fv.layout, dataset=fv.dataset, class_subset=common.class_subset(fv.class_subset),
        index_cache=fv.index_cache, backbone=fv.backbone, backbone_kwargs=kwargs, weights=weights,
        image_size=fv.image_size, dropout=fv.dropout, partial_bn=fv.partial_bn,
        freeze_backbone=fv.freeze_backbone, num_segments=fv.num_segments or None,
        stack_length=fv.stack_length, spatial_model=fv.spatial_model, temporal_model=fv.temporal_model,
        fusion=fv.fusion, batch_size=fv.batch_size, epochs=fv.epochs, train_steps=fv.train_steps,
        steps_per_epoch=fv.steps_per_epoch, optimizer=fv.optimizer, learning_rate=fv.learning_rate,
        momentum=fv.momentum, weight_decay=fv.weight_decay, lr_schedule=fv.lr_schedule,
        lr_boundaries=tuple(boundaries), lr_decay=fv.lr_decay, warmup_steps=fv.warmup_steps,
        label_smoothing=fv.label_smoothing, clip_norm=fv.clip_norm, mixed_precision=fv.mixed_precision,
        jit_compile=fv.jit_compile, strategy=fv.strategy, tpu=fv.tpu, seed=fv.seed,
        deterministic=fv.deterministic, shuffle_buffer=fv.shuffle_buffer, data_threads=fv.data_threads,
        tf_data_service=fv.tf_data_service,
        validation=fv.validation, validation_freq=fv.validation_freq, validation_videos=fv.validation_videos,
        checkpoint_every=fv.checkpoint_every, backup_every_steps=fv.backup_every_steps,
        tensorboard_images=fv.tensorboard_images, verbose=fv.verbose,
        reference_batch_size=fv.reference_batch_size, health_checks=fv.health_checks,
        health_every_steps=fv.health_every_steps, stop_on_collapse=fv.stop_on_collapse)


def open_indices_for_flags(config):
    """Opens the train and test indices; errors name the flags involved."""
    from two_stream_tf.training import fit
    try:
        return fit.open_indices(config)
    except UserError as error:
        raise UserError(f"--split_dir/--frames_root (split {config.split}): {error}") from None


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
    try:
        strategy = strategy_lib.create_strategy(config.strategy, config.tpu)
    except UserError as error:
        raise UserError(f"--strategy={config.strategy}: {error}") from None
    if config.batch_size % strategy.num_replicas_in_sync:
        raise UserError(f"--batch_size={config.batch_size} cannot be split evenly across "
                        f"{strategy.num_replicas_in_sync} replicas")
    print(f"{prog}: {config.stream} stream, {len(indices[0])} training / {len(indices[1])} test videos, "
          f"{len(indices[0].classes)} classes, {strategy.num_replicas_in_sync} replica(s) "
          f"({type(strategy).__name__}), global batch {config.batch_size}{_rate_note(config)}", flush=True)
    result = fit.train(config, strategy=strategy, indices=indices, flags_text=fv.flags_into_string())
    if result.history:
        last = result.history[-1]
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(last.items()) if k != "epoch" and v is not None)
        print(f"{prog}: finished epoch {last['epoch'] + 1}: {shown}")
    print(f"{prog}: model_dir {result.model_dir} (final.keras, best.keras, log.csv, tensorboard/)")
    return 0
