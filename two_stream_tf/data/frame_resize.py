"""Resizing stored frames to the protocol frame size (340×256) exactly as OpenCV's `cv2.resize` does.

TSN's Caffe tools resize every frame (RGB and each flow plane) to 340×256 with `cv2.resize(x, (340, 256))`
(bilinear, `INTER_LINEAR`) before cropping, in training and at test time. Frames stored at that size are
unchanged; others (the mmaction2 sample frames at 320×240, dumps of other tools) must go through the same
resize to give the same views. OpenCV resizes uint8 images in fixed point, and its rounding is not that of
a float bilinear resize (a float resize rounded to uint8 differs by one level in ~1 % of the pixels), so
this module reproduces the integer arithmetic, value for value:

- Column taps: `fx = float32((x + 0.5) * W / w - 0.5)`, `sx = floor(fx)`, `fx -= sx`; a tap left of the
  first column or on/after the last one is clamped there with `fx = 0`. Weights
  `round(2048 (1 - fx))`, `round(2048 fx)` (round half to even), applied to the uint8 pixels in int32.
- Row taps: the same formula without the clamp of the weights (only the source rows are clipped to the
  frame), so the first and last rows mix a row with itself.
- Rows: `((b0 (r0 >> 4)) >> 16) + ((b1 (r1 >> 4)) >> 16) + 2) >> 2`, OpenCV's SIMD vertical pass.

Checked against `cv2.resize` on random and constant images of many sizes (tests/test_frame_resize.py).
The compiled training kernels (`native/views.cc`) implement the same arithmetic.
"""
import tensorflow as tf

PROTOCOL_FRAME_SIZE = (256, 340)  # (height, width): TSN's frame_size=(340, 256) in OpenCV's (w, h) order
_COEF_SCALE = 2048.0  # OpenCV's INTER_RESIZE_COEF_SCALE


def _taps(in_size, out_size, clamp_weights):
    """int32 lower and upper source indices and int32 weights of the output positions of one axis."""
    in_size = tf.cast(in_size, tf.int32)
    scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    position = tf.cast((tf.range(out_size, dtype=tf.float64) + 0.5) * scale - 0.5, tf.float32)
    lower = tf.floor(position)
    fraction = position - lower
    lower = tf.cast(lower, tf.int32)
    if clamp_weights:
        before = lower < 0
        fraction = tf.where(before, 0.0, fraction)
        lower = tf.where(before, 0, lower)
        after = lower >= in_size - 1
        fraction = tf.where(after, 0.0, fraction)
        lower = tf.where(after, in_size - 1, lower)
    upper = tf.clip_by_value(lower + 1, 0, in_size - 1)
    lower = tf.clip_by_value(lower, 0, in_size - 1)
    weight_lower = tf.cast(tf.round((1.0 - fraction) * _COEF_SCALE), tf.int32)
    weight_upper = tf.cast(tf.round(fraction * _COEF_SCALE), tf.int32)
    return lower, upper, weight_lower, weight_upper


def cv_resize(images, size, *, channels_last=True):
    """Resizes uint8 images as `cv2.resize(image, (width, height))` (INTER_LINEAR) does, value for value.

    Args:
      images: uint8 `(..., H, W, C)` (`channels_last`) or `(..., H, W)` planes (`channels_last=False`).
      size: `(height, width)` of the output, Python ints.

    Returns:
      uint8 of the same rank, `(..., height, width[, C])`.
    """
    height, width = int(size[0]), int(size[1])
    images = tf.convert_to_tensor(images, tf.uint8)
    row_axis = images.shape.rank - (3 if channels_last else 2)
    shape = tf.shape(images)
    xs = _taps(shape[row_axis + 1], width, True)
    ys = _taps(shape[row_axis], height, False)
    pixels = tf.cast(images, tf.int32)

    def weights(values, axis):  # int32 (n,) -> broadcastable along `axis` of the pixels
        rank = images.shape.rank
        return tf.reshape(values, [-1] + [1] * (rank - axis - 1))

    rows = (tf.gather(pixels, xs[0], axis=row_axis + 1) * weights(xs[2], row_axis + 1)
            + tf.gather(pixels, xs[1], axis=row_axis + 1) * weights(xs[3], row_axis + 1))
    top = tf.bitwise.right_shift(tf.gather(rows, ys[0], axis=row_axis), 4)
    bottom = tf.bitwise.right_shift(tf.gather(rows, ys[1], axis=row_axis), 4)
    value = (tf.bitwise.right_shift(top * weights(ys[2], row_axis), 16)
             + tf.bitwise.right_shift(bottom * weights(ys[3], row_axis), 16) + 2)
    return tf.cast(tf.clip_by_value(tf.bitwise.right_shift(value, 2), 0, 255), tf.uint8)


def to_frame_size(images, frame_size, *, channels_last=True):
    """`images` at `frame_size` (height, width): unchanged when they already are, else `cv_resize`d.

    Args:
      images: uint8 `(..., H, W, C)` or planes `(..., H, W)` (`channels_last=False`).
      frame_size: `(height, width)` or None (keep the stored size).
    """
    if frame_size is None:
        return images
    row_axis = images.shape.rank - (3 if channels_last else 2)
    shape = tf.shape(images)
    same = tf.logical_and(tf.equal(shape[row_axis], frame_size[0]), tf.equal(shape[row_axis + 1], frame_size[1]))
    return tf.cond(same, lambda: images, lambda: cv_resize(images, frame_size, channels_last=channels_last))


def check_frame_size(frame_size):
    """`frame_size` as a `(height, width)` tuple of positive ints, or None; ValueError otherwise."""
    if frame_size is None:
        return None
    try:
        height, width = (int(value) for value in frame_size)
    except (TypeError, ValueError):
        raise ValueError(f"frame_size must be (height, width) or None, got {frame_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"frame_size must be positive, got {frame_size!r}")
    return height, width

