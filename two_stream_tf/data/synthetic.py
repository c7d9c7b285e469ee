"""Synthetic action videos: a small UCF-101-style dataset whose classes need motion to tell apart.

Each class is an *appearance* (object shape, texture pattern, colours) doing a *motion* (slide, spin,
bounce, swing, orbit). In the default 8 classes every look does two motions and every motion is done by two looks
of the same shape that differ in colour and texture (`RedTriangleRise`, `RedTriangleFall`,
`GreenTriangleRise`, `BlueKiteBounce`, `BlueKiteSwing`, …): a single frame shows the look but not the motion, the optical flow shows the
motion but not the colour, so the spatial and temporal streams each get about half of the classes and
their fusion gets them all. Videos of the same look and group `gGG` share the object's colours and the
background, as UCF-101's groups share the actor and the scene.

Every video varies object size, speed, start position, background texture and panning, and sensor noise.
Frames are rendered analytically, so the optical flow the generator applied is known exactly for every
pixel: the object's motion where the object is, the background's pan elsewhere. With `write_frames` the
dataset also gets frame folders in a frame layout (TSN by default) whose flow images are this ground-truth
flow quantised like dense_flow does, so tests and demos have flow without running an optical-flow method.
RGB images are numbered as `two-stream prepare` numbers them (`two_stream_tf.preparation.numbering`): in the
TSN layout, as dense_flow, N - 1 images from the second frame (RGB k and flow k end at the same frame).

Output (`write_synthetic_dataset(output_dir)`)::

  output_dir/classInd.txt, trainlist01.txt, testlist01.txt      UCF-101-style split files
  output_dir/videos/<Class>/v_<Class>_gGG_cCC.avi              MJPG AVI, 25 fps
  output_dir/frames/v_<Class>_gGG_cCC/img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg  (TSN layout)
"""
import dataclasses
import math
import os

import cv2
import numpy as np
from tqdm import tqdm

from two_stream_tf.data.layouts import LAYOUTS, Layout
from two_stream_tf.errors import UserError
from two_stream_tf.flow.quantize import DEFAULT_BOUND, quantize_flow

FPS = 25.0
# Motions are clamped so that no pixel moves faster than this (px/frame), well inside the ±20 px
# quantisation bound, so the quantised ground truth never saturates.
_MAX_SPEED = 0.6 * DEFAULT_BOUND

# Appearance: shape, texture pattern, base hue of the object, hue of the scene (degrees). Looks of the same
# shape differ only in colours, texture and scene (as a swimming pool or a field is context in UCF-101),
# which optical flow does not show: only the silhouette and the motion reach the flow.
_APPEARANCES = {
    "RedTriangle": ("triangle", "stripes", 0.0, 200.0),
    "GreenTriangle": ("triangle", "checker", 120.0, 30.0),
    "BlueKite": ("diamond", "stripes", 220.0, 100.0),
    "GoldKite": ("diamond", "checker", 50.0, 280.0),
    "Ball": ("disc", "stripes", 0.0, 160.0),
    "Box": ("square", "checker", 220.0, 60.0),
    "Hexagon": ("hexagon", "checker", 185.0, 330.0),
    "Cross": ("cross", "stripes", 30.0, 240.0),
}

