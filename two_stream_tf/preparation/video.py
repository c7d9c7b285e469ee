"""Decoding videos with OpenCV, frame by frame, and checking that the whole video decoded.

Frame counts come from decoding, never from container headers: real HMDB-51 (and some UCF-101) files
claim a frame more than decodes, and raw MPEG-4 elementary streams report garbage. The header is only
used to catch a video that stops decoding early (a truncated or damaged file): `check_decoded` accepts a
decode of at least the declared count minus `MISSING_FRAMES_TOLERATED`, and ignores a declared count that
is not a plausible number of frames.
"""
import math
import os

import cv2


# Real HMDB-51 AVIs declare one frame more than any decoder yields: one missing frame is a good video.
MISSING_FRAMES_TOLERATED = 1
# Declared counts outside 1 … this are not frame counts (raw MPEG-4 streams report about -1.9e14).
_MAX_PLAUSIBLE_FRAMES = 10_000_000


class VideoReadError(Exception):
    """A video that cannot be opened or yields no frames (unreadable, empty, corrupt, not a video)."""


class ShortDecodeError(VideoReadError):
    """A video that decoded to fewer frames than its container declares (truncated or damaged).

    Attributes:
      decoded: frames that decoded.
      declared: frames the container declares.
    """

    def __init__(self, decoded, declared):
        self.decoded, self.declared = decoded, declared
        super().__init__(f"only {decoded} of the {declared} frames the container declares could be decoded "
                         f"(truncated or damaged file; at most {MISSING_FRAMES_TOLERATED} missing frame is "
                         "tolerated)")


def open_video(path, decoder_threads=None):
    """Opens `path` for decoding.

    Args:
      path: a video file.
      decoder_threads: FFmpeg decoding threads; None lets OpenCV choose (one per core).

    Returns:
      An opened `cv2.VideoCapture`.

    Raises:
      VideoReadError: the file is missing or no backend can read it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError("file not found")
    if os.path.getsize(path) == 0:
        raise VideoReadError("empty file")
    params = [] if decoder_threads is None else [cv2.CAP_PROP_N_THREADS, int(decoder_threads)]
    # FFmpeg reads every format here; builds without it fall back to whatever backend they have.
    backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    capture = cv2.VideoCapture(path, backend, params)
    if not capture.isOpened():
        raise VideoReadError("cannot be opened as a video (corrupt or unknown format)")
    return capture


def read_frames(path, decoder_threads=None):
    """Yields the decoded frames of a video in order.

    Args:
      path: a video file.
      decoder_threads: as in `open_video`.

    Yields:
      uint8 BGR frames `(H, W, 3)`, as OpenCV decodes them.

    Raises:
      VideoReadError: the video cannot be opened or decodes to no frames.
    """
    capture = open_video(path, decoder_threads)
    try:
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield frame
        if count == 0:
            raise VideoReadError("no frames could be decoded")
    finally:
        capture.release()


def declared_frame_count(path):
    """The frame count a video's container declares, or None when it declares none that is plausible.

    Opens the file once more (reading the header costs little next to decoding it).
    """
    try:
        capture = open_video(path, decoder_threads=1)
    except VideoReadError:
        return None
    try:
        value = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    if not math.isfinite(value) or not 1 <= value <= _MAX_PLAUSIBLE_FRAMES:
        return None
    return int(round(value))


def check_decoded(decoded, declared):
    """Raises `ShortDecodeError` when `decoded` frames fall short of `declared` by more than the tolerance.

    Args:
      decoded: frames that decoded (the whole video).
      declared: `declared_frame_count`, None when unknown (then nothing is checked).
    """
    if declared is not None and decoded < declared - MISSING_FRAMES_TOLERATED:
        raise ShortDecodeError(decoded, declared)


def quiet_opencv_warnings():
    """Shows only OpenCV errors, not the warnings it prints for every unreadable file (process-wide)."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def count_frames(path, decoder_threads=None):
    """The number of frames that decode from `path` (raises `VideoReadError` like `read_frames`)."""
    return sum(1 for _ in read_frames(path, decoder_threads))
