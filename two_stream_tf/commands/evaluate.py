"""`two-stream evaluate`: scores a trained model by the test protocol and writes scores and metrics.

    two-stream evaluate --flagfile=experiments/configs/ucf101_resnet50_spatial_split1.cfg
    two-stream evaluate --checkpoint=runs/spatial --test_snippets=25 --test_crops=10

Takes the same flags as `two-stream train` (so one recipe serves both); dataset and model settings not
given on the command line come from the run's `train_config.json`. Writes to `--output_dir` (default
`<model_dir>/evaluation_split<N>_<subset>`): `scores.npz` (per-video softmax averages, plain arrays),
`metrics.json` (top-1, top-5, mean class accuracy, confusion matrix), `per_class_accuracy.json`,
`confusion_matrix.png` and `flags.cfg`.

A frame that cannot be decoded (empty, truncated, a damaged header, another size than the rest of its
flow stack) does not stop the evaluation: its view is left out of the video's average, and every video
that lost views is listed (in metrics.json and on the console) with how many; a video left with none is
scored uniform and counted as wrong. `--strict` stops at the first such file instead, naming it (exit 2).
"""
import os

from absl import flags

from two_stream_tf.commands import _training_flags as common
from two_stream_tf.errors import UserError

HELP = "score a trained model by the test protocol (25 snippets x 10 crops): scores.npz, metrics, confusion"

# Settings taken from the run's train_config.json unless given as flags.
_FROM_RUN = ("stream", "frames_root", "split_dir", "split", "layout", "dataset", "class_subset",
             "stack_length", "image_size", "backbone")


def _settings(fv, run):
    values = {}
    for name in _FROM_RUN:
        if fv[name].present or run is None or run.get(name) is None:
            values[name] = fv[name].value
        else:
            values[name] = run[name]
    return values


def main(argv, prog="two-stream evaluate"):
    """Parses flags, evaluates, writes the report. Returns 0 (or raises UserError for bad input)."""
    fv = flags.FlagValues()
    common.define_all(fv)
    if common.parse(fv, argv, prog) is None:
        return 0
    from two_stream_tf.training import checkpoints, fit

    location = fv.checkpoint or fv.model_dir
    if not location:
        raise UserError("--checkpoint (or --model_dir) is required: the model to evaluate")
    flag = "checkpoint" if fv.checkpoint else "model_dir"
    model_file = checkpoints.find_model_file(location)
    if model_file is None:
        raise UserError(f"--{flag}: no model at {location} (a .keras file, or a model_dir with best.keras, "
                        "final.keras or periodic checkpoints)")
    run_dir = os.path.dirname(os.path.abspath(model_file))
    run = fit.load_run_config(run_dir)
    values = _settings(fv, run)
    for name in ("stream", "frames_root", "split_dir"):
        if not values[name]:
            raise UserError(f"--{name} is required ({run_dir} has no {fit.CONFIG_NAME} to take it from)")
    for name in ("frames_root", "split_dir"):
        if not os.path.isdir(values[name]):
            raise UserError(f"--{name}: folder not found: {values[name]}")
    subset = values["class_subset"]
    config = fit.TrainConfig(stream=values["stream"], frames_root=values["frames_root"],
                             split_dir=values["split_dir"], model_dir=run_dir, split=values["split"],
                             layout=values["layout"], dataset=values["dataset"],
                             class_subset=common.class_subset(subset) if isinstance(subset, str) else subset,
                             index_cache=fv.index_cache)
    try:
        (index,) = fit.open_indices(config, subsets=(fv.subset,))
    except UserError as error:
        raise UserError(f"--split_dir/--frames_root (split {config.split}): {error}") from None
    index = fit.head(index, fv.max_videos)

    from two_stream_tf.evaluation import protocol, report
    from two_stream_tf.models import load_model
    model = load_model(model_file, compile=False)
    num_outputs = model.output_shape[-1]
    if num_outputs != len(index.classes):
        raise UserError(f"--split_dir/--class_subset: the model in {model_file} classifies {num_outputs} "
                        f"classes, the split has {len(index.classes)}")
    image_size = values["image_size"] or (run or {}).get("image_size")
    if not image_size:
        image_size = (model.input_shape["rgb"] if isinstance(model.input_shape, dict) else model.input_shape)[-2]
    rgb_normalization = (run or {}).get("rgb_normalization")
    if rgb_normalization is None:
        from two_stream_tf.models import get_backbone
        rgb_normalization = get_backbone(values["backbone"]).rgb_normalization
    crops = int(fv.test_crops)
    output_dir = fv.output_dir or os.path.join(run_dir, f"evaluation_split{config.split}_{fv.subset}")
    print(f"{prog}: {model_file} on {len(index)} {fv.subset} videos of split {config.split}, "
          f"{fv.test_snippets} snippets x {crops} crops", flush=True)
    import tensorflow as tf
    try:
        scores = protocol.evaluate(model, index, values["stream"], image_size=image_size,
                                   num_snippets=fv.test_snippets, crops=crops, batch_size=fv.eval_batch_size,
                                   stack_length=values["stack_length"], rgb_normalization=rgb_normalization,
                                   strict=fv.strict)
    except tf.errors.InvalidArgumentError as error:
        failure = common.strict_failure(error)
        if failure is None:
            raise
        raise failure from None
    result = report.write_report(
        output_dir, scores, title=f"{values['stream']} split {config.split}",
        protocol={"model": model_file, "snippets": fv.test_snippets, "crops": crops, "subset": fv.subset,
                  "split": config.split, "stream": values["stream"]})
    from two_stream_tf.training import atomic
    atomic.write_text(os.path.join(output_dir, "flags.cfg"), fv.flags_into_string())
    print(f"{prog}: {result.summary()}")
    lost = report.unreadable_videos(scores)
    if lost:
        views = fv.test_snippets * crops
        print(f"{prog}: {len(lost)} video(s) with unreadable frames, their views left out of the average:")
        for video, count, unscored in lost:
            note = "  unscored: no view decoded, counted as wrong" if unscored else ""
            print(f"  {video:<40} {count:4d} of {views} views unreadable{note}")
    if len(index.classes) <= 20:
        for name, accuracy in result.per_class.items():
            shown = "  n/a" if accuracy is None else f"{100 * accuracy:6.2f} %"
            print(f"  {name:<28} {shown}")
    print(f"{prog}: wrote {output_dir}/{report.SCORES_NAME}, {report.METRICS_NAME}, {report.PER_CLASS_NAME}, "
          f"{report.CONFUSION_NAME}")
    return 0