# (class name, appearance, motion kind, motion argument). The first 8 classes (the default) are two shapes,
# each in two looks, each look doing two motions. One frame shows the look (colour, texture, shape) but not
# the motion; the flow shows the motion and the shape but not the colour or texture. So each stream alone
# tells about half of the classes apart, the spatial and temporal streams are complementary, and fusing
# them is what separates all eight, as in the two-stream papers. Their motions are ones a horizontal flip
# maps onto the same class (up stays up, a horizontal swing stays one), so flip augmentation, which every recipe uses,
# keeps the labels true. The first 4 (and 6) classes keep the balance: 4 = two looks x two motions.
# Classes 9-16 add pairs that share a look and are mirror images of each other in motion (left/right,
# clockwise/anticlockwise): a flipped BallRollLeft video is a BallRollRight video, so train those without
# flips.
_CLASS_CATALOGUE = (
    ("RedTriangleRise", "RedTriangle", "translate", (0.0, -1.0)),
    ("RedTriangleFall", "RedTriangle", "translate", (0.0, 1.0)),
    ("GreenTriangleRise", "GreenTriangle", "translate", (0.0, -1.0)),
    ("GreenTriangleFall", "GreenTriangle", "translate", (0.0, 1.0)),
    ("BlueKiteBounce", "BlueKite", "oscillate", (0.0, 1.0)),
    ("BlueKiteSwing", "BlueKite", "oscillate", (1.0, 0.0)),
    ("GoldKiteBounce", "GoldKite", "oscillate", (0.0, 1.0)),
    ("GoldKiteSwing", "GoldKite", "oscillate", (1.0, 0.0)),
    ("BallRollLeft", "Ball", "translate", (-1.0, 0.0)),
    ("BallRollRight", "Ball", "translate", (1.0, 0.0)),
    ("BoxSpinClockwise", "Box", "rotate", 1.0),
    ("BoxSpinAnticlockwise", "Box", "rotate", -1.0),
    ("HexagonOrbitClockwise", "Hexagon", "orbit", 1.0),
    ("HexagonOrbitAnticlockwise", "Hexagon", "orbit", -1.0),
    ("CrossDriftUpLeft", "Cross", "translate", (-1.0, -1.0)),
    ("CrossDriftDownRight", "Cross", "translate", (1.0, 1.0)),
)

MAX_CLASSES = len(_CLASS_CATALOGUE)


def class_names(num_classes=8):
    """The CamelCase names of the first `num_classes` synthetic classes (at most `MAX_CLASSES`)."""
    _check_positive("num_classes", num_classes, 1, MAX_CLASSES)
    return tuple(name for name, *_ in _CLASS_CATALOGUE[:num_classes])


@dataclasses.dataclass(frozen=True, eq=False)
class VideoSpec:
    """Everything needed to render one synthetic video; rendering it is deterministic.

    Attributes:
      video: video id, `v_<Class>_gGG_cCC`.
      class_name, label: the class and its 0-based id.
      group, clip: 1-based group and clip numbers (as in the id).
      subset: "train" or "test".
      frame_size: (width, height).
      shape, pattern: object shape and texture pattern names.
      colors: `(2, 3)` float RGB 0..255, the pattern's two colours.
      pattern_period: texture period in object pixels.
      radius: object radius in pixels.
      centers: `(N, 2)` object centre (x, y) per frame, pixels; the frame is a torus, so a centre outside it
        is drawn at the centre modulo the frame size.
      angles: `(N,)` object rotation per frame, radians (positive turns clockwise on screen, y down).
      background_seed: seed of the periodic background texture.
      background_color: `(3,)` float RGB 0..255, the texture's mean colour (the scene's hue).
      background_offsets: `(N, 2)` background pan offset (x, y) per frame, pixels.
      noise_sigma, noise_seed: per-pixel Gaussian sensor noise.
    """

    video: str
    class_name: str
    label: int
    group: int
    clip: int
    subset: str
    frame_size: tuple
    shape: str
    pattern: str
    colors: np.ndarray
    pattern_period: float
    radius: float
    centers: np.ndarray
    angles: np.ndarray
    background_seed: int
    background_color: np.ndarray
    background_offsets: np.ndarray
    noise_sigma: float
    noise_seed: int

    @property
    def num_frames(self):
        return len(self.centers)


@dataclasses.dataclass(frozen=True, eq=False)
class RenderedVideo:
    """A rendered synthetic video and its ground truth.

    Attributes:
      frames: `(N, H, W, 3)` uint8 RGB.
      flow: `(N - 1, H, W, 2)` float32 forward flow (x, y) from frame t to t + 1, pixels per frame.
      object_mask: `(N, H, W)` bool, where the object covers (at least half of) a pixel.
    """

    frames: np.ndarray
    flow: np.ndarray
    object_mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """Where a synthetic dataset was written.

    Attributes:
      root: the output folder.
      videos_dir: `root/videos` (`<Class>/<video>.avi`).
      frames_dir: `root/frames` in `layout`, or None when frames were not written.
      split_dir: folder of `classInd.txt`, `trainlist01.txt`, `testlist01.txt` (the root).
      classes: class names, index = 0-based label.
      layout: the `Layout` of the frame folders.
      videos: one `VideoSpec` per video (render one again with `render_video`).
    """

    root: str
    videos_dir: str
    frames_dir: object
    split_dir: str
    classes: tuple
    layout: Layout
    videos: tuple

    def video_path(self, spec):
        """Absolute path of a video's AVI file."""
        return os.path.join(self.videos_dir, spec.class_name, spec.video + ".avi")


