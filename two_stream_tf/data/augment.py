"""Crops, flips and normalisation of RGB frames and flow stacks, as TensorFlow ops (safe in `tf.data`).

Crop windows are `(top, left, height, width)` int32 in frame pixels; a window is decoded (or sliced),
mirrored if asked, normalised and resized to `image_size × image_size`.

Training: TSN's multi-scale corner crop (`multiscale_crop_window`). The crop side is the frame's short
side times one of `scales` (1, .875, .75, .66) for height and for width, the two scale indices at most
`max_distort` (1) steps apart; the window sits at one of 5 fixed places (4 corners, centre) or 13 with
`more_fixed_crops` (also the 4 edge midpoints and the 4 quarter points), on a grid of quarter steps of the
slack `frame - crop`. A random horizontal flip follows.

Testing (`test_crop_windows`): 1 crop = the centre `c × c` window, `c = min(image_size, short side)`
(frames smaller than `image_size` give their largest square, resized up); 3 crops = TSN's 3-crop: squares
of the short side at the start, centre and end of the long side (left/centre/right, or top/centre/bottom),
resized; 10 crops = the 4 corners and the centre, `c × c`, then the same 5 mirrored.

Flip of flow (DESIGN.md): mirror the stack AND negate x, `x -> 255 - x` on the quantised values (a
bitwise NOT of the uint8), y unchanged, as TSN's `flow_stack_oversample` does. Channels of a flow stack are
`[x1, y1, x2, y2, …]`.

Normalisation: RGB "tf" -> [-1, 1]; "torch" -> ImageNet mean/std; "caffe" -> BGR minus the ImageNet
mean; "none" -> float 0..255; or a callable applied to float RGB 0..255. Flow "symmetric" ->
`(q - 128) / 128` in [-1, 127/128]; "caffe" -> `q - 128` (TSN's Caffe input); "none" -> float 0..255.
Both centred ones map q = 128, the level of zero motion in dense_flow's quantisation, to exactly 0 (a
mirrored x plane of zero motion is `255 - 128 = 127`, one level below, as in TSN). Resizing is bilinear
(half-pixel centres) and commutes with these per-channel affine maps, so they are applied wherever it
is cheapest.

Frames stored at another size than the protocol's (`frame_resize`, 340×256) are first resized to it,
exactly as OpenCV does, when the pipelines are given a `frame_size`; crop windows are then those of the
resized frame.
"""
import tensorflow as tf

SCALES = (1.0, 0.875, 0.75, 0.66)
# Fixed crop places as (row, column) in quarters of the slack (frame size minus crop size).
FIXED_PLACES = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))
MORE_FIXED_PLACES = FIXED_PLACES + ((0, 2), (4, 2), (2, 0), (2, 4), (1, 1), (1, 3), (3, 1), (3, 3))
TEST_CROPS = (1, 3, 10)

RGB_NORMALIZATIONS = ("tf", "torch", "caffe", "none")
FLOW_NORMALIZATIONS = ("symmetric", "caffe", "none")
# (zero level, scale) of each flow normalisation: value = (q - zero) * scale.
_FLOW_AFFINE = {"symmetric": (128.0, 1.0 / 128.0), "caffe": (128.0, 1.0), "none": (0.0, 1.0)}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


# --- Crop windows ---------------------------------------------------------------------------------------

def scale_pairs(num_scales, max_distort=1):
    """(height scale index, width scale index) pairs at most `max_distort` apart, as a Python list."""
    return [(i, j) for i in range(num_scales) for j in range(num_scales) if abs(i - j) <= max_distort]


def multiscale_crop_window(frame_shape, seed, *, scales=SCALES, max_distort=1, more_fixed_crops=False):
    """A random TSN multi-scale corner-crop window.

    Args:
      frame_shape: int `(2,)` or longer, frame height and width first.
      seed: int `(2,)` stateless seed.
      scales: crop side as fractions of the frame's short side.
      max_distort: largest step between the height and width scale indices (aspect jitter).
      more_fixed_crops: 13 fixed places instead of 5.

    Returns:
      int32 `(4,)`: top, left, height, width.
    """
    height = tf.cast(frame_shape[0], tf.int32)
    width = tf.cast(frame_shape[1], tf.int32)
    pairs = tf.constant(scale_pairs(len(scales), max_distort), tf.int32)
    places = tf.constant(MORE_FIXED_PLACES if more_fixed_crops else FIXED_PLACES, tf.int32)
    draw = tf.random.stateless_uniform([2], seed, dtype=tf.float32)
    pair = pairs[_pick(draw[0], pairs.shape[0])]
    place = places[_pick(draw[1], places.shape[0])]
    sides = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * tf.constant(scales, tf.float32), tf.int32)
    crop_height = tf.minimum(tf.maximum(sides[pair[0]], 1), height)
    crop_width = tf.minimum(tf.maximum(sides[pair[1]], 1), width)
    top = (height - crop_height) // 4 * place[0]
    left = (width - crop_width) // 4 * place[1]
    return tf.stack([top, left, crop_height, crop_width])


