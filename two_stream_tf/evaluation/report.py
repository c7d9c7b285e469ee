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


def write_report(output_dir, video_scores, protocol=None, title=None):
    """Writes `scores.npz`, `metrics.json`, `per_class_accuracy.json` and `confusion_matrix.png`.

    Args:
      output_dir: the folder (created if needed).
      video_scores: the `VideoScores` of the evaluation.
      protocol: optional dict describing how the scores were made (snippets, crops, model), kept in
        metrics.json.
      title: title of the confusion-matrix figure.

    Returns:
      The `Metrics`.
    """
    storage.makedirs(output_dir)
    result = metrics_lib.compute_metrics(video_scores)
    save_scores(storage.join(output_dir, SCORES_NAME), video_scores)
    summary = {key: value for key, value in result.to_json().items() if key not in ("per_class_accuracy",)}
    if protocol:
        summary["protocol"] = protocol
    atomic.write_text(storage.join(output_dir, METRICS_NAME), json.dumps(summary, indent=2) + "\n")
    atomic.write_text(storage.join(output_dir, PER_CLASS_NAME), json.dumps(result.per_class, indent=2) + "\n")
    plots.save_confusion_png(storage.join(output_dir, CONFUSION_NAME), result.confusion,
                             video_scores.classes, title=title)
    return result