def group_plan(videos_per_class):
    """How clips are grouped and which groups are for testing.

    Like UCF-101, the clips of one group share their look, so train and test never share a group: the
    last third of the groups (at least one) are the test groups.

    Args:
      videos_per_class: clips per class, at least 2.

    Returns:
      `(clip_groups, test_groups)`: a list of 1-based group numbers, one per clip, and the set of test groups.
    """
    _check_positive("videos_per_class", videos_per_class, 2)
    num_groups = min(videos_per_class, max(3, math.ceil(videos_per_class / 2)), 25)
    num_test = max(1, round(num_groups / 3))
    sizes = [len(part) for part in np.array_split(np.arange(videos_per_class), num_groups)]
    clip_groups = [group for group, size in enumerate(sizes, start=1) for _ in range(size)]
    return clip_groups, set(range(num_groups - num_test + 1, num_groups + 1))


def make_video_specs(num_classes=8, videos_per_class=12, num_frames=32, frame_size=(128, 96), seed=0):
    """Draws the parameters of every video of a synthetic dataset (no rendering).

    Each video's parameters depend only on (seed, class, group, clip), and the look shared by a group only
    on (seed, appearance, group), so the classes of one appearance share their groups' look.

    Returns:
      A tuple of `VideoSpec`, class by class, clip by clip.
    """
    names = class_names(num_classes)
    _check_positive("num_frames", num_frames, 2)
    width, height = _check_size(frame_size)
    clip_groups, test_groups = group_plan(videos_per_class)
    specs = []
    for label, name in enumerate(names):
        _, appearance, kind, argument = _CLASS_CATALOGUE[label]
        appearance_index = list(_APPEARANCES).index(appearance)
        clip_in_group = {}
        for group in clip_groups:
            clip_in_group[group] = clip_in_group.get(group, 0) + 1
            clip = clip_in_group[group]
            look_rng = np.random.default_rng([seed, 1, appearance_index, group])
            video_rng = np.random.default_rng([seed, 2, label, group, clip])
            specs.append(_draw_spec(
                video=f"v_{name}_g{group:02d}_c{clip:02d}", class_name=name, label=label, group=group, clip=clip,
                subset="test" if group in test_groups else "train", appearance=appearance, kind=kind,
                argument=argument, num_frames=num_frames, size=(width, height), look_rng=look_rng,
                video_rng=video_rng))
    return tuple(specs)


