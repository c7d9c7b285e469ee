"""`run_quickstart`: the stages, each skipped when an earlier run in the same folder finished it."""
import dataclasses
import json
import os
import shutil
import time

from two_stream_tf.errors import UserError
from two_stream_tf.quickstart import report
from two_stream_tf.quickstart.settings import FULL

SETTINGS_NAME = "quickstart.json"
RESULTS_NAME = "results.json"
CONFUSION_NAME = "confusion_matrix.png"
CURVES_NAME = "training_curves.png"
SAMPLE_NAME = "annotated_sample.mp4"
RECALIBRATED_NAME = "recalibrated.keras"
STREAMS = report.STREAMS


@dataclasses.dataclass(frozen=True)
class QuickstartResult:
    """What a quickstart run produced.

    Attributes:
      output_dir: the run's folder.
      metrics: "spatial", "temporal", "fusion" → `two_stream_tf.evaluation.metrics.Metrics`.
      classes: the class names.
      results_path, confusion_path, curves_path, sample_path: the report files.
      sample_video: the test video that was annotated; sample_prediction: its top 3 `[(name, score), …]`.
      seconds: wall time of the call.
    """

    output_dir: str
    metrics: dict
    classes: tuple
    results_path: str
    confusion_path: str
    curves_path: str
    sample_path: str
    sample_video: str
    sample_prediction: list
    seconds: float

    def results(self):
        """What results.json holds: `{"spatial": {"top1", "top5", "mean_class"}, "temporal": …, "fusion": …}`."""
        return report.results_dict(self.metrics)

    def table(self):
        """The `Spatial | Temporal | Fusion` accuracy table (markdown)."""
        return report.format_table(self.metrics, len(self.classes))


class _Stages:
    """Prints a one-line header per stage, notes, and how long the stage took."""

    def __init__(self, total, log):
        self.total, self.log, self.number, self.started = total, log, 0, None

    def begin(self, title):
        self.number += 1
        self.started = time.perf_counter()
        self.log(f"\n== [{self.number}/{self.total}] {title}")

    def note(self, text):
        self.log(f"   {text}")

    def end(self, text="done"):
        self.log(f"   {text} ({time.perf_counter() - self.started:.1f} s)")


def run_quickstart(output_dir="quickstart_output", settings=FULL, *, progress=True, log=None):
    """Runs the whole method on synthetic videos and writes the report (see `two_stream_tf.quickstart`).

    Args:
      output_dir: the folder to work in; a rerun in the same folder resumes where the last run stopped.
      settings: a `QuickstartSettings` (`FULL`, `FAST`, or your own with `dataclasses.replace`).
      progress: progress bars (tqdm, Keras progbar); without them training prints one line per epoch.
      log: called with each line of the narrative (default: print to stdout).

    Returns:
      A `QuickstartResult`.

    Raises:
      UserError: the folder holds a quickstart run with other settings, or a `weights` file that does not
        fit the backbone.
    """
    started = time.perf_counter()
    log = log or _print
    root = os.path.abspath(os.fspath(output_dir))
    _claim_folder(root, settings)
    stages = _Stages(8, log)
    data = _make_data(root, settings, stages, progress)
    frames_root = _extract_frames(data, settings, stages, progress)

    from two_stream_tf.training import fit
    configs = {stream: _train_config(root, frames_root, data["split_dir"], settings, stream, progress)
               for stream in STREAMS}
    # The tour trains without validation and then scores the test list by the protocol (its report's table).
    indices = fit.open_indices(configs["spatial"], subsets=("train", "test"))
    finals = {stream: _train(configs[stream], settings, indices, stages) for stream in STREAMS}
    models = _recalibrate(configs, finals, settings, indices[0], stages)
    scores = _evaluate(root, settings, models, indices[1], stages, progress)
    metrics, fused = _fuse(root, scores, stages)
    paths = _write_report(root, settings, configs, models, metrics, scores, fused, data, stages, progress)
    result = QuickstartResult(output_dir=root, metrics=metrics, classes=tuple(indices[1].classes),
                              seconds=time.perf_counter() - started, **paths)
    log("\n" + result.table())
    log(f"\nIn {root}:")
    log(f"  {RESULTS_NAME}          the table's numbers")
    log(f"  {CONFUSION_NAME}   fusion, rows = true class")
    log(f"  {CURVES_NAME}   loss and accuracy per epoch of both streams")
    log(f"  {SAMPLE_NAME}  a test video with the predicted actions and its flow")
    log("  data/, runs/, evaluation/   videos and frames, trained models and logs, per-video scores")
    log(f"Finished in {result.seconds / 60:.1f} min.")
    return result


