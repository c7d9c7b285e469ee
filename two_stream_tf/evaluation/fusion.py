"""Late fusion of score files (average, weighted, logit sum, majority vote), weight fitting, results table.

Methods (`fuse(..., method=)`):
  "average"    the mean of the streams' softmax scores (the two-stream paper, 1:1).
  "weighted"   their weighted mean; TSN (tools/eval_scores.py) weighs RGB:flow = 1:1.5. Weights are
               relative: the fused score is `sum_i w_i * scores_i / sum_i w_i`, still a probability
               distribution, ranked as the weighted sum.
  "logit_sum"  softmax of the (weighted) sum of the streams' per-video logits, as the two-stream TF-slim
               project fused; needs score files with `logits`.
  "vote"       majority vote of the snippet predictions: each view of each stream votes for its top-1 class
               (weighted per stream), as the Keras and pose-flow two-stream projects did; needs `votes`.
               The fused score is each class's share of the votes; classes with equal votes are ranked
               by the weighted mean softmax.

Weights are fitted on validation scores (`fit_weights`) and then applied to test scores: choosing them on
the test scores would make the fused number optimistic. Score files with NaN or infinite values are refused.
"""
import itertools
import json
import os

import numpy as np

from two_stream_tf.errors import UserError
from two_stream_tf.evaluation import metrics as metrics_lib
from two_stream_tf.evaluation.scores import VideoScores
from two_stream_tf.training import atomic

TSN_WEIGHTS = (1.0, 1.5)  # RGB : flow, yjxiong/temporal-segment-networks tools/eval_scores.py
METHODS = ("average", "weighted", "logit_sum", "vote")
# Which optional array of a score file a method needs.
_NEEDS = {"logit_sum": "logits", "vote": "votes"}
# Ties in a vote are broken by the mean softmax scaled by this: small enough never to outweigh one vote
# (a vote share step is at least min weight / (sum of weights x views), far above 1e-7 for real runs).
_TIE_BREAK = 1e-7
# Relative weights tried for each stream after the first when fitting on a validation split.
DEFAULT_WEIGHT_GRID = tuple(np.round(np.arange(0.0, 3.01, 0.1), 2))
METRICS = ("top1", "mean_class_accuracy", "top5")


def align(score_sets, names=None):
    """Checks that score sets cover the same videos in the same label space; returns them aligned.

    The videos may come in different orders: every set is reordered to the first set's order.

    Args:
      score_sets: sequence of `VideoScores`.
      names: how to call each set in error messages (e.g. their file names).

    Returns:
      list of `VideoScores` in the same video order.

    Raises:
      UserError: different class lists, different video sets, duplicated videos, a video with different
        labels in two sets, or scores that are not finite (NaN or infinite).
    """
    names = list(names) if names is not None else [f"scores #{i + 1}" for i in range(len(score_sets))]
    if len(score_sets) < 2:
        raise UserError(f"fusion needs at least two score files, got {len(score_sets)}")
    first, first_name = score_sets[0], names[0]
    for scores, name in zip(score_sets, names):
        if len(scores) == 0:
            raise UserError(f"{name}: scores no videos")
        bad = scores.non_finite()
        if bad is not None:
            array, count, video = bad
            raise UserError(f"{name}: {array} of {count} of {len(scores)} video(s) are not finite (NaN or infinite), "
                            f"e.g. {video}: the model diverged or the file is damaged")
        counts = {}
        for video in scores.videos:
            counts[video] = counts.get(video, 0) + 1
        duplicated = sorted(video for video, count in counts.items() if count > 1)
        if duplicated:
            raise UserError(f"{name}: video(s) scored more than once: {', '.join(duplicated[:5])}")
    aligned = [first]
    for scores, name in zip(score_sets[1:], names[1:]):
        if list(scores.classes) != list(first.classes):
            differ = [i for i, (a, b) in enumerate(zip(first.classes, scores.classes)) if a != b]
            detail = (f"first difference at label {differ[0]}: {str(first.classes[differ[0]])!r} vs "
                      f"{str(scores.classes[differ[0]])!r}" if differ else
                      f"{len(first.classes)} vs {len(scores.classes)} classes")
            raise UserError(f"{name} and {first_name} use different label spaces ({detail})")
        only_first = sorted(set(first.videos) - set(scores.videos))
        only_this = sorted(set(scores.videos) - set(first.videos))
        if only_first or only_this:
            parts = []
            if only_first:
                parts.append(f"{len(only_first)} video(s) only in {first_name} (e.g. {', '.join(only_first[:3])})")
            if only_this:
                parts.append(f"{len(only_this)} video(s) only in {name} (e.g. {', '.join(only_this[:3])})")
            raise UserError(f"{name} and {first_name} cover different videos: {'; '.join(parts)}")
        scores = scores.reordered(first.videos)
        mismatch = np.flatnonzero(scores.labels != first.labels)
        if mismatch.size:
            i = mismatch[0]
            raise UserError(f"{name} and {first_name} disagree on the label of {mismatch.size} video(s), "
                            f"e.g. {first.videos[i]}: {scores.labels[i]} vs {first.labels[i]}")
        aligned.append(scores)
    return aligned