def random_flip(seed):
    """A fair coin from a stateless seed: whether to mirror the sample."""
    return tf.random.stateless_uniform([], seed) < 0.5


def center_window(frame_shape, size):
    """The centred square window of side `min(size, height, width)`, int32 `(4,)`."""
    height = tf.cast(frame_shape[0], tf.int32)
    width = tf.cast(frame_shape[1], tf.int32)
    side = tf.minimum(size, tf.minimum(height, width))
    return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def test_crop_mirrored(crops):
    """Which of the `crops` test views are mirrored, as a Python tuple (the last 5 of 10)."""
    if crops not in TEST_CROPS:
        raise ValueError(f"crops must be one of {TEST_CROPS}, got {crops}")
    return (False,) * 5 + (True,) * 5 if crops == 10 else (False,) * crops


def test_crop_windows(frame_shape, image_size, crops):
    """The test-time crop windows of a frame and whether each view is mirrored.

    Args:
      frame_shape: int `(2,)` or longer, frame height and width first.
      image_size: the side the views are resized to.
      crops: 1 (centre), 3 (TSN 3-crop along the long side) or 10 (4 corners + centre, and mirrors).

    Returns:
      (windows int32 `(crops, 4)` as (top, left, height, width), mirrored bool `(crops,)`).
    """
    mirrored = tf.constant(test_crop_mirrored(crops))
    height = tf.cast(frame_shape[0], tf.int32)
    width = tf.cast(frame_shape[1], tf.int32)
    if crops == 1:
        return center_window(frame_shape, image_size)[None], mirrored
    if crops == 3:
        side = tf.minimum(height, width)
        slack_y, slack_x = height - side, width - side
        steps = tf.constant([0, 1, 2], tf.int32)
        windows = tf.stack([steps * slack_y // 2, steps * slack_x // 2, tf.fill([3], side), tf.fill([3], side)], 1)
        return windows, mirrored
    side = tf.minimum(image_size, tf.minimum(height, width))
    bottom, right = height - side, width - side
    tops = tf.stack([0, 0, bottom, bottom, bottom // 2])
    lefts = tf.stack([0, right, 0, right, right // 2])
    windows = tf.stack([tops, lefts, tf.fill([5], side), tf.fill([5], side)], 1)
    return tf.concat([windows, windows], 0), mirrored


def bounding_window(windows):
    """The smallest window holding all `windows` (int32 `(n, 4)`), int32 `(4,)`."""
    top = tf.reduce_min(windows[:, 0])
    left = tf.reduce_min(windows[:, 1])
    bottom = tf.reduce_max(windows[:, 0] + windows[:, 2])
    right = tf.reduce_max(windows[:, 1] + windows[:, 3])
    return tf.stack([top, left, bottom - top, right - left])


def _pick(uniform, count):
    return tf.minimum(tf.cast(uniform * count, tf.int32), count - 1)


# --- Normalisation ----------------------------------------------------------------------------------------

def check_rgb_normalization(normalization):
    """Raises ValueError unless `normalization` is a known RGB normalisation name or a callable."""
    if not callable(normalization) and normalization not in RGB_NORMALIZATIONS:
        raise ValueError(f"rgb_normalization must be one of {RGB_NORMALIZATIONS} or a callable, got {normalization!r}")


def check_flow_normalization(normalization):
    """Raises ValueError unless `normalization` is a known flow normalisation name."""
    if normalization not in FLOW_NORMALIZATIONS:
        raise ValueError(f"flow_normalization must be one of {FLOW_NORMALIZATIONS}, got {normalization!r}")


def normalize_rgb(images, normalization):
    """Normalises float RGB 0..255 (channels last) as a backbone expects.

    Args:
      images: float32 `(..., 3)` RGB in 0..255.
      normalization: "tf", "torch", "caffe", "none", or a callable taking and returning float RGB.

    Returns:
      float32 of the same shape ("caffe" returns BGR).
    """
    check_rgb_normalization(normalization)
    if callable(normalization):
        return normalization(images)
    if normalization == "tf":
        return images / 127.5 - 1.0
    if normalization == "torch":
        # (x / 255 - mean) / std as one scale and one shift.
        scale = tf.constant([1.0 / (255.0 * s) for s in _IMAGENET_STD], tf.float32)
        shift = tf.constant([-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD)], tf.float32)
        return images * scale + shift
    if normalization == "caffe":
        return tf.reverse(images, [-1]) - tf.constant(_CAFFE_MEAN_BGR, tf.float32)
    return images


def rgb_affine(normalization):
    """A named RGB normalisation as `(scale, shift, bgr)`: `out[c] = v[c'] * scale[c] + shift[c]` of float
    RGB 0..255, where `c' = 2 - c` when `bgr` (channels reversed, as "caffe" does) and `c' = c` otherwise.
    None for a callable. The compiled RGB kernel applies it after resizing; `normalize_rgb` is the
    reference."""
    check_rgb_normalization(normalization)
    if callable(normalization):
        return None
    if normalization == "tf":
        return (1.0 / 127.5,) * 3, (-1.0,) * 3, False
    if normalization == "torch":
        return (tuple(1.0 / (255.0 * s) for s in _IMAGENET_STD),
                tuple(-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD)), False)
    if normalization == "caffe":
        return (1.0,) * 3, tuple(-m for m in _CAFFE_MEAN_BGR), True
    return (1.0,) * 3, (0.0,) * 3, False


def flow_affine(normalization):
    """A flow normalisation as `(zero, scale)`: quantised q becomes `(q - zero) * scale`."""
    check_flow_normalization(normalization)
    return _FLOW_AFFINE[normalization]


def normalize_flow(stacks, normalization="symmetric"):
    """Normalises float quantised flow 0..255: "symmetric" -> `(q - 128) / 128`; "caffe" -> `q - 128`;
    "none" -> unchanged."""
    zero, scale = flow_affine(normalization)
    return (stacks - zero) * scale


def denormalize_flow(values, normalization="symmetric"):
    """The quantised levels (float) of normalised flow: the inverse of `normalize_flow`."""
    zero, scale = flow_affine(normalization)
    return values / scale + zero


# --- Views ----------------------------------------------------------------------------------------------------

def mirror_flow_planes(planes):
    """Mirrors quantised flow planes left-right and negates x (`255 - q`), keeping y.

    Args:
      planes: uint8 `(..., 2L, H, W)`, planes in `[x1, y1, x2, y2, …]` order.

    Returns:
      uint8 of the same shape.
    """
    shape = tf.shape(planes)
    # Reversing the last axis of a 2-D view is a fast row copy; on the 4-D tensor it is a per-byte loop.
    mirrored = tf.reshape(tf.reverse(tf.reshape(planes, [-1, shape[-1]]), [1]), shape)
    return tf.bitwise.bitwise_xor(mirrored, _x_mask(planes.shape[-3]))


def flow_view(planes, flip, image_size, normalization="symmetric"):
    """One flow stack view: uint8 planes of a crop window -> a normalised `image_size²` stack.

    Args:
      planes: uint8 `(..., 2L, h, w)`, the crop window of each plane, `[x1, y1, …]` order.
      flip: bool scalar (tensor or Python), mirror the view (and negate x).
      image_size: output side.
      normalization: "symmetric", "caffe" or "none" (`FLOW_NORMALIZATIONS`).

    Returns:
      float32 `(..., image_size, image_size, 2L)`.
    """
    zero, scale = flow_affine(normalization)
    planes = tf.convert_to_tensor(planes, tf.uint8)
    shape = tf.shape(planes)
    flat = tf.reshape(planes, tf.concat([[-1], shape[-3:]], 0))
    channels_last = _flow_channels_last(flat, tf.convert_to_tensor(flip, tf.bool), tf.constant(zero, tf.float32),
                                        tf.constant(scale, tf.float32))
    views = tf.reshape(resize(channels_last, image_size),
                       tf.concat([shape[:-3], [image_size, image_size, shape[-3]]], 0))
    return tf.ensure_shape(views, planes.shape[:-3].concatenate([image_size, image_size, planes.shape[-3]]))


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _flow_channels_last(planes, flip, zero, scale):
    """uint8 planes `(N, 2L, h, w)` -> float32 `(N, h, w, 2L)`, mirrored with x negated if `flip`, each
    value q mapped to `(q - zero) * scale`.

    XLA fuses the mirror, the x negation, the interleave to channels last and the float conversion into one
    pass that reads the uint8 planes once and writes the float crop once. As separate TensorFlow ops they
    were four passes, and the uint8 transpose alone (a per-byte loop) cost as much as the resize after it.
    XLA compiles it once per shape of `planes` (10 crop sizes with TSN's scales on one frame size). The
    resize stays TensorFlow's: a bilinear resize written with XLA gathers was slower than the whole chain.
    """
    mirrored = tf.bitwise.bitwise_xor(tf.reverse(planes, [3]), _x_mask(tf.shape(planes)[1]))
    quantised = tf.where(flip, mirrored, planes)
    values = tf.transpose(tf.cast(quantised, tf.float32), [0, 2, 3, 1])
    # Exact for the named normalisations: q - zero is an integer and the scales are powers of two.
    return (values - zero) * scale


def _x_mask(num_planes):
    # 255 on the x planes, 0 on the y planes, shaped to broadcast over `(N, 2L, h, w)`: q XOR 255 == 255 - q.
    return tf.reshape(tf.tile(tf.constant([255, 0], tf.uint8), [num_planes // 2]), [-1, 1, 1])


def _dequantize(images, low, high):
    # Maps uint8 q to low + q * (high - low) / 255 in one pass (a cast and an affine map in one op).
    return tf.raw_ops.Dequantize(input=tf.bitcast(images, tf.quint8), min_range=low, max_range=high,
                                 mode="MIN_COMBINED")


def rgb_view(images, flip, image_size, normalization="tf"):
    """One RGB view: uint8 crop window(s) -> normalised `image_size²` float images.

    Args:
      images: uint8 `(..., h, w, 3)` RGB.
      flip: bool scalar (tensor or Python): mirror the view.
      image_size: output side.
      normalization: see `normalize_rgb`.

    Returns:
      float32 `(..., image_size, image_size, 3)`.
    """
    check_rgb_normalization(normalization)
    if isinstance(flip, bool):
        images = tf.reverse(images, [-2]) if flip else images
    else:
        images = tf.cond(flip, lambda: tf.reverse(images, [-2]), lambda: images)
    # Every float pass over a view costs memory traffic, the main cost after decoding: "tf" and "none" map
    # uint8 to their range in the one Dequantize pass, the others resize the uint8 crop straight to float.
    if normalization in ("tf", "none"):
        low, high = (-1.0, 1.0) if normalization == "tf" else (0.0, 255.0)
        return resize(_dequantize(images, low, high), image_size)
    return normalize_rgb(resize(images, image_size), normalization)


def resize(images, image_size):
    """Bilinear resize (half-pixel centres) of `(..., h, w, C)` to float32 `image_size²`; exact sizes pass through."""
    shape = tf.shape(images)
    same = tf.logical_and(tf.equal(shape[-3], image_size), tf.equal(shape[-2], image_size))

    def scaled():
        return tf.image.resize(images, [image_size, image_size], method="bilinear")

    def unchanged():
        return tf.cast(images, tf.float32)

    resized = tf.cond(same, unchanged, scaled)
    return tf.ensure_shape(resized, images.shape[:-3].concatenate([image_size, image_size, images.shape[-1]]))


def crop_planes(planes, window, offset=None):
    """Slices a window out of planes or images.

    Args:
      planes: `(..., H, W)` flow planes (`channels_last=False`) — use `crop_images` for `(..., H, W, C)`.
      window: int32 `(4,)` top, left, height, width in frame pixels.
      offset: int32 `(2,)` frame position of `planes[..., 0, 0]` (when planes were decoded from a window).
    """
    top, left = window[0], window[1]
    if offset is not None:
        top, left = top - offset[0], left - offset[1]
    return planes[..., top:top + window[2], left:left + window[3]]


def crop_images(images, window, offset=None):
    """Slices a window out of channels-last images `(..., H, W, C)` (see `crop_planes`)."""
    top, left = window[0], window[1]
    if offset is not None:
        top, left = top - offset[0], left - offset[1]
    return images[..., top:top + window[2], left:left + window[3], :]
