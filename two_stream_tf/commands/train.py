"""`two-stream train`: trains a spatial or temporal stream, or a recurrent fusion of two trained streams.

    two-stream train --flagfile=experiments/configs/ucf101_resnet50_spatial_split1.cfg
    two-stream train --stream=temporal --frames_root=data/ucf101/frames --split_dir=data/ucf101/splits \\
        --backbone=mobilenet --backbone_kwargs=alpha=0.25 --epochs=10 --model_dir=runs/flow

absl flags (see `--help`), also from `--flagfile`; the experiments scripts `experiments/train_*.py` run
this command. Rerunning the same command after a crash resumes from the backup in `--model_dir`
(see docs/reliability.md: one run per model_dir, the run's settings checked, damaged state files
falling back to their previous generation).

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
                                "with final.keras)")
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
    validation_split, validation_list = common.validation_values(fv)
    return TrainConfig(
        stream=fv.stream, frames_root=fv.frames_root, split_dir=fv.split_dir, model_dir=model_dir,
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
        tf_data_service=fv.tf_data_service, strict=fv.strict,
        validation=fv.validation, validation_freq=fv.validation_freq, validation_videos=fv.validation_videos,
        validation_split=validation_split, validation_list=validation_list, validation_scores=fv.validation_scores,
        protocol_snippets=fv.test_snippets, protocol_crops=int(fv.test_crops),
        checkpoint_every=fv.checkpoint_every, keep_checkpoints=fv.keep_checkpoints,
        backup_every_steps=fv.backup_every_steps,
        tensorboard_images=fv.tensorboard_images, verbose=fv.verbose)


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
    validation = f"{len(indices[1])} held-out validation videos" if indices[1] is not None else "no validation"
    print(f"{prog}: {config.stream} stream, {len(indices[0])} training videos, {validation}, "
          f"{len(indices[0].classes)} classes, {strategy.num_replicas_in_sync} replica(s) "
          f"({type(strategy).__name__}), global batch {config.batch_size}", flush=True)
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
