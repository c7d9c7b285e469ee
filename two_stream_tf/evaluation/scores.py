"""Per-video score files: what evaluation writes and fusion reads.

A score file is an `.npz` of plain arrays, loadable with `np.load(path, allow_pickle=False)`:

  videos   (N,)   str      video ids, e.g. "v_ApplyEyeMakeup_g01_c01"
  labels   (N,)   int64    0-based true class of each video
  scores   (N, K) float32  softmax averaged over the video's views (rows sum to 1)
  classes  (K,)   str      class names, index = label

and, when the evaluation had the model's logits (every stream model; see `evaluation.protocol`):

  logits   (N, K) float32  the logits (scores before the softmax) averaged over the video's views
  votes    (N, K) int32    how many of the video's views have each class as their top-1

With `--score_aggregation=logit_mean` (TSN's eval_net) `scores` is the softmax of `logits`.

And, from an evaluation that met unreadable frames (older files and fused scores may lack them):

  unreadable_views  (N,)  int32  test views of each video left out of its average (files not decodable)
  unscored          (N,)  bool   videos none of whose views decoded: uniform scores, counted as wrong
"""
import dataclasses
import io
import os

import numpy as np

from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic

_KEYS = ("videos", "labels", "scores", "classes")
_OPTIONAL_KEYS = ("logits", "votes", "unreadable_views", "unscored")


@dataclasses.dataclass(frozen=True, eq=False)
class VideoScores:
    """Class scores of a set of videos, with their true labels and the class names.

    Attributes:
      videos: `(N,)` str array of video ids.
      labels: `(N,)` int64 array of 0-based labels.
      scores: `(N, K)` float32 array of class scores (averaged softmax).
      classes: `(K,)` str array of class names.
      logits: None or `(N, K)` float32, the per-video average of the views' logits.
      votes: None or `(N, K)` int32, per video the number of views whose top-1 class is each class.
      unreadable_views: None, or `(N,)` int32: views of each video whose frames could not be decoded,
        left out of its average.
      unscored: None, or `(N,)` bool: videos with no decodable view, whose scores are uniform; metrics
        count them as wrong.
    """

    videos: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    logits: np.ndarray = None
    votes: np.ndarray = None
    unreadable_views: np.ndarray = None
    unscored: np.ndarray = None

    def __post_init__(self):
        videos = np.asarray(self.videos, dtype=str).reshape(-1)
        labels = np.asarray(self.labels).astype(np.int64).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float32)
        classes = np.asarray(self.classes, dtype=str).reshape(-1)
        if scores.ndim != 2:
            raise ValueError(f"scores must be (videos, classes), got shape {scores.shape}")
        if not len(videos) == len(labels) == scores.shape[0]:
            raise ValueError(f"{len(videos)} videos, {len(labels)} labels and {scores.shape[0]} score rows differ")
        if scores.shape[1] != len(classes):
            raise ValueError(f"{scores.shape[1]} score columns but {len(classes)} class names")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"labels must lie in [0, {len(classes)}), got {labels.min()}..{labels.max()}")
        for name, dtype in (("logits", np.float32), ("votes", np.int32)):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=dtype)
                if value.shape != scores.shape:
                    raise ValueError(f"{name} must have the shape of scores {scores.shape}, got {value.shape}")
                object.__setattr__(self, name, value)
        for name, dtype in (("unreadable_views", np.int32), ("unscored", bool)):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value).astype(dtype).reshape(-1)
                if len(value) != len(videos):
                    raise ValueError(f"{name} has {len(value)} entries for {len(videos)} videos")
                object.__setattr__(self, name, value)
        object.__setattr__(self, "videos", videos)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "classes", classes)

    def __len__(self):
        return len(self.videos)

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def predictions(self):
        """`(N,)` int64: the top-scoring class of each video."""
        return np.argmax(self.scores, axis=1)

    def reordered(self, videos):
        """The same scores in the order of `videos` (every id must be present)."""
        position = {video: i for i, video in enumerate(self.videos)}
        order = np.array([position[video] for video in videos], dtype=np.int64)
        optional = {name: None if getattr(self, name) is None else getattr(self, name)[order]
                    for name in _OPTIONAL_KEYS}
        return VideoScores(self.videos[order], self.labels[order], self.scores[order], self.classes, **optional)

    def non_finite(self):
        """`(array name, count, first video)` of the first of scores / logits with NaN or infinite values,
        or None when all are finite."""
        for name in ("scores", "logits"):
            values = getattr(self, name)
            if values is None:
                continue
            bad = ~np.isfinite(values)
            if bad.any():
                return name, int(bad.any(axis=1).sum()), str(self.videos[np.flatnonzero(bad.any(axis=1))[0]])
        return None


def save_scores(path, video_scores):
    """Writes a score file atomically (see the module docstring for its arrays).

    Args:
      path: destination, conventionally ending in `.npz`; local or any tf.io.gfile path.
      video_scores: a `VideoScores`.
    """
    buffer = io.BytesIO()
    optional = {name: getattr(video_scores, name) for name in _OPTIONAL_KEYS
                if getattr(video_scores, name) is not None}
    np.savez(buffer, videos=video_scores.videos, labels=video_scores.labels,
             scores=video_scores.scores, classes=video_scores.classes, **optional)
    atomic.write_bytes(path, buffer.getvalue())


def load_scores(path):
    """Reads a score file written by `save_scores`.

    Raises:
      UserError: the file is missing, is not an `.npz`, or lacks or mis-shapes one of its arrays.
    """
    from two_stream_tf import storage
    path = storage.check(os.fspath(path), "score file")
    if not storage.isfile(path):
        raise UserError(f"score file not found: {path}")
    try:
        # Any tf.io.gfile path (gs://, ram://): read whole, then parsed from memory.
        with np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False) as data:
            missing = [key for key in _KEYS if key not in data.files]
            if missing:
                raise UserError(f"{path}: not a score file, missing array(s) {', '.join(missing)} "
                                f"(has {', '.join(data.files) or 'none'})")
            arrays = {key: data[key] for key in _KEYS + _OPTIONAL_KEYS if key in data.files}
    except UserError:  # already names the file; a UserError is a ValueError, so let it through first
        raise
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read as a score file (.npz of plain arrays): {error}") from None
    try:
        return VideoScores(**arrays)
    except ValueError as error:
        raise UserError(f"{path}: inconsistent score file: {error}") from None
