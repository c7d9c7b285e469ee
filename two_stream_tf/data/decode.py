"""Reading and decoding the JPEG files a sample needs, and what happens when one is corrupt.

A sample's files are read whole (`tf.io.read_file`, or taken from a packed record), checked, and only
then decoded: only the sampled frames, and in training only the crop window (`tf.io.decode_and_crop_jpeg`
skips the inverse DCT of blocks outside it, a quarter of the decoding time on average for TSN's crops).

Corrupt files are found by a cheap check before decoding: the bytes are non-empty, start with the JPEG
start-of-image marker (FF D8) and hold the end-of-image marker (FF D9) within their last 32 bytes. That
catches what actually happens to frame folders — files truncated by an interrupted extraction or copy,
empty files, other data under a .jpg name. When a file fails:

- by default the sample is skipped (the epoch goes on), counted in a `DecodeStats`, and each bad file
  is named in a warning of the Python logger `two_stream_tf.data.decode`;
- with `strict=True` iterating raises `tf.errors.InvalidArgumentError` whose message names the file.

Beyond that check: damaged compressed data between intact markers still decodes (libjpeg warns and the
picture is damaged), and a damaged header raises the decoder's own error.
"""
import logging
import threading

import tensorflow as tf

logger = logging.getLogger(__name__)

_SOI = b"\xff\xd8"
_EOI_SEARCH_BYTES = 32
CORRUPT_MESSAGE = "corrupt or truncated JPEG (strict=True):"