def _print(line):
    print(line, flush=True)


def _claim_folder(root, settings):
    """Records the settings in the folder, or checks that an earlier run there used the same ones."""
    from two_stream_tf.training import atomic
    path = os.path.join(root, SETTINGS_NAME)
    wanted = settings.to_json()
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                previous = json.load(handle)
        except (OSError, json.JSONDecodeError):
            previous = {}
        if previous != wanted:
            differ = sorted(key for key in wanted if previous.get(key) != wanted[key])
            raise UserError(f"{root} holds a quickstart run with other settings ({', '.join(differ)}; see {path}): "
                            "give another output folder, or delete this one to start over")
        return
    os.makedirs(root, exist_ok=True)
    atomic.write_text(path, json.dumps(wanted, indent=2) + "\n")


def _make_data(root, settings, stages, progress):
    from two_stream_tf.data.synthetic import write_synthetic_dataset
    from two_stream_tf.training import atomic
    data_dir = os.path.join(root, "data")
    done = os.path.join(data_dir, ".synthetic_done")
    width, height = settings.frame_size
    stages.begin(f"Synthetic action videos: {settings.num_classes} classes x {settings.videos_per_class} clips of "
                 f"{settings.num_frames} frames at {width}x{height} -> {data_dir}")
    if os.path.isfile(done):
        stages.end("already written")
    else:
        written = write_synthetic_dataset(data_dir, num_classes=settings.num_classes,
                                          videos_per_class=settings.videos_per_class, num_frames=settings.num_frames,
                                          frame_size=settings.frame_size, seed=settings.seed, write_frames=False,
                                          progress=progress)
        train = sum(video.subset == "train" for video in written.videos)
        atomic.write_text(done, "")
        stages.note(f"classes: {', '.join(written.classes)}")
        stages.end(f"{len(written.videos)} AVI videos ({train} train / {len(written.videos) - train} test, no group "
                   "in both) and the split files classInd.txt, trainlist01.txt, testlist01.txt")
    return {"root": data_dir, "videos_dir": os.path.join(data_dir, "videos"), "split_dir": data_dir}


def _extract_frames(data, settings, stages, progress):
    from two_stream_tf.preparation import find_videos, prepare_videos
    from two_stream_tf.preparation.runner import available_cpus
    from two_stream_tf.preparation.video import quiet_opencv_warnings
    frames_root = os.path.join(data["root"], "frames")
    stages.begin(f"RGB frames and {settings.flow_method.upper()} optical flow (TSN layout) -> {frames_root}")
    if settings.flow_method == "dis":
        stages.note("DIS flow, not the papers' TV-L1: ~50x faster on a CPU, so the tour takes minutes "
                    "(for real data: two-stream prepare --flow tvl1)")
    quiet_opencv_warnings()
    summary = prepare_videos(find_videos(data["videos_dir"]), frames_root, workers=available_cpus(),
                             progress=progress, size=tuple(settings.frame_size), flow_method=settings.flow_method)
    if summary.failed:
        raise RuntimeError(f"frame extraction failed for synthetic videos:\n{summary.describe()}")
    stages.end(summary.describe())
    return frames_root