def _draw_spec(*, video, class_name, label, group, clip, subset, appearance, kind, argument, num_frames,
               size, look_rng, video_rng):
    shape, pattern, hue, scene_hue = _APPEARANCES[appearance]
    width, height = size
    unit = min(width, height) / 96.0  # motion magnitudes are set for 96 px and scale with the frame

    # The group's look: colours near the appearance's hue, background texture.
    hue = (hue + look_rng.uniform(-12, 12)) % 360
    bright = _hsv_to_rgb(hue, look_rng.uniform(0.6, 0.95), look_rng.uniform(0.75, 1.0))
    dark = _hsv_to_rgb((hue + look_rng.uniform(20, 50)) % 360, look_rng.uniform(0.5, 0.9), look_rng.uniform(0.2, 0.45))
    colors = np.stack([dark, bright]).astype(np.float32)
    background_seed = int(look_rng.integers(2**31))
    scene = _hsv_to_rgb((scene_hue + look_rng.uniform(-15, 15)) % 360, look_rng.uniform(0.3, 0.5),
                        look_rng.uniform(0.45, 0.65))

    rng = video_rng
    radius = rng.uniform(0.11, 0.17) * min(width, height)
    period = rng.uniform(0.45, 0.75) * radius
    n = num_frames
    t = np.arange(n, dtype=np.float64)
    angle0 = rng.uniform(0, 2 * np.pi)
    angles = np.full(n, angle0)
    extent = 1.25 * radius + 2  # farthest object pixel from its centre, with a margin

    if kind == "translate":
        # Faster than a path inside the frame allows (flow of a few px/frame, as in real videos): the
        # frame is a torus, what leaves at one edge comes back at the opposite one (render_video draws it).
        direction = np.asarray(argument) / np.linalg.norm(argument)
        speed = min(rng.uniform(2.5, 5.0) * unit, _MAX_SPEED)
        start = rng.uniform(0, [width, height])
        centers = start + np.outer(t, direction * speed)
    elif kind == "rotate":
        centers = np.tile(_uniform_center(rng, width, height, extent), (n, 1))
        omega = argument * np.deg2rad(rng.uniform(4.0, 8.0))
        omega = math.copysign(min(abs(omega), _MAX_SPEED / extent), omega)
        angles = angle0 + omega * t
    elif kind == "oscillate":
        axis = np.asarray(argument)
        amplitude = rng.uniform(0.12, 0.2) * min(width, height)
        osc_period = rng.uniform(12, 20)
        amplitude = min(amplitude, _MAX_SPEED * osc_period / (2 * np.pi))
        half = np.array([width, height]) / 2.0
        amplitude = min(amplitude, float(np.min((half - extent)[axis > 0])))
        center = _uniform_center(rng, width, height, extent + axis * amplitude)
        centers = center + np.outer(amplitude * np.sin(2 * np.pi * t / osc_period + rng.uniform(0, 2 * np.pi)), axis)
    elif kind == "orbit":
        orbit_radius = rng.uniform(0.15, 0.22) * min(width, height)
        omega = argument * np.deg2rad(rng.uniform(8, 14))
        omega = math.copysign(min(abs(omega), _MAX_SPEED / orbit_radius), omega)
        center = _uniform_center(rng, width, height, extent + orbit_radius)
        phase = angle0 + omega * t
        centers = center + orbit_radius * np.stack([np.cos(phase), np.sin(phase)], axis=1)
    else:  # pragma: no cover - the catalogue only holds the kinds above
        raise ValueError(kind)

    pan = rng.uniform(-0.5, 0.5, size=2) * unit
    offsets = rng.uniform(0, [width, height]) + np.outer(t, pan)
    return VideoSpec(
        video=video, class_name=class_name, label=label, group=group, clip=clip, subset=subset,
        frame_size=(width, height), shape=shape, pattern=pattern, colors=colors,
        pattern_period=float(period), radius=float(radius), centers=centers.astype(np.float64),
        angles=np.asarray(angles, np.float64),
        background_seed=background_seed, background_color=np.asarray(scene, np.float32),
        background_offsets=offsets, noise_sigma=float(rng.uniform(2.0, 7.0)),
        noise_seed=int(rng.integers(2**31)))


def _uniform_center(rng, width, height, margin):
    margin = np.broadcast_to(np.asarray(margin, np.float64), (2,))
    low = margin
    high = np.array([width, height]) - margin
    # A frame too small for the margin puts the object in the middle rather than failing.
    return rng.uniform(np.minimum(low, high), np.maximum(low, high))


