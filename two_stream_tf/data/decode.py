"""Reading and decoding the JPEG files a sample needs, and what happens when one cannot be decoded.

A sample's files are read whole (`tf.io.read_file`, or taken from a packed record), checked, and only
then decoded: only the sampled frames, and in training only the crop window (`tf.io.decode_and_crop_jpeg`
skips the inverse DCT of blocks outside it, a quarter of the decoding time on average for TSN's crops).

A file is *unreadable* when the check before decoding finds that
- it is empty, does not start with the JPEG start-of-image marker (FF D8, then a marker's FF) or has no
  end-of-image marker (FF D9) within its last 32 bytes (a file truncated by an interrupted extraction or
  copy, other data under a .jpg name);
- its header is damaged: `jpeg_headers` walks the marker segments from SOI to the start of scan the way
  a decoder reads them (segment lengths inside the file, quantisation and Huffman table definitions
  well-formed, a baseline/extended/progressive frame header with 8-bit samples and 1 or 3 components, a
  scan header after it) — bytes overwritten after SOI end up here;
- or its size differs from the other frames read with it (the planes of a flow stack, the frames of a
  TSN sample's segments): those are decoded with one crop window, so a frame of another size cannot
  join them. The size shared by most of the sample's readable files is the reference; the others are
  the unreadable ones.

When a file is unreadable:
- by default the sample is skipped (the epoch goes on), counted in a `DecodeStats`, and each bad file
  is named in a warning of the Python logger `two_stream_tf.data.decode`; test views are left out of
  the video's score instead (see `pipelines`);
- with `strict=True` iterating raises `tf.errors.InvalidArgumentError` whose message names the file.

Where the compiled training kernels (`native`) make the views, the header check is libjpeg's own header
parser (one op for a sample's files) and the kernels report every file they then fail to decode, so on
that path nothing the decoder rejects stops training. Damaged compressed data after an intact header
still decodes on both paths (libjpeg warns and the picture is damaged).
"""
import logging
import re
import threading

import tensorflow as tf

logger = logging.getLogger(__name__)

_SOI = b"\xff\xd8"
# TensorFlow's decoders recognise a JPEG by these 3 bytes (SOI and the next marker's FF) before reading it.
_JPEG_MAGIC = b"\xff\xd8\xff"
_EOI_SEARCH_BYTES = 32
CORRUPT_MESSAGE = "corrupt or truncated JPEG, damaged JPEG header or frame of another size (strict=True):"
# Marker segments and table definitions walked at most (APPn, DQT and DHT tables, SOF, ...) before SOS.
_MAX_HEADER_UNITS = 64
_HEADER_READ = 18  # bytes looked at per unit: a DHT table's class byte and 16 counts, or a frame header


