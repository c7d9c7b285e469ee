"""Decoding videos with OpenCV, frame by frame.

Frame counts come from decoding, never from container headers: real UCF-101 and HMDB-51 files claim a frame
more than decodes, and raw MPEG-4 elementary streams report garbage.
"""
import os

import cv2


class VideoReadError(Exception):
    """A video that cannot be opened or yields no frames (unreadable, empty, corrupt, not a video)."""


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


def quiet_opencv_warnings():
    """Shows only OpenCV errors, not the warnings it prints for every unreadable file (process-wide)."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def count_frames(path, decoder_threads=None):
    """The number of frames that decode from `path` (raises `VideoReadError` like `read_frames`)."""
    return sum(1 for _ in read_frames(path, decoder_threads))
