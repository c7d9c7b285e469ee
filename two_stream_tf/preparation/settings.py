"""What an extraction writes: layout, frame numbering, frame size, flow method, bound and JPEG quality, checked once."""
import dataclasses
import numbers

from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.errors import UserError
from two_stream_tf.flow.compute import FLOW_METHODS
from two_stream_tf.flow.quantize import DEFAULT_BOUND
from two_stream_tf.preparation.numbering import RGB_FRAME_CHOICES, default_rgb_frames

# "none" writes RGB frames only.
FLOW_CHOICES = FLOW_METHODS + ("none",)
DEFAULT_SIZE = (340, 256)
# What to do with a video that decodes to fewer frames than its container declares (see `video.check_decoded`).
SHORT_DECODE_CHOICES = ("fail", "warn")


@dataclasses.dataclass(frozen=True)
class ExtractionSettings:
    """Settings of one extraction run; two runs with equal settings write identical files.

    Attributes:
      layout: a key of `two_stream_tf.data.layouts.LAYOUTS` ("tsn", "twostreamfusion", …).
      size: output `(width, height)`; None keeps the decoded size. Set to None when `short_side` is given.
      short_side: resize so the shorter side has this many pixels, keeping the aspect ratio.
      flow_method: "tvl1", "dis", "farneback" or "none" (RGB frames only).
      bound: flow quantisation bound in pixels.
      jpeg_quality: 0..100 for RGB and flow JPEGs.
      max_frames: stop after this many decoded frames (previews and benchmarks); None decodes the whole video.
      rgb_frames: which decoded frames become RGB images (`two_stream_tf.preparation.numbering`):
        "dense_flow" (N - 1 images, RGB k and flow k end at the same frame, as TSN's dense_flow) or "all"
        (N images, RGB k is where flow k starts); None takes the layout's default ("dense_flow" for "tsn",
        "all" for the others).
      short_decode: "fail" (default) reports a video that decodes to fewer frames than its container
        declares (beyond the tolerance of `video.check_decoded`) as failed; "warn" writes what decodes and
        notes both counts. It decides nothing about what a good video writes, so it is left out of `to_dict`
        and of the done-markers.
    """

    layout: str = "tsn"
    size: tuple | None = DEFAULT_SIZE
    short_side: int | None = None
    flow_method: str = "tvl1"
    bound: float = DEFAULT_BOUND
    jpeg_quality: int = 95
    max_frames: int | None = None
    rgb_frames: str | None = None
    short_decode: str = dataclasses.field(default="fail", compare=False)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise UserError(f"layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.flow_method not in FLOW_CHOICES:
            raise UserError(f"flow_method {self.flow_method!r} is not one of {', '.join(FLOW_CHOICES)}")
        if self.size is not None:
            size = tuple(self.size) if isinstance(self.size, (tuple, list)) else ()
            if len(size) != 2 or not all(_is_positive_int(v) for v in size):
                raise UserError(f"size must be (width, height) in positive whole pixels, got {self.size!r}")
            object.__setattr__(self, "size", tuple(int(v) for v in size))
        if self.short_side is not None:
            if not _is_positive_int(self.short_side):
                raise UserError(f"short_side must be a positive whole number of pixels, got {self.short_side!r}")
            object.__setattr__(self, "size", None)  # unused: keep it out of the done-markers
        if not isinstance(self.bound, numbers.Real) or not self.bound > 0:
            raise UserError(f"bound must be a positive number of pixels, got {self.bound!r}")
        if not _is_int(self.jpeg_quality) or not 0 <= self.jpeg_quality <= 100:
            raise UserError(f"jpeg_quality must be a whole number in 0..100, got {self.jpeg_quality!r}")
        if self.max_frames is not None and not _is_positive_int(self.max_frames):
            raise UserError(f"max_frames must be a positive whole number, got {self.max_frames!r}")
        object.__setattr__(self, "bound", float(self.bound))
        if self.rgb_frames is None:
            object.__setattr__(self, "rgb_frames", default_rgb_frames(self.layout))
        elif self.rgb_frames not in RGB_FRAME_CHOICES:
            raise UserError(f"rgb_frames {self.rgb_frames!r} is not one of {', '.join(RGB_FRAME_CHOICES)}")
        if self.short_decode not in SHORT_DECODE_CHOICES:
            raise UserError(f"short_decode {self.short_decode!r} is not one of {', '.join(SHORT_DECODE_CHOICES)}")

    def output_size(self, width, height):
        """The `(width, height)` frames of a `width`×`height` video are resized to."""
        if self.short_side is not None:
            scale = self.short_side / min(width, height)
            # Half up (340×256 at short side 32 → 43×32), not Python's round-half-to-even.
            return max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5))
        if self.size is not None:
            return self.size
        return width, height

    def to_dict(self):
        """A JSON-ready dict of what decides the files written; equal settings give equal dicts."""
        values = dataclasses.asdict(self)
        del values["short_decode"]
        values["size"] = list(self.size) if self.size is not None else None
        return values


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_positive_int(value):
    return _is_int(value) and value > 0