def _hsv_to_rgb(hue, saturation, value):
    pixel = np.array([[[hue / 2.0, saturation * 255.0, value * 255.0]]], np.float32)
    return cv2.cvtColor(pixel.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _shape_distance(shape, ux, uy, radius):
    """Approximate signed distance (object pixels at scale 1, negative inside) to the shape's edge."""
    if shape == "disc":
        return np.hypot(ux, uy) - radius
    if shape == "square":
        return np.maximum(np.abs(ux), np.abs(uy)) - 0.85 * radius
    if shape == "diamond":
        return (np.abs(ux) / 0.75 + np.abs(uy)) * 0.6 - 0.75 * radius
    if shape in ("triangle", "hexagon"):
        count, inradius, first = (3, 0.55, 90.0) if shape == "triangle" else (6, 0.9, 0.0)
        normals = np.deg2rad(first + 360.0 / count * np.arange(count))
        return np.max([np.cos(a) * ux + np.sin(a) * uy for a in normals], axis=0) - inradius * radius
    if shape == "cross":
        bar_x = np.maximum(np.abs(ux) - radius, np.abs(uy) - 0.35 * radius)
        bar_y = np.maximum(np.abs(ux) - 0.35 * radius, np.abs(uy) - radius)
        return np.minimum(bar_x, bar_y)
    raise ValueError(shape)  # pragma: no cover


def _pattern_weight(pattern, ux, uy, period):
    """0..1 mix between the two colours; smooth so the texture's motion is visible to flow methods."""
    phase_x = np.sin(2 * np.pi * ux / period)
    if pattern == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * (0.8 * ux + 0.6 * uy) / period)
    if pattern == "checker":
        return 0.5 + 0.5 * np.tanh(3.0 * phase_x * np.sin(2 * np.pi * uy / period))
    raise ValueError(pattern)  # pragma: no cover


def _background_texture(seed, color, width, height):
    """A periodic (wrap-around) colour texture around `color` (RGB), so a panning background has no seam."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None] * height
    fx = np.fft.rfftfreq(width)[None, :] * width
    falloff = 1.0 / np.maximum(1.0, np.hypot(fx, fy)) ** 1.6
    channels = []
    for _ in range(3):
        spectrum = falloff * (rng.normal(size=falloff.shape) + 1j * rng.normal(size=falloff.shape))
        spectrum[0, 0] = 0
        channels.append(np.fft.irfft2(spectrum, s=(height, width)))
    texture = np.stack(channels, axis=-1)
    texture = (texture - texture.mean()) / (texture.std() + 1e-9)
    return np.clip(np.asarray(color) + rng.uniform(20, 35) * texture, 0, 255).astype(np.float32)


def _object_box(spec, t, center, width, height):
    """Slices of the pixels that the object of frame t, drawn at `center`, can cover (its shape lies within
    1.25 radius), or None when they are all outside the frame."""
    reach = 1.25 * spec.radius + 2
    cx, cy = center
    x0, x1 = max(0, int(cx - reach)), min(width, int(math.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(cy - reach)), min(height, int(math.ceil(cy + reach)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def _copy_shifts(spec, t, width, height):
    """Shifts (x, y) at which frame t draws the object: the frame is a torus, so an object whose centre has
    left it is drawn at the centre modulo the frame size, and also one frame size over wherever it overlaps
    an edge (half leaving at the top, half entering at the bottom)."""
    size = np.array([width, height], np.float64)
    home = -np.floor(spec.centers[t] / size) * size
    return [home + size * np.array([i, j]) for i in (-1, 0, 1) for j in (-1, 0, 1)]


def _draw_object(spec, t, shift, image, mask, flow):
    """Draws frame t's object shifted by `shift` into `image` and `mask`, and writes its flow into `flow`
    (None for the last frame). The same shift applies in frame t + 1, so the flow is the object's motion."""
    height, width = mask.shape
    center = spec.centers[t] + shift
    box = _object_box(spec, t, center, width, height)
    if box is None:
        return
    rows, cols = box
    ys, xs = np.mgrid[rows, cols].astype(np.float32)
    cos, sin = math.cos(spec.angles[t]), math.sin(spec.angles[t])
    dx, dy = xs - np.float32(center[0]), ys - np.float32(center[1])
    ux, uy = cos * dx + sin * dy, -sin * dx + cos * dy  # object-local
    distance = _shape_distance(spec.shape, ux, uy, spec.radius)
    alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
    weight = _pattern_weight(spec.pattern, ux, uy, spec.pattern_period)[..., None]
    colour = spec.colors[0] * (1 - weight) + spec.colors[1] * weight
    image[rows, cols] = alpha * colour + (1 - alpha) * image[rows, cols]
    inside = alpha[..., 0] >= 0.5
    mask[rows, cols] |= inside
    if flow is not None:
        # Where the object point under each pixel goes in frame t + 1.
        cos, sin = math.cos(spec.angles[t + 1]), math.sin(spec.angles[t + 1])
        next_center = spec.centers[t + 1] + shift
        next_x = next_center[0] + cos * ux - sin * uy
        next_y = next_center[1] + sin * ux + cos * uy
        region = flow[rows, cols]
        region[..., 0] = np.where(inside, next_x - xs, region[..., 0])
        region[..., 1] = np.where(inside, next_y - ys, region[..., 1])