def _train_config(root, frames_root, split_dir, settings, stream, progress=True):
    from two_stream_tf.training.fit import TrainConfig
    return TrainConfig(
        stream=stream, frames_root=frames_root, split_dir=split_dir, model_dir=os.path.join(root, "runs", stream),
        backbone=settings.backbone, backbone_kwargs=dict(settings.backbone_kwargs), weights=settings.weights,
        image_size=settings.image_size, num_segments=settings.num_segments, stack_length=settings.stack_length,
        dropout=settings.dropout, batch_size=settings.batch_size, steps_per_epoch=settings.steps_per_epoch,
        epochs=settings.spatial_epochs if stream == "spatial" else settings.temporal_epochs,
        optimizer=settings.optimizer, learning_rate=settings.learning_rate, weight_decay=0.0,
        lr_schedule=settings.lr_schedule, strategy="one_device", seed=settings.seed,
        # The test protocol below measures the streams; validating every epoch would only cost time.
        validation=False, tensorboard_images=False, verbose=1 if progress else 2)


def _finished_run(model_dir):
    """The final model of a finished training run in `model_dir`, or None."""
    from two_stream_tf.training import checkpoints, fit
    final = os.path.join(model_dir, checkpoints.FINAL_NAME)
    if os.path.isfile(final) and not os.path.isdir(os.path.join(model_dir, fit.BACKUP_DIR)):
        return final
    return None


def _train(config, settings, indices, stages):
    from two_stream_tf.training import fit
    stream = config.stream
    what = "RGB frames" if stream == "spatial" else f"stacks of {settings.stack_length} flow pairs"
    start = "random weights" if settings.weights is None else f"the weights in {settings.weights}"
    kwargs = ", ".join(f"{key}={value}" for key, value in sorted(settings.backbone_kwargs.items()))
    stages.begin(f"Training the {stream} stream on {what}: {settings.backbone}({kwargs}) at "
                 f"{settings.image_size}x{settings.image_size} from {start}, "
                 + (f"{settings.num_segments} TSN segments, " if settings.num_segments else "")
                 + f"{config.epochs} epochs x {config.steps_per_epoch} batches of {config.batch_size} -> "
                 f"{config.model_dir}")
    final = _finished_run(config.model_dir)
    if final is not None:
        stages.end(f"already trained: {final}")
        return final
    if os.path.isdir(os.path.join(config.model_dir, fit.BACKUP_DIR)):
        stages.note("resuming the interrupted run from its backup")
    result = fit.train(config, indices=(indices[0], None))  # no validation videos: never the test list
    last = result.history[-1] if result.history else {}
    shown = ", ".join(f"{key} {last[key]:.3f}" for key in ("loss", "top1") if key in last)
    stages.end(f"{result.final_path}" + (f" (last epoch: {shown})" if shown else ""))
    return result.final_path


def _recalibrate(configs, finals, settings, train_index, stages):
    """Recomputes each final model's batch-norm statistics; returns the model files to test."""
    if not settings.recalibration_batches:
        return dict(finals)
    from two_stream_tf.models import get_backbone, load_model, save_model
    from two_stream_tf.quickstart.batch_norm import recalibrate_batch_norm
    from two_stream_tf.training import fit
    stages.begin(f"Batch-norm statistics recomputed on {settings.recalibration_batches} training batches")
    stages.note("after a few hundred steps BN's moving averages (momentum 0.99) still lag far behind the "
                "weights; see two_stream_tf/quickstart/batch_norm.py")
    models = {}
    for stream, config in configs.items():
        path = os.path.join(config.model_dir, RECALIBRATED_NAME)
        models[stream] = path
        if os.path.isfile(path) and os.path.getmtime(path) >= os.path.getmtime(finals[stream]):
            stages.note(f"{stream:<8} already done: {path}")
            continue
        model = load_model(finals[stream], compile=False)
        batches = fit.dataset_fn(config, train_index, training=True, image_size=settings.image_size,
                                 rgb_normalization=get_backbone(settings.backbone).rgb_normalization, repeat=True)
        recalibrate_batch_norm(model, batches(None), settings.recalibration_batches)
        save_model(model, path)
        stages.note(f"{stream:<8} {path}")
    stages.end()
    return models