class DecodeStats:
    """What the pipelines skipped because of corrupt files; shared by all their threads.

    Attributes:
      skipped: number of samples (training elements or test videos) skipped.
      files: the corrupt files, in the order they were met (a file met twice is listed twice).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._skipped = 0
        self._files = []

    @property
    def skipped(self):
        with self._lock:
            return self._skipped

    @property
    def files(self):
        with self._lock:
            return tuple(self._files)

    def record(self, files):
        """Counts one skipped sample whose corrupt files are `files` (strings) and logs them."""
        files = list(files)
        with self._lock:
            self._skipped += 1
            self._files.extend(files)
        for name in files:
            logger.warning("skipping a sample: corrupt or truncated JPEG %s", name)

    def reset(self):
        """Sets the counts back to zero."""
        with self._lock:
            self._skipped = 0
            self._files = []

    def __repr__(self):
        return f"DecodeStats(skipped={self.skipped}, files={len(self.files)})"


def jpeg_looks_complete(data):
    """Whether each string looks like a whole JPEG: SOI marker first, EOI marker in the last 32 bytes.

    Args:
      data: string tensor of any shape (file contents).

    Returns:
      bool tensor of the same shape.
    """
    length = tf.strings.length(data)
    starts = tf.equal(tf.strings.substr(data, tf.zeros_like(length), tf.fill(tf.shape(length), 2)), _SOI)
    tail_start = tf.maximum(length - _EOI_SEARCH_BYTES, 0)
    tail = tf.strings.substr(data, tail_start, tf.fill(tf.shape(length), _EOI_SEARCH_BYTES))
    tail = tf.io.decode_raw(tail, tf.uint8, fixed_length=_EOI_SEARCH_BYTES)  # zero-padded on the right
    # An EOI marker (FF D9) anywhere in the tail; the padding cannot make one.
    has_end = tf.reduce_any(tf.logical_and(tf.equal(tail[..., :-1], 0xFF), tf.equal(tail[..., 1:], 0xD9)), -1)
    return tf.logical_and(starts, has_end)


def read_files(paths):
    """Reads files whose count is static.

    Args:
      paths: string `(k,)` with k known when the graph is built.

    Returns:
      string `(k,)`, the contents.
    """
    count = paths.shape[0]
    return tf.stack([tf.io.read_file(paths[i]) for i in range(count)])


# libjpeg's inverse DCTs, by tf.io.decode_jpeg's names: "INTEGER_ACCURATE" (JDCT_ISLOW, what OpenCV's
# imread and so TSN's tools use: the same pixels as cv2.imread) and "INTEGER_FAST" (JDCT_IFAST,
# TensorFlow's default, up to ~17 levels off on RGB and ~10 on flow planes).
DCT_METHODS = ("INTEGER_ACCURATE", "INTEGER_FAST")
DEFAULT_DCT_METHOD = "INTEGER_ACCURATE"


def check_dct_method(dct_method):
    """Raises ValueError unless `dct_method` is one of `DCT_METHODS`."""
    if dct_method not in DCT_METHODS:
        raise ValueError(f"dct_method must be one of {DCT_METHODS}, got {dct_method!r}")


def decode_frames(data, channels, window=None, dct_method=DEFAULT_DCT_METHOD):
    """Decodes JPEGs of one size (frames of one video), whole or only a window.

    Args:
      data: string `(k,)` with k static.
      channels: 1 (flow planes) or 3 (RGB).
      window: None, or int32 `(4,)` top, left, height, width to decode.
      dct_method: one of `DCT_METHODS`.

    Returns:
      uint8 `(k, h, w)` for channels=1, `(k, h, w, 3)` for channels=3.
    """
    count = data.shape[0]
    if window is None:
        frames = [tf.io.decode_jpeg(data[i], channels=channels, dct_method=dct_method) for i in range(count)]
    else:
        frames = [tf.io.decode_and_crop_jpeg(data[i], window, channels=channels, dct_method=dct_method)
                  for i in range(count)]
    stacked = tf.stack(frames)
    return stacked[..., 0] if channels == 1 else stacked


def frame_shape(data):
    """Height and width, int32 `(2,)`, of a JPEG read from its header."""
    return tf.image.extract_jpeg_shape(data)[:2]


def bad_files(names, complete):
    """The names whose files failed the check: string `(n_bad,)` from same-shaped names and flags."""
    return tf.boolean_mask(tf.reshape(names, [-1]), tf.logical_not(tf.reshape(complete, [-1])))


def guarded(data, names, build, placeholder, strict):
    """Builds a sample from file contents only when every file looks complete.

    Args:
      data: string tensor of file contents (any shape).
      names: string tensor of the files' names (paths), same shape.
      build: `() -> tensors`, the sample (decodes `data`).
      placeholder: `() -> tensors` of the same structure, returned for a corrupt sample (which
        `keep_or_report` then drops).
      strict: raise an error naming the corrupt file instead.

    Returns:
      (sample, complete bool of `data`'s shape).
    """
    complete = jpeg_looks_complete(data)
    ok = tf.reduce_all(complete)

    def fail():
        if strict:
            bad = bad_files(names, complete)
            with tf.control_dependencies([tf.debugging.Assert(ok, [CORRUPT_MESSAGE, bad], summarize=20)]):
                return tf.nest.map_structure(tf.identity, placeholder())
        return placeholder()

    return tf.cond(ok, build, fail), complete


def keep_or_report(names, complete, stats, per_sample=False):
    """Reports samples with files that failed the check to `stats` (count, names, warning).

    Args:
      names: string names of a sample's files `(k,)`, or of a batch's `(B, k)` with `per_sample=True`.
      complete: bool flags of the same shape.
      stats: the `DecodeStats` to record in.
      per_sample: count each row as a sample.

    Returns:
      bool scalar: whether every file was complete (a `Dataset.filter` predicate for one sample).
    """

    def report(bad_names, bad_counts):
        start = 0
        for count in bad_counts.numpy().tolist():
            stats.record(name.decode("utf-8", "replace") for name in bad_names.numpy()[start:start + count])
            start += count
        return False

    complete = complete if per_sample else complete[None]
    bad_counts = tf.reduce_sum(tf.cast(tf.logical_not(complete), tf.int32), axis=1)
    bad_counts = tf.boolean_mask(bad_counts, bad_counts > 0)
    return tf.cond(tf.reduce_all(complete), lambda: tf.constant(True),
                   lambda: tf.reshape(tf.py_function(report, [bad_files(names, complete), bad_counts], tf.bool), []))