def render_video(spec):
    """Renders a synthetic video and its exact forward optical flow.

    Args:
      spec: a `VideoSpec` from `make_video_specs` (or `SyntheticDataset.videos`).

    Returns:
      A `RenderedVideo`: frames `(N, H, W, 3)` uint8 RGB, flow `(N - 1, H, W, 2)` float32 (x, y), and the
      object mask `(N, H, W)` bool. Flow at a pixel of frame t is where that point is in frame t + 1 minus
      where it is in frame t: the object's motion where the object is (alpha >= 0.5), the background's pan
      elsewhere.
    """
    width, height = spec.frame_size
    n = spec.num_frames
    background = _background_texture(spec.background_seed, spec.background_color, width, height)
    noise_rng = np.random.default_rng(spec.noise_seed)
    # Drawing Gaussian noise dominates rendering time: draw a few frames of it and give each frame a
    # randomly shifted copy of one of them.
    noise_bank = noise_rng.standard_normal((min(n, 4), height, width, 3), dtype=np.float32)
    noise_bank *= np.float32(spec.noise_sigma)
    frames = np.empty((n, height, width, 3), np.uint8)
    flow = np.empty((n - 1, height, width, 2), np.float32)
    masks = np.zeros((n, height, width), bool)
    for t in range(n):
        ox, oy = spec.background_offsets[t]
        # Background content at p in frame t is texture(p - offset_t): it pans by the offset's change.
        shift = np.array([[1, 0, ox], [0, 1, oy]], np.float64)
        image = cv2.warpAffine(background, shift, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_WRAP)
        if t + 1 < n:
            flow[t] = spec.background_offsets[t + 1] - spec.background_offsets[t]
        for copy_shift in _copy_shifts(spec, t, width, height):
            _draw_object(spec, t, copy_shift, image, masks[t], flow[t] if t + 1 < n else None)
        image += np.roll(noise_bank[t % len(noise_bank)], noise_rng.integers(0, [height, width]), axis=(0, 1))
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return RenderedVideo(frames=frames, flow=flow, object_mask=masks)


