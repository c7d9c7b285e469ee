"""The quickstart's report: results.json contents, the accuracy table, training curves, the annotated sample."""
import io
import math
import os

STREAMS = ("spatial", "temporal")
COLUMNS = ("spatial", "temporal", "fusion")
# results.json names of the metrics, and the `Metrics` attributes they hold.
METRIC_KEYS = {"top1": "top1", "top5": "top5", "mean_class": "mean_class_accuracy"}
# The annotated sample is this many times the synthetic videos' size, so its text leaves room for the picture.
SAMPLE_SCALE = 3


def results_dict(metrics):
    """`{"spatial": {"top1", "top5", "mean_class"}, "temporal": …, "fusion": …}`, fractions in [0, 1].

    Args:
      metrics: "spatial", "temporal", "fusion" → `two_stream_tf.evaluation.metrics.Metrics`.
    """
    return {column: {key: float(getattr(metrics[column], attribute)) for key, attribute in METRIC_KEYS.items()}
            for column in COLUMNS}


def format_table(metrics, num_classes):
    """The accuracy table of the two streams and their fusion, as markdown.

    Args:
      metrics: "spatial", "temporal", "fusion" → `Metrics`.
      num_classes: K, for the chance level in the caption.

    Returns:
      A caption line, then `| | Spatial | Temporal | Fusion |` with rows top-1, top-5 and mean class accuracy
      in percent.
    """
    videos = metrics["fusion"].num_videos
    header = ["", "Spatial", "Temporal", "Fusion"]
    lines = [f"Video-level accuracy on {videos} test videos of {num_classes} classes (chance "
             f"{100 / num_classes:.1f} %):", "",
             "| " + " | ".join(f"{name:<10}" for name in header) + " |",
             "|" + "|".join("-" * 12 for _ in header) + "|"]
    for label, attribute in (("top-1", "top1"), ("top-5", "top5"), ("mean class", "mean_class_accuracy")):
        cells = [f"{100 * getattr(metrics[column], attribute):6.2f} %" for column in COLUMNS]
        lines.append("| " + " | ".join(f"{cell:<10}" for cell in [label, *cells]) + " |")
    return "\n".join(lines)


def save_training_curves(path, run_dirs):
    """Plots loss and top-1 accuracy per epoch of training runs, from their `log.csv`, as a PNG.

    Args:
      path: the PNG file to write (atomically).
      run_dirs: stream name → training run folder (`log.csv` with columns epoch, loss, top1 and, when the run
        validated, val_loss and val_top1).

    Returns:
      `path`.
    """
    # The object-oriented Figure needs no pyplot backend: it renders on servers without a display.
    from matplotlib.figure import Figure

    from two_stream_tf.training import atomic, fit
    from two_stream_tf.training.callbacks import ResumableCSVLogger
    figure = Figure(figsize=(10, 4), dpi=100)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    colors = {"spatial": "tab:blue", "temporal": "tab:orange"}
    for stream, folder in run_dirs.items():
        rows = ResumableCSVLogger.read_rows(os.path.join(folder, fit.CSV_NAME))
        for axes, key in ((loss_axes, "loss"), (accuracy_axes, "top1")):
            for prefix, style, label in (("", "-", "training"), ("val_", "--", "validation")):
                points = [(row["epoch"] + 1, row[prefix + key]) for row in rows
                          if row.get(prefix + key) is not None and not math.isnan(row[prefix + key])]
                if points:
                    axes.plot(*zip(*points), style, marker="o", markersize=3, color=colors.get(stream),
                              label=f"{stream} {label}")
    loss_axes.set_title("loss")
    accuracy_axes.set_title("top-1 accuracy (training batches)")
    accuracy_axes.set_ylim(0.0, 1.0)
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic.write_bytes(path, buffer.getvalue())
    return path


def pick_sample_video(spatial, fused):
    """A test video worth showing: one the fusion gets right and the spatial stream alone does not, else one
    the fusion gets right, else the first.

    Args:
      spatial, fused: `VideoScores` of the spatial stream and of the fusion.

    Returns:
      `(video id, true class name)`.
    """
    spatial = spatial.reordered(fused.videos)
    right = fused.predictions == fused.labels
    preferred = [i for i in range(len(fused)) if right[i] and spatial.predictions[i] != fused.labels[i]]
    choice = (preferred or [i for i in range(len(fused)) if right[i]] or [0])[0]
    return str(fused.videos[choice]), str(fused.classes[fused.labels[choice]])


def annotate_sample(path, video, model_files, class_names, *, flow_method, frame_size, num_snippets=25,
                    scale=SAMPLE_SCALE, progress=False):
    """Predicts a video with two trained streams (flow computed on the fly) and writes it annotated.

    Small videos are enlarged `scale` times first, so the overlaid text leaves the picture visible; the
    predictor resizes the frames back to `frame_size` for the models, as it does for any input.

    Args:
      path: the MP4 file to write.
      video: the input video file.
      model_files: the spatial and the temporal model files (their run folders hold train_config.json).
      class_names: the K class names.
      flow_method, frame_size: as the training frames were made (`(width, height)`).
      num_snippets: snippets scored.
      scale: enlargement of the annotated copy.
      progress: a progress bar over the frames read.

    Returns:
      The predicted `[(class name, score), …]`, best first (top 3).
    """
    import cv2

    from two_stream_tf.inference import FrameArraySource, Predictor
    from two_stream_tf.preparation import read_frames
    capture = cv2.VideoCapture(os.fspath(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    capture.release()
    frames = [cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
              for frame in read_frames(video)]
    source = FrameArraySource(frames, fps=fps, name=os.path.basename(video))
    with Predictor(list(model_files), list(class_names), flow_method=flow_method, size=tuple(frame_size),
                   num_snippets=num_snippets, top_k=3) as predictor:
        prediction = predictor.predict_video(source, annotate=path, flow_inset=True, progress=progress)
    return prediction.top_k
