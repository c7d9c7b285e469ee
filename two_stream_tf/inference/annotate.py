"""Annotated videos: the predicted actions drawn over the frames, an optional flow inset, MP4 or GIF out.

    with AnnotatedVideoWriter("out.mp4", fps=25) as writer:
        writer.write(annotate_frame(frame, ["window 0.0-2.6 s", "1. Archery 0.91", "2. Bowling 0.04"],
                                    flow=flow_xy))
        ...

Text sits on a dark, mostly opaque box so it stays readable over any picture; the flow inset (direction as
hue, speed as brightness, `two_stream_tf.flow.visualize`) sits in the bottom-right corner. MP4 files are
written by OpenCV with the `mp4v` codec (any OpenCV build can write and read it back); GIFs by Pillow
(matplotlib's image library), which chooses a palette per frame — OpenCV's own GIF encoder uses a fixed
palette that washes out video. A file appears under its name only when complete: frames go to a
temporary file in the same folder, renamed on `close()`.
"""
import os
import secrets

import cv2
import numpy as np

from two_stream_tf.errors import UserError
from two_stream_tf.flow.visualize import flow_to_color

MP4_EXTENSIONS = (".mp4", ".m4v", ".mov")
GIF_EXTENSIONS = (".gif",)
OUTPUT_EXTENSIONS = MP4_EXTENSIONS + GIF_EXTENSIONS

BOX_COLOR = (24, 24, 24)        # BGR
BOX_OPACITY = 0.75
TEXT_COLOR = (255, 255, 255)
HEADER_COLOR = (120, 220, 255)  # the first line (time, window), light orange
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Flow drawn at full brightness at this speed (pixels per frame at the prediction resolution): the
# typical motion in UCF-101 is a few pixels per frame; faster motion saturates.
INSET_MAX_MAGNITUDE = 8.0


def format_top_k(top_k, digits=2):
    """Lines "1. Archery 0.91" for `[(name, score), …]`."""
    return [f"{rank}. {name} {score:.{digits}f}" for rank, (name, score) in enumerate(top_k, start=1)]


def text_scale(height):
    """OpenCV font scale for a frame `height` pixels high (0.4 at 240 pixels, growing with the height)."""
    return max(0.35, round(height / 600.0, 2))


def draw_text_box(frame, lines, origin=(6, 6), scale=None):
    """Draws `lines` of text on a dark box, in place.

    Args:
      frame: uint8 BGR `(H, W, 3)`, modified.
      lines: strings; the first is drawn in the header colour.
      origin: `(x, y)` of the box's top-left corner.
      scale: OpenCV font scale; None chooses one from the frame height.

    Returns:
      The box as `(x0, y0, x1, y1)` (exclusive ends), clipped to the frame.
    """
    if not lines:
        return origin + origin
    scale = text_scale(frame.shape[0]) if scale is None else scale
    thickness = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(line, FONT, scale, thickness) for line in lines]
    ascent = max(height for (_, height), _ in sizes)
    descent = max(baseline for _, baseline in sizes)
    line_height = ascent + descent + max(2, int(4 * scale))
    pad = max(3, int(6 * scale))
    x0, y0 = origin
    x1 = min(frame.shape[1], x0 + max(width for (width, _), _ in sizes) + 2 * pad)
    y1 = min(frame.shape[0], y0 + line_height * len(lines) + 2 * pad)
    region = frame[y0:y1, x0:x1]
    # Blend rather than paint: a little of the picture shows through, the text stays readable.
    region[:] = (region * (1.0 - BOX_OPACITY) + np.array(BOX_COLOR) * BOX_OPACITY).astype(np.uint8)
    for number, line in enumerate(lines):
        baseline_y = y0 + pad + line_height * number + ascent
        color = HEADER_COLOR if number == 0 else TEXT_COLOR
        cv2.putText(frame, line, (x0 + pad, baseline_y), FONT, scale, color, thickness, cv2.LINE_AA)
    return x0, y0, x1, y1


def draw_flow_inset(frame, flow, fraction=0.3, max_magnitude=INSET_MAX_MAGNITUDE):
    """Draws a flow field in colour into the bottom-right corner of `frame`, in place.

    Args:
      frame: uint8 BGR `(H, W, 3)`, modified.
      flow: float `(h, w, 2)`, x then y, pixels per frame (any size: it is resized).
      fraction: inset width as a fraction of the frame width.
      max_magnitude: speed drawn at full brightness.

    Returns:
      The inset as `(x0, y0, x1, y1)` (exclusive ends), border included.
    """
    height, width = frame.shape[:2]
    inset_width = max(8, int(width * fraction))
    inset_height = max(8, int(round(inset_width * flow.shape[0] / flow.shape[1])))
    inset_height = min(inset_height, height - 4)
    color = flow_to_color(flow, max_magnitude=max_magnitude)[..., ::-1]  # RGB -> BGR
    color = cv2.resize(color, (inset_width, inset_height), interpolation=cv2.INTER_AREA)
    x1, y1 = width - 4, height - 4
    x0, y0 = x1 - inset_width, y1 - inset_height
    cv2.rectangle(frame, (x0 - 1, y0 - 1), (x1, y1), (255, 255, 255), 1)
    frame[y0:y1, x0:x1] = color
    return x0 - 1, y0 - 1, x1 + 1, y1 + 1