class DecodeStats:
    """What the pipelines skipped because of corrupt files; shared by all their threads.

    Attributes:
      skipped: number of samples (training elements or test videos) skipped.
      files: the corrupt files, in the order they were met (a file met twice is listed twice).
      samples: the same files grouped by skipped sample: a tuple of tuples, one per sample.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._skipped = 0
        self._files = []
        self._samples = []

    @property
    def skipped(self):
        with self._lock:
            return self._skipped

    @property
    def files(self):
        with self._lock:
            return tuple(self._files)

    @property
    def samples(self):
        with self._lock:
            return tuple(self._samples)

    def record(self, files):
        """Counts one skipped sample whose corrupt files are `files` (strings) and logs them."""
        files = list(files)
        with self._lock:
            self._skipped += 1
            self._files.extend(files)
            self._samples.append(tuple(files))
        for name in files:
            logger.warning("unreadable JPEG (corrupt, truncated, damaged header or another size), its training "
                           "sample skipped or its test view left out: %s", name)

    def reset(self):
        """Sets the counts back to zero."""
        with self._lock:
            self._skipped = 0
            self._files = []
            self._samples = []

    def __repr__(self):
        return f"DecodeStats(skipped={self.skipped}, files={len(self.files)})"


def jpeg_looks_complete(data):
    """Whether each string looks like a whole JPEG: SOI marker and a marker's FF first (what TensorFlow's
    decoders look for), EOI marker in the last 32 bytes.

    Args:
      data: string tensor of any shape (file contents).

    Returns:
      bool tensor of the same shape.
    """
    length = tf.strings.length(data)
    starts = tf.equal(tf.strings.substr(data, tf.zeros_like(length), tf.fill(tf.shape(length), 3)), _JPEG_MAGIC)
    tail_start = tf.maximum(length - _EOI_SEARCH_BYTES, 0)
    tail = tf.strings.substr(data, tail_start, tf.fill(tf.shape(length), _EOI_SEARCH_BYTES))
    tail = tf.io.decode_raw(tail, tf.uint8, fixed_length=_EOI_SEARCH_BYTES)  # zero-padded on the right
    # An EOI marker (FF D9) anywhere in the tail; the padding cannot make one.
    has_end = tf.reduce_any(tf.logical_and(tf.equal(tail[..., :-1], 0xFF), tf.equal(tail[..., 1:], 0xD9)), -1)
    return tf.logical_and(starts, has_end)


def _dqt_lengths():
    # A DQT segment holds 1 to 4 tables of 65 (8-bit) or 129 (16-bit) bytes.
    return sorted({65 * a + 129 * b for a in range(5) for b in range(5) if 1 <= a + b <= 4})


def jpeg_headers(data):
    """Walks each JPEG's header from SOI to the start of scan without decoding: whether it is well-formed
    and the frame's size.

    Checks what makes a decoder give up before the compressed data: a marker where one is due (fill bytes
    allowed), only header markers (APPn, COM, DRI, DQT, DHT, SOF0-2), every segment inside the file,
    quantisation tables of 8 or 16 bits with ids 0-3, Huffman tables of class 0/1 and id 0-3 holding at
    most 256 codes and ending at their segment's end, a frame header with 8-bit samples, a non-zero size
    and 1 or 3 components, and a scan header after it. Never raises (unlike `tf.image.extract_jpeg_shape`).

    Args:
      data: string tensor of any shape (file contents).

    Returns:
      (ok bool, height int32, width int32), each of `data`'s shape; height and width are 0 where not ok.
    """
    shape = tf.shape(data)
    data = tf.reshape(data, [-1])
    length = tf.strings.length(data)
    zeros = tf.zeros_like(length)
    starts = tf.equal(tf.strings.substr(data, zeros, tf.fill(tf.shape(length), 2)), _SOI)
    dqt_lengths = tf.constant(_dqt_lengths(), tf.int32)

    def step(count, pos, segment_end, table, done, ok, height, width):
        raw = tf.strings.substr(data, tf.minimum(pos, length), tf.fill(tf.shape(length), _HEADER_READ))
        b = tf.cast(tf.io.decode_raw(raw, tf.uint8, fixed_length=_HEADER_READ), tf.int32)  # zero-padded
        # Inside a DQT (table 1) or DHT (table 2) segment: one table per step.
        in_table = pos < segment_end
        ids_ok = tf.logical_and(b[:, 0] // 16 <= 1, b[:, 0] % 16 <= 3)
        codes = tf.reduce_sum(b[:, 1:17], 1)
        table_size = tf.where(table == 1, tf.where(b[:, 0] // 16 == 0, 65, 129), 17 + codes)
        table_ok = ids_ok & (pos + table_size <= segment_end) & tf.where(table == 1, True, codes <= 256)
        # At a marker: FF, the marker byte, the segment's 16-bit length.
        marker = b[:, 1]
        fill = (b[:, 0] == 0xFF) & (marker == 0xFF)
        segment = b[:, 2] * 256 + b[:, 3]
        is_sof = (marker >= 0xC0) & (marker <= 0xC2)
        is_sos, is_dqt, is_dht = marker == 0xDA, marker == 0xDB, marker == 0xC4
        known = (is_sof | is_sos | is_dqt | is_dht | ((marker >= 0xE0) & (marker <= 0xEF)) | (marker == 0xFE)
                 | (marker == 0xDD))
        components = b[:, 9]
        sof_ok = ((b[:, 4] == 8) & (b[:, 5] * 256 + b[:, 6] > 0) & (b[:, 7] * 256 + b[:, 8] > 0)
                  & ((components == 1) | (components == 3)) & (segment == 8 + 3 * components))
        dqt_ok = tf.reduce_any(tf.equal((segment - 2)[:, None], dqt_lengths[None]), 1)
        sos_ok = (b[:, 4] >= 1) & (b[:, 4] <= 4) & (segment == 6 + 2 * b[:, 4]) & (height > 0)
        marker_ok = fill | ((b[:, 0] == 0xFF) & known & (segment >= 2) & (pos + 2 + segment <= length)
                            & tf.where(is_sof, sof_ok, True) & tf.where(is_dqt, dqt_ok, True)
                            & tf.where(is_sos, sos_ok, True) & tf.where(is_dht, segment >= 19, True))
        tables = (is_dqt | is_dht) & ~fill
        new_pos = tf.where(in_table, pos + table_size,
                           tf.where(fill, pos + 1, pos + 2 + tf.where(tables, 2, segment)))
        new_end = tf.where(in_table | ~tables, segment_end, pos + 2 + segment)
        new_table = tf.where(in_table, table, tf.where(is_dqt, 1, tf.where(is_dht, 2, table)))
        frame = ~in_table & is_sof & ~fill & (height == 0)
        new_height = tf.where(frame, b[:, 5] * 256 + b[:, 6], height)
        new_width = tf.where(frame, b[:, 7] * 256 + b[:, 8], width)
        active = ~done
        new_ok = tf.where(active, ok & tf.where(in_table, table_ok, marker_ok), ok)
        new_done = done | ~new_ok | (active & ~in_table & is_sos & ~fill)

        def update(new, old):
            return tf.where(active, new, old)

        return (count + 1, update(new_pos, pos), update(new_end, segment_end), update(new_table, table), new_done,
                new_ok, update(new_height, height), update(new_width, width))

    def more(count, pos, segment_end, table, done, *rest):
        return tf.logical_and(count < _MAX_HEADER_UNITS, tf.logical_not(tf.reduce_all(done)))

    state = (tf.constant(0), tf.fill(tf.shape(length), 2), zeros, zeros, ~starts, starts, zeros, zeros)
    _, _, _, _, done, ok, height, width = tf.while_loop(more, step, state)
    ok = ok & done  # still walking after _MAX_HEADER_UNITS units: no scan header found
    height, width = tf.where(ok, height, 0), tf.where(ok, width, 0)
    return tuple(tf.reshape(t, shape) for t in (ok, height, width))


def common_size(sizes, readable):
    """The size shared by most readable files (the first such file's on a tie), int32 `(2,)`.

    Args:
      sizes: int32 `(k, 2)` heights and widths.
      readable: bool `(k,)`: files to count.
    """
    same = tf.reduce_all(tf.equal(sizes[:, None], sizes[None]), -1) & readable[None] & readable[:, None]
    votes = tf.where(readable, tf.reduce_sum(tf.cast(same, tf.int32), 1), -1)
    return tf.gather(sizes, tf.argmax(votes, output_type=tf.int32))


def check_frames(data):
    """The check before decoding, for files decoded together (one crop window for all).

    Args:
      data: string `(k,)`, the contents of one stream's files of a sample.

    Returns:
      (readable bool `(k,)`: complete, well-formed header and the common size; size int32 `(2,)`: height
      and width of the readable files, 0 when none is).
    """
    ok, height, width = jpeg_headers(data)
    ok = ok & jpeg_looks_complete(data)
    sizes = tf.stack([height, width], 1)
    size = common_size(sizes, ok)
    return ok & tf.reduce_all(tf.equal(sizes, size[None]), 1), size


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


def guarded(complete, names, build, placeholder, strict):
    """Builds a sample only when every file passed the check before decoding.

    Args:
      complete: bool tensor, one flag per file (`check_frames`).
      names: string tensor of the files' names (paths), same shape.
      build: `() -> tensors`, the sample (decodes the files).
      placeholder: `() -> tensors` of the same structure, returned for a sample with an unreadable file
        (which `keep_or_report` then drops, or the test pipeline leaves out of the video's score).
      strict: raise an error naming the unreadable files instead.

    Returns:
      (sample, complete).
    """
    ok = tf.reduce_all(complete)

    def fail():
        return _strict_placeholder(names, complete, placeholder) if strict else placeholder()

    return tf.cond(ok, build, fail), complete


def assert_readable(names, complete):
    """An op that raises `InvalidArgumentError` naming the files whose flag in `complete` is false."""
    return tf.debugging.Assert(tf.reduce_all(complete), [CORRUPT_MESSAGE, bad_files(names, complete)],
                               summarize=20)


def unreadable_files(error):
    """The files named by a strict pipeline's error about unreadable files, or None for other errors.

    Args:
      error: an exception, usually the `tf.errors.InvalidArgumentError` iterating a `strict=True`
        dataset raised.

    Returns:
      The file names (a list of str, in the order the error gives them), or None.
    """
    message = str(getattr(error, "message", None) or error)
    found = re.search(re.escape(CORRUPT_MESSAGE) + r"\] \[(.*?)\]", message, re.DOTALL)
    if found is None:
        return None
    # Assert prints a string tensor's elements separated by spaces, each quoted when it holds one.
    return [name.strip('"') for name in found.group(1).split()] or None


def _strict_placeholder(names, complete, placeholder):
    with tf.control_dependencies([assert_readable(names, complete)]):
        return tf.nest.map_structure(tf.identity, placeholder())


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