def write_synthetic_dataset(output_dir, num_classes=8, videos_per_class=12, num_frames=32,
                            frame_size=(128, 96), seed=0, write_frames=True, layout="tsn", progress=None,
                            rgb_frames=None):
    """Writes a small UCF-101-style dataset of synthetic action videos.

    Writes `output_dir/videos/<Class>/v_<Class>_gGG_cCC.avi` (MJPG, 25 fps), `classInd.txt`,
    `trainlist01.txt` (with 1-based labels) and `testlist01.txt` (train and test never share a group), and
    with `write_frames` the frame folders `output_dir/frames/<video>/…` in `layout`: N - 1 flow pairs
    holding the ground-truth flow quantised with `two_stream_tf.flow.quantize.quantize_flow` (bound 20),
    and the RGB JPEGs numbered as `two-stream prepare` would write them from the AVI: N - 1 images from
    the second frame (dense_flow numbering, the TSN layout's) or all N (the other layouts', or
    `rgb_frames="all"`). The same arguments always give the same files.

    Args:
      output_dir: folder to write into (created; existing files of the same names are overwritten).
      num_classes: number of classes, 1..`MAX_CLASSES` (16).
      videos_per_class: clips per class, at least 2.
      num_frames: frames per video, at least 2.
      frame_size: (width, height) in pixels.
      seed: random seed.
      write_frames: also write the frame folders.
      layout: a name in `LAYOUTS` or a `Layout` for the frame folders.
      progress: show a progress bar; None shows it only on a terminal.
      rgb_frames: "dense_flow", "all" or None (the layout's default, as in `two-stream prepare`).

    Returns:
      A `SyntheticDataset`.
    """
    # Here, not at the top: two_stream_tf.data must not need the preparation package to import.
    from two_stream_tf.preparation.numbering import RGB_FRAME_CHOICES, default_rgb_frames, first_rgb_frame

    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise UserError(f"unknown frame layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[layout]
    if rgb_frames is None:
        rgb_frames = default_rgb_frames(layout.name)
    elif rgb_frames not in RGB_FRAME_CHOICES:
        raise UserError(f"rgb_frames {rgb_frames!r} is not one of {', '.join(RGB_FRAME_CHOICES)}")
    specs = make_video_specs(num_classes, videos_per_class, num_frames, frame_size, seed)
    classes = class_names(num_classes)
    root = os.path.abspath(os.fspath(output_dir))
    videos_dir = os.path.join(root, "videos")
    frames_dir = os.path.join(root, "frames") if write_frames else None
    dataset = SyntheticDataset(root=root, videos_dir=videos_dir, frames_dir=frames_dir, split_dir=root,
                               classes=classes, layout=layout, videos=specs)
    os.makedirs(root, exist_ok=True)
    _write_split_files(root, classes, specs)
    for number, spec in enumerate(tqdm(specs, desc="synthetic videos", unit="video",
                                       disable=None if progress is None else not progress)):
        rendered = render_video(spec)
        _write_avi(dataset.video_path(spec), rendered.frames)
        if number == 0:
            _check_readable(dataset.video_path(spec), len(rendered.frames))
        if write_frames:
            _write_frame_folder(frames_dir, layout, spec.video, rendered, first_rgb_frame(rgb_frames))
    return dataset


def _write_split_files(root, classes, specs):
    def write(name, lines):
        with open(os.path.join(root, name), "w", newline="\n") as f:
            f.writelines(line + "\n" for line in lines)

    write("classInd.txt", [f"{label + 1} {name}" for label, name in enumerate(classes)])
    write("trainlist01.txt", [f"{s.class_name}/{s.video}.avi {s.label + 1}" for s in specs if s.subset == "train"])
    write("testlist01.txt", [f"{s.class_name}/{s.video}.avi" for s in specs if s.subset == "test"])


def _write_avi(path, frames):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG AVI files here ({path})")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _check_readable(path, num_frames):
    """Fails early if this OpenCV build cannot decode the AVIs it writes (all would be useless)."""
    capture = cv2.VideoCapture(path)
    try:
        decoded = 0
        while capture.read()[0]:
            decoded += 1
    finally:
        capture.release()
    if decoded != num_frames:
        raise RuntimeError(f"OpenCV wrote {path} but decodes {decoded} of its {num_frames} frames; "
                           "this OpenCV build lacks MJPG AVI support")


def _write_frame_folder(frames_dir, layout, video, rendered, first_rgb):
    def save(relative, image):
        path = os.path.join(frames_dir, relative)
        if not cv2.imwrite(path, image):
            raise RuntimeError(f"could not write {path}")

    for relative in {os.path.dirname(p) for p in (layout.rgb_file(video, 0), *layout.flow_files(video, 0))}:
        os.makedirs(os.path.join(frames_dir, relative), exist_ok=True)
    # With dense_flow numbering RGB image k is frame k + 1, where flow pair k ends.
    for t, frame in enumerate(rendered.frames[first_rgb:]):
        save(layout.rgb_file(video, t), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    for t, flow in enumerate(rendered.flow):
        quantized = quantize_flow(flow)
        x_file, y_file = layout.flow_files(video, t)
        save(x_file, quantized[..., 0])
        save(y_file, quantized[..., 1])


def _check_positive(name, value, minimum, maximum=None):
    if not isinstance(value, (int, np.integer)) or value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise UserError(f"{name} must be an integer {bounds}, got {value!r}")


def _check_size(frame_size):
    try:
        width, height = (int(v) for v in frame_size)
    except (TypeError, ValueError):
        raise UserError(f"frame size must be (width, height), got {frame_size!r}") from None
    if width < 16 or height < 16:
        raise UserError(f"frame size must be at least 16x16, got {width}x{height}")
    return width, height
