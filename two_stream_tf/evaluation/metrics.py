"""Video-level accuracy: top-k, mean class accuracy (what TSN reports), per-class accuracy, confusion.

All functions take plain NumPy arrays: `scores` `(N, K)` and integer `labels` `(N,)`.
"""
import dataclasses

import numpy as np


def top_k_accuracy(scores, labels, k=1):
    """Fraction of videos whose true label is among the `k` highest scores.

    Ties are broken towards the lower class index (a stable sort), so a row of equal scores counts
    as correct only for labels < k.

    Args:
      scores: `(N, K)` class scores.
      labels: `(N,)` 0-based labels.
      k: how many top classes count; capped at K.

    Returns:
      float in [0, 1]; nan when N == 0.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        return float("nan")
    k = min(int(k), scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels, predictions, num_classes):
    """`(K, K)` int64 counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def per_class_accuracy(scores, labels, num_classes=None):
    """`(K,)` float64 top-1 accuracy of each class; nan for classes without videos."""
    scores = np.asarray(scores)
    num_classes = scores.shape[1] if num_classes is None else num_classes
    matrix = confusion_matrix(labels, np.argmax(scores, axis=1), num_classes)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def mean_class_accuracy(scores, labels, num_classes=None):
    """Mean of the per-class top-1 accuracies over classes that have videos (TSN's headline metric)."""
    accuracies = per_class_accuracy(scores, labels, num_classes)
    present = accuracies[~np.isnan(accuracies)]
    return float(present.mean()) if present.size else float("nan")


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Accuracy of one score file.

    Attributes:
      top1, top5: fraction of videos correct within the top 1 / top 5 classes.
      mean_class_accuracy: mean over classes of per-class top-1 accuracy.
      per_class: class name → top-1 accuracy (None for a class without test videos).
      num_videos: number of videos (scored or not).
      confusion: `(K, K)` confusion matrix (rows true, columns predicted) of the scored videos.
      unscored_videos: videos without a decodable view (`VideoScores.unscored`), counted as wrong.
    """

    top1: float
    top5: float
    mean_class_accuracy: float
    per_class: dict
    num_videos: int
    confusion: np.ndarray
    unscored_videos: int = 0

    def to_json(self):
        """A JSON-ready dict (the confusion matrix as nested lists)."""
        return {"num_videos": self.num_videos, "top1": self.top1, "top5": self.top5,
                "mean_class_accuracy": self.mean_class_accuracy, "per_class_accuracy": self.per_class,
                "confusion_matrix": self.confusion.tolist(), "unscored_videos": self.unscored_videos}

    def summary(self):
        """One line: `top-1 81.23 %  top-5 95.10 %  mean class 80.90 %  (3783 videos)`."""
        unscored = f", {self.unscored_videos} unscored" if self.unscored_videos else ""
        return (f"top-1 {100 * self.top1:.2f} %  top-5 {100 * self.top5:.2f} %  "
                f"mean class {100 * self.mean_class_accuracy:.2f} %  ({self.num_videos} videos{unscored})")


def compute_metrics(video_scores):
    """All metrics of a `VideoScores` (see `Metrics`); unscored videos count as wrong."""
    scores, labels, classes = video_scores.scores, video_scores.labels, video_scores.classes
    unscored = getattr(video_scores, "unscored", None)
    unscored = np.zeros(len(labels), bool) if unscored is None else unscored
    if unscored.any():
        # Their uniform rows would count as right for low labels (ties go to the lower index): rank the
        # true class last instead, so they are wrong at every k < K.
        scores = scores.copy()
        scores[unscored] = 0.0
        scores[unscored, labels[unscored]] = -1.0
    per_class = per_class_accuracy(scores, labels, len(classes))
    return Metrics(
        top1=top_k_accuracy(scores, labels, 1),
        top5=top_k_accuracy(scores, labels, 5),
        mean_class_accuracy=mean_class_accuracy(scores, labels, len(classes)),
        per_class={str(name): (None if np.isnan(acc) else float(acc)) for name, acc in zip(classes, per_class)},
        num_videos=len(labels),
        confusion=confusion_matrix(labels[~unscored], np.argmax(scores[~unscored], axis=1), len(classes)),
        unscored_videos=int(unscored.sum()),
    )