def check_method(method, score_sets, names=None):
    """Raises UserError unless `method` is known and every score set has the array it needs."""
    if method not in METHODS:
        raise UserError(f"unknown fusion method {method!r}; one of {', '.join(METHODS)}")
    needed = _NEEDS.get(method)
    if needed is None:
        return
    names = list(names) if names is not None else [f"scores #{i + 1}" for i in range(len(score_sets))]
    for scores, name in zip(score_sets, names):
        if getattr(scores, needed) is None:
            raise UserError(f"{name}: has no per-video {needed}, which fusion by {method} needs (score it again "
                            f"with an evaluation that keeps {needed})")


def fuse(score_sets, weights=None, names=None, method="weighted"):
    """Fuses aligned score sets by `method` (see the module docstring).

    Args:
      score_sets: two or more `VideoScores` (checked and aligned with `align`).
      weights: one non-negative weight per set (default: equal); they need not sum to 1. "average" takes none.
      names: names for error messages.
      method: "average", "weighted", "logit_sum" or "vote".

    Returns:
      `VideoScores` with the fused scores (rows sum to 1), in the first set's video order; "logit_sum" also
      gives the summed logits, "vote" the summed votes when the weights are equal.

    Raises:
      UserError: see `align`; an unknown method, a set without the logits or votes the method needs, bad
        weights.
    """
    check_method(method, score_sets, names)
    if method == "average" and weights is not None and len(set(float(w) for w in weights)) > 1:
        raise UserError(f"fusion by average takes equal weights, got {format_weights(weights)}: use weighted")
    aligned = align(score_sets, names)
    weights = np.ones(len(aligned)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(aligned),):
        raise UserError(f"got {weights.size} fusion weight(s) for {len(aligned)} score files")
    if np.any(weights < 0) or not np.any(weights > 0):
        raise UserError(f"fusion weights must be non-negative and not all zero, got {weights.tolist()}")
    first = aligned[0]
    # A video no stream could score (unreadable frames everywhere) has a uniform fused row: keep it
    # marked so that the metrics count it as wrong. One scored stream is enough to score it.
    unscored = [s.unscored for s in aligned if s.unscored is not None]
    unscored = np.logical_and.reduce(unscored) if len(unscored) == len(aligned) else None

    def combined(name):
        return np.tensordot(weights, np.stack([getattr(s, name).astype(np.float64) for s in aligned]), axes=1)

    mean_softmax = combined("scores") / weights.sum()
    if method in ("average", "weighted"):
        return VideoScores(first.videos, first.labels, mean_softmax.astype(np.float32), first.classes,
                           unscored=unscored)
    if method == "logit_sum":
        logits = combined("logits")
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return VideoScores(first.videos, first.labels, probabilities.astype(np.float32), first.classes,
                           logits=logits.astype(np.float32), unscored=unscored)
    votes = combined("votes")
    total = votes.sum(axis=1, keepdims=True)
    share = np.divide(votes, total, out=np.zeros_like(votes), where=total > 0) + _TIE_BREAK * mean_softmax
    equal = np.all(weights == weights[0])
    summed = sum(s.votes.astype(np.int64) for s in aligned).astype(np.int32) if equal else None
    return VideoScores(first.videos, first.labels, (share / share.sum(axis=1, keepdims=True)).astype(np.float32),
                       first.classes, votes=summed, unscored=unscored)


def _metric(video_scores, metric):
    if metric == "top1":
        return metrics_lib.top_k_accuracy(video_scores.scores, video_scores.labels, 1)
    if metric == "top5":
        return metrics_lib.top_k_accuracy(video_scores.scores, video_scores.labels, 5)
    if metric == "mean_class_accuracy":
        return metrics_lib.mean_class_accuracy(video_scores.scores, video_scores.labels, video_scores.num_classes)
    raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")


