"""Where prediction frames come from: a video file, a stream URL or a camera, read frame by frame.

    with open_source("v_Archery_g02_c02.avi") as source:     # or "rtsp://host/stream", or "0" (camera 0)
        for frame in source.frames():                         # uint8 BGR (H, W, 3), as OpenCV decodes
            ...

Files are opened with `two_stream_tf.preparation.video.open_video` (the decoder the training frames were
extracted with); their frame counts come from decoding, never from the container header. Every failure to
read the input — a missing file, a file that is not a video, a camera that does not open, a video that
decodes to no frames — raises `UserError` naming the input.

Decoding can run ahead in a background thread (`prefetch`): OpenCV releases the GIL while it decodes, so
the next frames decode while the caller computes optical flow or runs a model.
"""
import dataclasses
import functools
import os
import queue
import re
import threading
import time

import cv2
import numpy as np

from two_stream_tf.errors import UserError
from two_stream_tf.preparation.video import VideoReadError, open_video, quiet_opencv_warnings

FILE, STREAM, CAMERA = "file", "stream", "camera"

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What the user asked to read.

    Attributes:
      kind: "file", "stream" (a URL FFmpeg understands: rtsp://, http://, udp://, …) or "camera".
      target: the file path or URL (str), or the camera index (int).
    """

    kind: str
    target: object

    @property
    def name(self):
        """How messages name the input: the path, the URL, or "camera N"."""
        return f"camera {self.target}" if self.kind == CAMERA else str(self.target)

    @property
    def is_live(self):
        """True for cameras and streams: they may never end and cannot be read twice."""
        return self.kind != FILE


def parse_source(source):
    """Tells a camera index, a stream URL and a file path apart.

    Args:
      source: an int or a string of digits (camera index), a URL with a scheme (`rtsp://…`), or a path.

    Returns:
      A `SourceSpec`.
    """
    if isinstance(source, SourceSpec):
        return source
    if isinstance(source, int) and not isinstance(source, bool):
        return SourceSpec(CAMERA, source)
    text = os.fspath(source)
    if text.strip().isdigit() and not os.path.exists(text):
        return SourceSpec(CAMERA, int(text))
    if _URL.match(text) and not text.startswith("file://"):
        return SourceSpec(STREAM, text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return SourceSpec(FILE, text)


class VideoSource:
    """An opened video file, stream or camera.

    Use `open_source` to create one. Attributes: `spec` (`SourceSpec`), `name`, `fps` (frames per second
    the source reports, or None when it reports none), `width`, `height` (of the decoded frames).
    """

    def __init__(self, spec, capture):
        self.spec = spec
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        # Cameras and some streams report 0 or nonsense; 1000 fps is beyond any real video here.
        self.fps = float(fps) if 0 < fps < 1000 else None
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or None
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None

    @property
    def name(self):
        return self.spec.name

    @property
    def is_live(self):
        return self.spec.is_live

    def frames(self, prefetch=0, timings=None):
        """Yields the decoded frames in order.

        Args:
          prefetch: frames to decode ahead in a background thread (0: decode on demand in the caller's
            thread).
          timings: a `two_stream_tf.inference.frames.Timings` to add the decoding time to ("decode").

        Yields:
          uint8 BGR frames `(H, W, 3)`.

        Raises:
          UserError: the source yields no frame at all (an empty or undecodable video).
        """
        read = functools.partial(self._read, timings)
        frames = read() if prefetch <= 0 else _prefetched(read, prefetch)
        count = 0
        try:
            for frame in frames:
                count += 1
                yield frame
        finally:
            frames.close()
        if count == 0:
            what = "video" if self.spec.kind == FILE else "source"
            raise UserError(f"{self.name}: empty {what}: no frames could be decoded")

    def _read(self, timings=None):
        while True:
            started = time.perf_counter()
            ok, frame = self._capture.read()
            if timings is not None:
                timings.add("decode", time.perf_counter() - started)
            if not ok or frame is None:
                return
            yield frame

    def close(self):
        """Releases the decoder (also done when leaving a `with` block)."""
        self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_source(source, decoder_threads=None):
    """Opens a video file, a stream URL or a camera for reading.

    Args:
      source: a path, a URL (`rtsp://…`, `http://…`), a camera index (int, or a string of digits), or a
        `SourceSpec`.
      decoder_threads: FFmpeg decoding threads for files and streams; None lets OpenCV choose.

    Returns:
      A `VideoSource`.

    Raises:
      UserError: the input cannot be opened; the message names it and says why.
    """
    spec = parse_source(source)
    quiet_opencv_warnings()
    if spec.kind == FILE:
        try:
            capture = open_video(spec.target, decoder_threads)
        except VideoReadError as error:
            raise UserError(f"{spec.name}: {_describe_file_error(spec.target, error)}") from None
    elif spec.kind == STREAM:
        params = [] if decoder_threads is None else [cv2.CAP_PROP_N_THREADS, int(decoder_threads)]
        capture = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            raise UserError(f"{spec.name}: the stream could not be opened (unreachable, or not a video stream)")
    else:
        capture = cv2.VideoCapture(spec.target)
        if not capture.isOpened():
            raise UserError(f"{spec.name} could not be opened (no such camera, or it is in use)")
    return VideoSource(spec, capture)


def _describe_file_error(path, error):
    message = str(error)
    if message == "file not found":
        if os.path.isdir(path):
            return "is a folder, not a video file"
        return "video file not found"
    if message == "empty file":
        return "empty file: not a video"
    if message.startswith("cannot be opened"):
        return "not a video: " + message
    return message


_END = object()


def _prefetched(read, size):
    """Runs the generator function `read` in a daemon thread, `size` items ahead of the consumer."""
    items = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce():
        try:
            for item in read():
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            items.put(error)

    thread = threading.Thread(target=produce, name="video-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Drain so a producer blocked on a full queue sees `stop` and ends before the capture is released.
        while thread.is_alive():
            try:
                items.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


class FrameArraySource:
    """Frames already in memory (a notebook's array or list), read like a `VideoSource`.

    Args:
      frames: uint8 BGR frames, an array `(T, H, W, 3)` or a sequence of `(H, W, 3)` arrays.
      fps: frames per second, for times in the results (None: unknown).
      name: how results and messages name the frames.
      channel_order: "bgr" (OpenCV's) or "rgb" (converted to BGR).
    """

    def __init__(self, frames, fps=None, name="frames", channel_order="bgr"):
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        self._frames = frames
        self.fps = float(fps) if fps else None
        self.spec = SourceSpec(FILE, name)
        self._flip = channel_order == "rgb"
        self.width = self.height = None

    name = VideoSource.name
    is_live = False

    def frames(self, prefetch=0, timings=None):
        count = 0
        for frame in self._frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise UserError(f"{self.name}: frame {count} must be uint8 (H, W, 3), got {frame.dtype} "
                                f"{frame.shape}")
            count += 1
            yield np.ascontiguousarray(frame[..., ::-1]) if self._flip else frame
        if count == 0:
            raise UserError(f"{self.name}: no frames given")

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