def annotate_frame(frame, lines, flow=None, copy=True):
    """A frame with `lines` in a text box (top left) and, given `flow`, a flow inset (bottom right).

    Args:
      frame: uint8 BGR `(H, W, 3)`.
      lines: text lines (see `draw_text_box`).
      flow: optional float flow `(h, w, 2)` to draw as an inset.
      copy: draw on a copy (True) or on `frame` itself.

    Returns:
      uint8 BGR `(H, W, 3)`.
    """
    frame = np.array(frame, copy=True) if copy else frame
    draw_text_box(frame, lines)
    if flow is not None:
        draw_flow_inset(frame, flow)
    return frame


def check_output_path(path):
    """Checks that `path` is a writable MP4 or GIF file name; raises `UserError` naming it otherwise."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in OUTPUT_EXTENSIONS:
        raise UserError(f"annotated video {path}: the name must end with one of {', '.join(OUTPUT_EXTENSIONS)} "
                        "(MP4 with the mp4v codec, or GIF)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"annotated video {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise UserError(f"annotated video {path} is a folder")
    return path


class AnnotatedVideoWriter:
    """Writes BGR frames to an MP4 (mp4v) or GIF file, visible under its name only once complete.

    Args:
      path: output file; the extension chooses the format (.mp4/.m4v/.mov or .gif).
      fps: frames per second (None: 25).

    Frames may have any size; all frames of one file must have the first frame's size.
    """

    def __init__(self, path, fps=None):
        self.path = check_output_path(path)
        self.fps = float(fps) if fps else 25.0
        self.extension = os.path.splitext(self.path)[1].lower()
        folder = os.path.dirname(os.path.abspath(self.path))
        self._temporary = _new_temporary(folder, self.extension)
        self._writer = None
        self._gif_frames = []
        self._size = None
        self.frames_written = 0

    def write(self, frame):
        """Appends one uint8 BGR frame `(H, W, 3)`."""
        size = (frame.shape[1], frame.shape[0])
        if self._size is None:
            self._size = size
            if self.extension in MP4_EXTENSIONS:
                self._writer = cv2.VideoWriter(self._temporary, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
                if not self._writer.isOpened():
                    self.abort()
                    raise UserError(f"annotated video {self.path}: OpenCV cannot write MP4 (mp4v) files here")
        elif size != self._size:
            raise ValueError(f"frame size {size} differs from the first frame's {self._size}")
        if self._writer is not None:
            self._writer.write(np.ascontiguousarray(frame))
        else:
            # Pillow's GIF writer needs all frames at once; keep them as RGB.
            self._gif_frames.append(np.ascontiguousarray(frame[..., ::-1]))
        self.frames_written += 1

    def close(self):
        """Finishes the file and moves it to its name. Returns the path (None if no frame was written)."""
        if self._temporary is None:
            return self.path
        try:
            if self._writer is not None:
                self._writer.release()
            elif self._gif_frames:
                _write_gif(self._temporary, self._gif_frames, self.fps)
        except BaseException:
            self.abort()
            raise
        if self.frames_written == 0:
            self.abort()
            return None
        os.replace(self._temporary, self.path)
        self._temporary = None
        self._gif_frames = []
        return self.path

    def abort(self):
        """Drops the partial file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._temporary is not None and os.path.exists(self._temporary):
            os.remove(self._temporary)
        self._temporary = None
        self._gif_frames = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _new_temporary(folder, extension):
    """Creates an empty, uniquely named hidden file in `folder`; returns its path.

    Not `tempfile.mkstemp`: that creates the file with mode 0600, which the finished video would keep
    after the rename. Created with 0666 like any other file, the process's umask decides (0644 usually).
    """
    for _ in range(100):
        path = os.path.join(folder, f".annotating-{secrets.token_hex(6)}{extension}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for an annotated video in {folder}")


def _write_gif(path, frames, fps):
    try:
        from PIL import Image
    except ImportError as error:  # Pillow comes with matplotlib, a dependency; say so if it is missing
        raise UserError("writing GIFs needs Pillow (pip install pillow); or write an .mp4") from error
    # A 256-colour palette per frame by fast octree quantisation: ~5 ms a frame where Pillow's default
    # (median cut) takes ~300 ms, and no visible difference at video sizes.
    images = [Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
              for frame in frames]
    # GIF delays are in centiseconds; Pillow merges identical consecutive frames, which annotated
    # frames never are (the header shows the frame number).
    duration = max(20, int(round(1000.0 / fps)))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                   optimize=False)