def fit_weights(score_sets, grid=DEFAULT_WEIGHT_GRID, metric="top1", names=None, method="weighted"):
    """Grid search of fusion weights on validation scores (then apply them to test scores with `fuse`).

    The first set's weight is fixed at 1; every other set's weight runs over `grid`. Ties go to the
    weights closest to equal weighting, so a flat optimum gives the plain average.

    Args:
      score_sets: validation `VideoScores`, one per stream.
      grid: candidate relative weights for streams 2..n.
      metric: "top1", "mean_class_accuracy" or "top5".
      names: names for error messages.
      method: the fusion the weights are for: "weighted", "logit_sum" or "vote".

    Returns:
      (weights tuple, best metric value).
    """
    if method == "average":
        raise UserError("fusion by average has no weights to fit: use weighted")
    check_method(method, score_sets, names)
    aligned = align(score_sets, names)
    best_key, best = None, None
    for rest in itertools.product(grid, repeat=len(aligned) - 1):
        weights = (1.0,) + tuple(float(w) for w in rest)
        if not any(w > 0 for w in weights):
            continue
        value = _metric(fuse(aligned, weights, method=method), metric)
        # Higher metric first, then the smallest distance from equal weights.
        key = (value, -sum(abs(w - 1.0) for w in weights))
        if best_key is None or key > best_key:
            best_key, best = key, weights
    return best, best_key[0]


def format_weights(weights):
    """`1:1.5` style."""
    return ":".join(f"{w:g}" for w in weights)


def append_results_row(markdown_path, json_path, run, stream_names, stream_metrics, fused_metrics, weights,
                       method=None):
    """Appends one row to a results table kept as markdown and JSON (both written atomically).

    Markdown columns: `Run | <stream 1> | <stream 2> | … | Fusion | Weights`, values = top-1 %
    (mean class accuracy in brackets). The JSON file is a list of rows with all metrics.

    Args:
      markdown_path, json_path: the table files (created with a header when absent).
      run: the row's name.
      stream_names: e.g. ("Spatial", "Temporal").
      stream_metrics: one `Metrics` per stream.
      fused_metrics: `Metrics` of the fusion.
      weights: the fusion weights used.
      method: the fusion method, kept in the JSON row when given.

    Raises:
      UserError: the markdown table exists with different stream columns.
    """
    header = ["Run", *stream_names, "Fusion", "Weights"]
    header_line = "| " + " | ".join(header) + " |"

    def cell(m):
        return f"{100 * m.top1:.2f} ({100 * m.mean_class_accuracy:.2f})"

    row_line = "| " + " | ".join([run, *(cell(m) for m in stream_metrics), cell(fused_metrics),
                                  format_weights(weights)]) + " |"
    if os.path.exists(markdown_path):
        with open(markdown_path, encoding="utf-8") as handle:
            existing = handle.read()
        table_header = next((line for line in existing.splitlines() if line.startswith("| ")), None)
        if table_header is not None and table_header.strip() != header_line:
            raise UserError(f"{markdown_path}: table columns are {table_header.strip()!r}, this row needs "
                            f"{header_line!r} (use another --results_table or matching --names)")
        text = existing.rstrip("\n") + "\n" + row_line + "\n"
    else:
        text = ("Video-level accuracy, top-1 % (mean class accuracy %).\n\n" + header_line + "\n|"
                + "|".join(" --- " for _ in header) + "|\n" + row_line + "\n")
    rows = []
    if os.path.exists(json_path):
        try:
            with open(json_path, encoding="utf-8") as handle:
                rows = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"{json_path}: not a results table written by fuse: {error}") from None
        if not isinstance(rows, list):
            raise UserError(f"{json_path}: not a results table written by fuse (expected a JSON list)")

    def summary(m):
        return {"top1": m.top1, "top5": m.top5, "mean_class_accuracy": m.mean_class_accuracy,
                "num_videos": m.num_videos}

    rows.append({"run": run, "streams": {name: summary(m) for name, m in zip(stream_names, stream_metrics)},
                 "fusion": summary(fused_metrics), "weights": [float(w) for w in weights],
                 **({"method": method} if method else {})})
    atomic.write_text(json_path, json.dumps(rows, indent=2) + "\n")
    atomic.write_text(markdown_path, text)
