"""`two-stream evaluate`: scores a trained model by the test protocol and writes scores and metrics.

    two-stream evaluate --flagfile=experiments/configs/ucf101_resnet50_spatial_split1.cfg
    two-stream evaluate --checkpoint=runs/spatial --test_snippets=25 --test_crops=10
    two-stream evaluate --checkpoint=runs/spatial --subset=validation      # the run's held-out videos
    two-stream evaluate --checkpoint=https://example.org/ucf101_spatial.keras --stream=spatial \
        --frames_root=data/ucf101/frames --split_dir=data/ucf101/splits --output_dir=eval/spatial

Takes the same flags as `two-stream train` (so one recipe serves both); dataset, model and validation
settings not given on the command line come from the run's `train_config.json`. A run folder means its
`final.keras` (give `--checkpoint=<model_dir>/best.keras` for the best by validation). A `--checkpoint` URL
of a `.keras` file is downloaded once (Keras' cache folder) and needs `--output_dir` and the dataset flags.
`--subset` picks the split's test list, the run's held-out validation videos (for fitting fusion weights),
or its training videos. Writes to `--output_dir` (default `<model_dir>/evaluation_split<N>_<subset>`):
`scores.npz` (per-video softmax averages, plain arrays), `metrics.json` (top-1, top-5, mean class accuracy,
confusion matrix), `per_class_accuracy.json`, `confusion_matrix.png` and `flags.cfg`.

TSN's Caffe test protocol value for value (docs/conventions.md): `--test_sampling=tsn
--score_aggregation=logit_mean --test_frame_size=340x256` (JPEGs are always decoded with the accurate
IDCT, as OpenCV does). The defaults (`centered`, `softmax_mean`, frames as stored) are tsn-pytorch's and
mmaction2's.

A frame that cannot be decoded (empty, truncated, a damaged header, another size than the rest of its
flow stack) does not stop the evaluation: its view is left out of the video's average, and every video
that lost views is listed (in metrics.json and on the console) with how many; a video left with none is
scored uniform and counted as wrong. `--strict` stops at the first such file instead, naming it (exit 2).
"""

from absl import flags

from two_stream_tf.commands import _training_flags as common
from two_stream_tf.errors import UserError

HELP = "score a trained model by the test protocol (25 snippets x 10 crops): scores.npz, metrics, confusion"

# Settings taken from the run's train_config.json unless given as flags.
_FROM_RUN = ("stream", "frames_root", "split_dir", "split", "layout", "dataset", "class_subset",
             "stack_length", "image_size", "backbone", "validation_split", "validation_list", "seed")


def _settings(fv, run):
    values = {}
    for name in _FROM_RUN:
        if fv[name].present or run is None or run.get(name) is None:
            values[name] = fv[name].value
        else:
            values[name] = run[name]
    return values


def _validation_source(fv, values, run_dir):
    """(validation_split, validation_list) of the run: flags given win, then the run's own list of held-out
    videos (`validation_list.txt`, written by training), then its train_config.json."""
    from two_stream_tf.training import fit
    if fv["validation_split"].present or fv["validation_list"].present:
        return common.validation_values(fv)
    from two_stream_tf import storage
    saved = storage.join(run_dir, fit.VALIDATION_LIST_NAME) if run_dir else None
    if saved and storage.isfile(saved):
        return 0.0, saved
    return values["validation_split"] or 0.0, values["validation_list"]


def _check_model_file(model_file, flag):
    import zipfile
    from two_stream_tf import storage
    # A .keras file is a zip archive; Keras reports any other file as "File not found". (Remote files are
    # left to Keras' own loading, which names them.)
    if not storage.is_remote(model_file) and not zipfile.is_zipfile(model_file):
        raise UserError(f"--{flag}: {model_file} is not a .keras model (not a zip archive: damaged, incomplete "
                        "or another kind of file)")


def _load(model_file, flag):
    from two_stream_tf.models import load_model
    try:
        return load_model(model_file, compile=False)
    except UserError as error:
        raise UserError(f"--{flag}: {error}") from None
    except Exception as error:  # Keras raises many kinds (even "File not found") for a file it cannot read
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise UserError(f"--{flag}: {model_file} cannot be loaded as a Keras model ({type(error).__name__}: "
                        f"{lines[0] if lines else 'no details'})") from None


