"""One video in, RGB JPEGs and quantised x/y flow JPEGs out, committed atomically (see `output`)."""
import dataclasses
import os
import time

import cv2
import numpy as np

from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.flow.compute import create_optical_flow
from two_stream_tf.flow.quantize import DEFAULT_BOUND, quantize_flow
from two_stream_tf.preparation.discovery import video_id as video_id_of
from two_stream_tf.preparation.numbering import ALL_FRAMES, first_rgb_frame
from two_stream_tf.preparation.output import CommitError, OutputFolder
from two_stream_tf.preparation.settings import DEFAULT_SIZE, ExtractionSettings
from two_stream_tf.preparation.video import (ShortDecodeError, VideoReadError, check_decoded, declared_frame_count,
                                             read_frames)

EXTRACTED, SKIPPED, FAILED = "extracted", "skipped", "failed"


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """What happened to one video.

    Attributes:
      video_id: the video's id (its folder name under the output root).
      source: the video file.
      status: "extracted" (written now), "skipped" (done before with the same settings) or "failed".
      num_frames: RGB images on disk (N - 1 for a video of N frames with dense_flow numbering, else N).
      num_flow: flow pairs on disk (N - 1, or 0 without flow).
      error: why it failed, else None.
      seconds: time spent on it in this run.
      note: something a person should know about a video that did not fail (a short decode written
        anyway with `short_decode="warn"`, a done video re-extracted because its folder disagreed with its
        marker), else None.
    """

    video_id: str
    source: str
    status: str
    num_frames: int = 0
    num_flow: int = 0
    error: str | None = None
    seconds: float = 0.0
    note: str | None = None

    @property
    def ok(self):
        return self.status != FAILED


def extract_video(video_path, output_root, *, video_id=None, layout="tsn", size=DEFAULT_SIZE, short_side=None,
                  flow_method="tvl1", bound=DEFAULT_BOUND, jpeg_quality=95, max_frames=None, rgb_frames=None,
                  short_decode="fail", overwrite=False):
    """Decodes a video and writes its RGB frames and optical flow as JPEGs.

    Frames are resized (bilinear) to `size`, or so the short side is `short_side`; flow is computed between
    consecutive resized grayscale frames, quantised with `bound` (`two_stream_tf.flow.quantize`) and written
    as grayscale x and y JPEGs. A video of N frames gives N - 1 flow pairs, pair k being the motion from
    frame k to frame k + 1, and, with dense_flow numbering (the TSN layout's default), N - 1 RGB images,
    image k being frame k + 1 (`img_00001.jpg` is the second frame, as TSN's dense_flow writes it), or with
    `rgb_frames="all"` N images, image k being frame k (see `two_stream_tf.preparation.numbering`). File
    names come from the layout. Nothing is visible under the video's name until all its files are written
    and checked; a video already done with the same settings (and whose files still agree with its marker)
    is skipped.

    The whole video must decode: a video that yields fewer frames than its container declares (more than
    one fewer: `video.MISSING_FRAMES_TOLERATED`) fails, or with `short_decode="warn"` is written with a
    note giving both counts.

    Args:
      video_path: the video file.
      output_root: the dataset root to write into.
      video_id: the output folder name; default the file name without extension.
      layout: a key of `two_stream_tf.data.layouts.LAYOUTS`.
      size: output `(width, height)`; None keeps the decoded size. Ignored when `short_side` is given.
      short_side: resize so the shorter side has this many pixels, keeping the aspect ratio.
      flow_method: "tvl1", "dis", "farneback" or "none".
      bound: flow quantisation bound in pixels.
      jpeg_quality: 0..100.
      max_frames: stop after this many decoded frames (None: all).
      rgb_frames: "dense_flow", "all" or None (the layout's default).
      short_decode: "fail" or "warn".
      overwrite: re-extract even if done.

    Returns:
      A `VideoResult`. Unreadable, empty, truncated or corrupt videos give status "failed" with the reason.

    Raises:
      UserError: bad settings (naming the argument).
    """
    settings = ExtractionSettings(layout=layout, size=size, short_side=short_side, flow_method=flow_method,
                                  bound=bound, jpeg_quality=jpeg_quality, max_frames=max_frames,
                                  rgb_frames=rgb_frames, short_decode=short_decode)
    return extract_with_settings(video_path, output_root, settings, video_id=video_id, overwrite=overwrite)


