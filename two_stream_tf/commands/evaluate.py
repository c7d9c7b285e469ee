"""`two-stream evaluate`: scores a trained model by the test protocol and writes scores and metrics.

    two-stream evaluate --flagfile=experiments/configs/ucf101_resnet50_spatial_split1.cfg
    two-stream evaluate --checkpoint=runs/spatial --test_snippets=25 --test_crops=10
    two-stream evaluate --checkpoint=https://example.org/ucf101_spatial.keras --stream=spatial \
        --frames_root=data/ucf101/frames --split_dir=data/ucf101/splits --output_dir=eval/spatial

Takes the same flags as `two-stream train` (so one recipe serves both); dataset and model settings not
given on the command line come from the run's `train_config.json`. A `--checkpoint` URL of a `.keras` file is
downloaded once (Keras' cache folder) and needs `--output_dir` and the dataset flags. Writes to `--output_dir` (default
`<model_dir>/evaluation_split<N>_<subset>`): `scores.npz` (per-video softmax averages, plain arrays),
`metrics.json` (top-1, top-5, mean class accuracy, confusion matrix), `per_class_accuracy.json`,
`confusion_matrix.png` and `flags.cfg`.
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
    from two_stream_tf.models import remote
    downloaded = remote.is_url(location)
    if downloaded:
        if not (fv.output_dir or (fv.checkpoint and fv.model_dir)):
            raise UserError(f"--output_dir is required when --{flag} is a URL (where to write the report)")
        try:
            model_file = remote.fetch_model(location)
        except UserError as error:
            raise UserError(f"--{flag}: {error}") from None
    else:
        model_file = checkpoints.find_model_file(location)
    if model_file is None:
        raise UserError(f"--{flag}: no model at {location} (a .keras file, a model_dir with best.keras, "
                        "final.keras or periodic checkpoints, or a URL of a .keras file)")
    # A downloaded model's folder is the download cache, not a run folder: nothing to read or write there.
    run_dir = fv.model_dir if downloaded else os.path.dirname(os.path.abspath(model_file))
    run = fit.load_run_config(run_dir) if run_dir else None
    values = _settings(fv, run)
    for name in ("stream", "frames_root", "split_dir"):
        if not values[name]:
            where = f"{run_dir} has no {fit.CONFIG_NAME}" if run_dir else "a downloaded model has no run folder"
            raise UserError(f"--{name} is required ({where} to take it from)")
    for name in ("frames_root", "split_dir"):
        if not os.path.isdir(values[name]):
            raise UserError(f"--{name}: folder not found: {values[name]}")
    subset = values["class_subset"]
    config = fit.TrainConfig(stream=values["stream"], frames_root=values["frames_root"],
                             split_dir=values["split_dir"], model_dir=run_dir or "", split=values["split"],
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
    scores = protocol.evaluate(model, index, values["stream"], image_size=image_size,
                               num_snippets=fv.test_snippets, crops=crops, batch_size=fv.eval_batch_size,
                               stack_length=values["stack_length"], rgb_normalization=rgb_normalization)
    result = report.write_report(
        output_dir, scores, title=f"{values['stream']} split {config.split}",
        protocol={"model": model_file, "snippets": fv.test_snippets, "crops": crops, "subset": fv.subset,
                  "split": config.split, "stream": values["stream"]})
    from two_stream_tf.training import atomic
    atomic.write_text(os.path.join(output_dir, "flags.cfg"), fv.flags_into_string())
    print(f"{prog}: {result.summary()}")
    if len(index.classes) <= 20:
        for name, accuracy in result.per_class.items():
            shown = "  n/a" if accuracy is None else f"{100 * accuracy:6.2f} %"
            print(f"  {name:<28} {shown}")
    print(f"{prog}: wrote {output_dir}/{report.SCORES_NAME}, {report.METRICS_NAME}, {report.PER_CLASS_NAME}, "
          f"{report.CONFUSION_NAME}")
    return 0