def _evaluate(root, settings, models, test_index, stages, progress):
    from two_stream_tf.evaluation import protocol
    from two_stream_tf.evaluation import report as evaluation_report
    from two_stream_tf.evaluation.scores import load_scores
    from two_stream_tf.models import get_backbone, load_model
    stages.begin(f"Test protocol: {len(test_index)} test videos x {settings.test_snippets} snippets x "
                 f"{settings.test_crops} crops, softmax averaged per video")
    scores = {}
    for stream in STREAMS:
        folder = os.path.join(root, "evaluation", stream)
        path = os.path.join(folder, evaluation_report.SCORES_NAME)
        if os.path.isfile(path) and os.path.getmtime(path) >= os.path.getmtime(models[stream]):
            scores[stream] = load_scores(path)
            stages.note(f"{stream:<8} already scored: {path}")
            continue
        scores[stream] = protocol.evaluate(
            load_model(models[stream], compile=False), test_index, stream, image_size=settings.image_size,
            num_snippets=settings.test_snippets, crops=settings.test_crops, stack_length=settings.stack_length,
            rgb_normalization=get_backbone(settings.backbone).rgb_normalization,
            # One model call per video: all of its snippets and crops.
            views_per_step=settings.test_snippets * settings.test_crops, progress=progress)
        result = evaluation_report.write_report(folder, scores[stream], title=f"{stream} stream",
                                                protocol={"model": models[stream], "stream": stream,
                                                          "snippets": settings.test_snippets,
                                                          "crops": settings.test_crops})
        stages.note(f"{stream:<8} {result.summary()}")
    stages.end()
    return scores


def _fuse(root, scores, stages):
    from two_stream_tf.evaluation import fusion
    from two_stream_tf.evaluation import report as evaluation_report
    from two_stream_tf.evaluation.metrics import compute_metrics
    stages.begin("Fusion: the average of the two streams' softmax scores, video by video")
    fused = fusion.fuse([scores["spatial"], scores["temporal"]], names=list(STREAMS))
    metrics = {stream: compute_metrics(scores[stream]) for stream in STREAMS}
    metrics["fusion"] = evaluation_report.write_report(
        os.path.join(root, "evaluation", "fusion"), fused, title="fusion (average of softmax)",
        protocol={"fused": list(STREAMS), "weights": [1.0, 1.0]})
    stages.note(f"fusion   {metrics['fusion'].summary()}")
    stages.end()
    return metrics, fused


def _write_report(root, settings, configs, models, metrics, scores, fused, data, stages, progress):
    from two_stream_tf.evaluation import report as evaluation_report
    from two_stream_tf.training import atomic
    stages.begin("Report: results, confusion matrix, training curves, annotated sample video")
    results_path = os.path.join(root, RESULTS_NAME)
    atomic.write_text(results_path, json.dumps(report.results_dict(metrics), indent=2) + "\n")
    confusion_path = os.path.join(root, CONFUSION_NAME)
    with atomic.atomic_output(confusion_path) as temporary:
        shutil.copyfile(os.path.join(root, "evaluation", "fusion", evaluation_report.CONFUSION_NAME), temporary)
    curves_path = report.save_training_curves(os.path.join(root, CURVES_NAME),
                                              {stream: configs[stream].model_dir for stream in STREAMS})
    stages.note(f"{RESULTS_NAME}, {CONFUSION_NAME} (fusion), {CURVES_NAME}")
    video, class_name = report.pick_sample_video(scores["spatial"], fused)
    # The synthetic writer's naming: videos/<Class>/<video>.avi.
    video_path = os.path.join(data["videos_dir"], class_name, video + ".avi")
    sample_path = os.path.join(root, SAMPLE_NAME)
    top_k = report.annotate_sample(sample_path, video_path, [models["spatial"], models["temporal"]],
                                   [str(name) for name in fused.classes], flow_method=settings.flow_method,
                                   frame_size=settings.frame_size, num_snippets=settings.test_snippets,
                                   progress=progress)
    stages.note(f"{SAMPLE_NAME}: {video} (a {class_name} clip) predicted as "
                + ", ".join(f"{name} {score:.2f}" for name, score in top_k))
    stages.end()
    return {"results_path": results_path, "confusion_path": confusion_path, "curves_path": curves_path,
            "sample_path": sample_path, "sample_video": video_path, "sample_prediction": top_k}
