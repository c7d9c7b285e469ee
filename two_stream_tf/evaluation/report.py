"""The files an evaluation leaves: scores, metrics, per-class accuracy and the confusion matrix."""
import json

from two_stream_tf import storage
from two_stream_tf.evaluation import metrics as metrics_lib
from two_stream_tf.evaluation import plots
from two_stream_tf.evaluation.scores import save_scores
from two_stream_tf.training import atomic

SCORES_NAME = "scores.npz"
METRICS_NAME = "metrics.json"
PER_CLASS_NAME = "per_class_accuracy.json"
CONFUSION_NAME = "confusion_matrix.png"


def unreadable_videos(video_scores):
    """The videos that lost views to unreadable frames, in score-file order.

    Returns:
      A list of `(video id, unreadable views, unscored)`; empty when the scores have no counts.
    """
    counts = video_scores.unreadable_views
    if counts is None:
        return []
    unscored = video_scores.unscored if video_scores.unscored is not None else counts < 0
    return [(str(video_scores.videos[i]), int(counts[i]), bool(unscored[i]))
            for i in range(len(counts)) if counts[i] > 0 or unscored[i]]


def write_report(output_dir, video_scores, protocol=None, title=None):
    """Writes `scores.npz`, `metrics.json`, `per_class_accuracy.json` and `confusion_matrix.png`.

    Args:
      output_dir: the folder (created if needed).
      video_scores: the `VideoScores` of the evaluation.
      protocol: optional dict describing how the scores were made (snippets, crops, model), kept in
        metrics.json.
      title: title of the confusion-matrix figure.

    metrics.json also lists, under `unreadable_views`, every video that lost views to unreadable frames
    (video id -> views left out) and, under `unscored`, those with none left (counted as wrong).

    Returns:
      The `Metrics`.
    """
    storage.makedirs(output_dir)
    result = metrics_lib.compute_metrics(video_scores)
    save_scores(storage.join(output_dir, SCORES_NAME), video_scores)
    summary = {key: value for key, value in result.to_json().items() if key not in ("per_class_accuracy",)}
    lost = unreadable_videos(video_scores)
    if video_scores.unreadable_views is not None:
        summary["unreadable_views"] = {video: count for video, count, _ in lost}
        summary["unscored"] = [video for video, _, unscored in lost if unscored]
    if protocol:
        summary["protocol"] = protocol
    atomic.write_text(storage.join(output_dir, METRICS_NAME), json.dumps(summary, indent=2) + "\n")
    atomic.write_text(storage.join(output_dir, PER_CLASS_NAME), json.dumps(result.per_class, indent=2) + "\n")
    plots.save_confusion_png(storage.join(output_dir, CONFUSION_NAME), result.confusion,
                             video_scores.classes, title=title)
    return result