def extract_with_settings(video_path, output_root, settings, *, video_id=None, overwrite=False, on_frame=None):
    """`extract_video` with an `ExtractionSettings` (what the process pool and the Beam pipeline call).

    `on_frame`, if given, is called with no arguments after each decoded frame's files are written (progress).
    """
    started = time.perf_counter()
    source = os.fspath(video_path)
    video_id = video_id or video_id_of(source)
    output = OutputFolder(output_root)
    if video_id.startswith("."):
        # Readers skip hidden folders, and ".prepare" is the bookkeeping folder.
        return VideoResult(video_id, source, FAILED, error=f"video id {video_id!r} starts with '.': its folder "
                           "would be hidden; rename the file")
    note = None
    if not overwrite:
        check = output.check_done(video_id, settings)
        if check.done:
            return _done_result(output, video_id, source, SKIPPED, started)
        if check.problem is not None:
            note = f"re-extracted: its folder disagreed with its done-marker ({check.problem})"
    output.create()
    try:
        with output.staging(video_id) as staging:
            written = _write_video(source, staging, video_id, settings, on_frame)
            if written.warning:
                note = written.warning if note is None else f"{note}; {written.warning}"
            if not overwrite and output.is_done(video_id, settings):
                # Another attempt (a retried Beam bundle) finished this video meanwhile: keep its files.
                return _done_result(output, video_id, source, SKIPPED, started)
            record = {"video": video_id, "source": source, "num_frames": written.num_frames,
                      "num_flow": written.num_flow, "decoded_frames": written.decoded,
                      "declared_frames": written.declared, "settings": settings.to_dict()}
            if written.warning:
                record["warning"] = written.warning
            output.commit(video_id, staging, settings.layout, record)
    except (VideoReadError, CommitError, cv2.error) as error:
        return VideoResult(video_id, source, FAILED, error=_reason(error), seconds=time.perf_counter() - started)
    return VideoResult(video_id, source, EXTRACTED, written.num_frames, written.num_flow,
                       seconds=time.perf_counter() - started, note=note)


def _done_result(output, video_id, source, status, started):
    marker = output.read_marker(video_id)
    return VideoResult(video_id, source, status, marker["num_frames"], marker["num_flow"],
                       seconds=time.perf_counter() - started)


def _reason(error):
    if isinstance(error, cv2.error):
        # OpenCV's message spans lines and names its source files; its last line says what went wrong.
        lines = [line for line in str(error).splitlines() if line.strip()]
        return "OpenCV error while decoding or writing: " + (lines[-1].strip() if lines else "unknown")
    return str(error)


@dataclasses.dataclass(frozen=True)
class _Written:
    num_frames: int  # RGB images
    num_flow: int
    decoded: int
    declared: int | None
    warning: str | None


def _write_video(source, staging, video_id, settings, on_frame):
    """Writes all files of one video under `staging`; returns what was written as a `_Written`."""
    layout = LAYOUTS[settings.layout]
    with_flow = settings.flow_method != "none"
    # A fresh flow object per video: OpenCV's DIS object carries state from one call to the next (the flow
    # of a pair differs at the 0.01 px level after other pairs), so a reused one would make a video's files
    # depend on which videos its worker did before, and a resumed run would not rewrite the same bytes.
    flow = create_optical_flow(settings.flow_method) if with_flow else None
    first_rgb = first_rgb_frame(settings.rgb_frames)
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    created = set()

    def write(relative_path, image):
        path = os.path.join(staging, relative_path)
        folder = os.path.dirname(path)
        if folder not in created:
            os.makedirs(folder, exist_ok=True)
            created.add(folder)
        if not cv2.imwrite(path, image, params):
            raise OSError(f"could not write {path}")

    declared = declared_frame_count(source)
    # FFmpeg decodes with as many threads as OpenCV is allowed, so one setting governs a worker's threads.
    frames = read_frames(source, decoder_threads=cv2.getNumThreads())
    decoded = num_flow = 0
    previous = None
    output_size = None
    stopped_early = False
    for frame in frames:
        if output_size is None:
            output_size = settings.output_size(frame.shape[1], frame.shape[0])
        if (frame.shape[1], frame.shape[0]) != output_size:
            frame = cv2.resize(frame, output_size, interpolation=cv2.INTER_LINEAR)
        # dense_flow numbering: frame t is RGB image t - 1, written with flow pair t - 1 (which ends at it).
        if decoded >= first_rgb:
            write(layout.rgb_file(video_id, decoded - first_rgb), frame)
        if with_flow:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if previous is not None:
                quantized = quantize_flow(flow.calc(previous, gray, None), settings.bound)
                x_file, y_file = layout.flow_files(video_id, num_flow)
                write(x_file, np.ascontiguousarray(quantized[..., 0]))
                write(y_file, np.ascontiguousarray(quantized[..., 1]))
                num_flow += 1
            previous = gray
        decoded += 1
        if on_frame is not None:
            on_frame()
        if settings.max_frames is not None and decoded >= settings.max_frames:
            frames.close()
            stopped_early = True
            break
    warning = None
    if not stopped_early:
        try:
            check_decoded(decoded, declared)
        except ShortDecodeError as error:
            if settings.short_decode != "warn":
                raise
            warning = f"decoded {error.decoded} of the {error.declared} frames its container declares; kept"
    num_frames = decoded - first_rgb
    if num_frames < 1:
        raise VideoReadError(f"only {decoded} frame decoded: dense_flow numbering writes one RGB image per "
                             f"flow pair and needs 2 (--rgb-frames {ALL_FRAMES} keeps single frames)")
    return _Written(num_frames, num_flow, decoded, declared, warning)