def main(argv, prog="two-stream evaluate"):
    """Parses flags, evaluates, writes the report. Returns 0 (or raises UserError for bad input)."""
    fv = flags.FlagValues()
    common.define_all(fv)
    if common.parse(fv, argv, prog) is None:
        return 0
    from two_stream_tf.training import checkpoints, fit

    test_frame_size = common.frame_size(fv.test_frame_size)
    location = fv.checkpoint or fv.model_dir
    if not location:
        raise UserError("--checkpoint (or --model_dir) is required: the model to evaluate")
    flag = "checkpoint" if fv.checkpoint else "model_dir"
    from two_stream_tf import storage
    from two_stream_tf.models import remote
    if fv.output_dir and storage.exists(fv.output_dir) and not storage.isdir(fv.output_dir):
        raise UserError(f"--output_dir: {fv.output_dir} is a file; give a folder for the scores and metrics")
    downloaded = remote.is_url(location)
    if downloaded:
        if not (fv.output_dir or (fv.checkpoint and fv.model_dir)):
            raise UserError(f"--output_dir is required when --{flag} is a URL (where to write the report)")
        try:
            model_file = remote.fetch_model(location)
        except UserError as error:
            raise UserError(f"--{flag}: {error}") from None
    else:
        model_file = checkpoints.find_model_file(storage.check(location, f"--{flag}"))
    if model_file is None:
        raise UserError(f"--{flag}: no model at {location} (a .keras file, a model_dir with final.keras, "
                        "periodic checkpoints or best.keras, or a URL of a .keras file)")
    _check_model_file(model_file, flag)
    # A downloaded model's folder is the download cache, not a run folder: nothing to read or write there.
    run_dir = fv.model_dir if downloaded else storage.dirname(storage.absolute(model_file))
    try:
        run = fit.load_run_config(run_dir) if run_dir else None
    except ValueError as error:
        raise UserError(f"--{flag}: {storage.join(run_dir, fit.CONFIG_NAME)} is not valid JSON ({error})") from None
    values = _settings(fv, run)
    if not fv["test_frame_size"].present:
        # A model trained on frames resized to a protocol size (--frame_size) is tested on them too.
        if fv["frame_size"].present:
            test_frame_size = common.frame_size(fv.frame_size, "frame_size")
        elif (run or {}).get("frame_size"):
            test_frame_size = tuple(run["frame_size"])
    for name in ("stream", "frames_root", "split_dir"):
        if not values[name]:
            where = f"{run_dir} has no {fit.CONFIG_NAME}" if run_dir else "a downloaded model has no run folder"
            raise UserError(f"--{name} is required ({where} to take it from)")
    for name in ("frames_root", "split_dir"):
        if not storage.isdir(storage.check(values[name], f"--{name}")):
            raise UserError(f"--{name}: folder not found: {values[name]}")
    subset = values["class_subset"]
    # The held-out videos matter to the validation and training subsets; the test list never depends on them.
    validation_split, validation_list = (0.0, None) if fv.subset == "test" else _validation_source(fv, values, run_dir)
    config = fit.TrainConfig(stream=values["stream"], frames_root=values["frames_root"],
                             split_dir=values["split_dir"], model_dir=run_dir or "", split=values["split"],
                             layout=values["layout"], dataset=values["dataset"],
                             class_subset=common.class_subset(subset) if isinstance(subset, str) else subset,
                             index_cache=fv.index_cache, seed=values["seed"], validation_split=validation_split,
                             validation_list=validation_list)
    if fv.subset == "validation" and not (validation_split or validation_list):
        raise UserError(f"--subset=validation: the run in {run_dir} held out no validation videos (it was trained "
                        "without --validation_split or --validation_list); give one of them")
    try:
        (index,) = fit.open_indices(config, subsets=(fv.subset,))
    except UserError as error:
        raise UserError(f"--split_dir/--frames_root (split {config.split}): {error}") from None
    from two_stream_tf.data.holdout import stratified_index
    index = stratified_index(index, fv.max_videos, seed=values["seed"])

    from two_stream_tf.evaluation import protocol, report
    model = _load(model_file, flag)
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
    output_dir = fv.output_dir or fit.evaluation_dir(run_dir, config.split, fv.subset)
    print(f"{prog}: {model_file} on {len(index)} {fv.subset} videos of split {config.split}, "
          f"{fv.test_snippets} snippets x {crops} crops ({fv.test_sampling} sampling, {fv.score_aggregation})",
          flush=True)
    import tensorflow as tf
    try:
        scores = protocol.evaluate(model, index, values["stream"], image_size=image_size,
                                   num_snippets=fv.test_snippets, crops=crops, batch_size=fv.eval_batch_size,
                                   stack_length=values["stack_length"], rgb_normalization=rgb_normalization,
                                   test_sampling=fv.test_sampling, frame_size=test_frame_size,
                                   aggregation=fv.score_aggregation, strict=fv.strict)
    except tf.errors.InvalidArgumentError as error:
        failure = common.strict_failure(error)
        if failure is None:
            raise
        raise failure from None
    except ValueError as error:
        if "does not end in a softmax" not in str(error):
            raise
        raise UserError(f"--score_aggregation=logit_mean: {error}") from None
    result = report.write_report(
        output_dir, scores, title=f"{values['stream']} split {config.split}",
        protocol={"model": model_file, "snippets": fv.test_snippets, "crops": crops, "subset": fv.subset,
                  "split": config.split, "stream": values["stream"], "test_sampling": fv.test_sampling,
                  "score_aggregation": fv.score_aggregation,
                  "frame_size": None if test_frame_size is None else list(test_frame_size)})
    from two_stream_tf.training import atomic
    atomic.write_text(storage.join(output_dir, "flags.cfg"), fv.flags_into_string())
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
