"""Flow fields drawn in colour for people: direction as hue, magnitude as brightness.

Hue follows the direction of motion in image coordinates (y down): rightward is red, downward yellow-green,
leftward cyan, upward violet; see `color_wheel` for a legend. Brightness grows linearly with the magnitude
up to `max_magnitude`; no motion is black. The images are RGB uint8, ready for TensorBoard
(`tf.summary.image`) or, after `[..., ::-1]`, for OpenCV's BGR video writers.
"""
import cv2
import numpy as np

from two_stream_tf.flow.quantize import DEFAULT_BOUND, dequantize_flow


def flow_to_color(flow, max_magnitude=None):
    """Draws a flow field in colour.

    Args:
      flow: float `(H, W, 2)`, x then y, pixels per frame.
      max_magnitude: magnitude drawn at full brightness (larger ones saturate); None uses the largest
        magnitude in `flow`, so every image is scaled on its own.

    Returns:
      uint8 RGB `(H, W, 3)`.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got shape {flow.shape}")
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max())
    hsv = np.empty(flow.shape[:2] + (3,), np.uint8)
    # OpenCV's 8-bit hue runs over 0..179 for 0..358 degrees.
    hsv[..., 0] = np.round(angle / 2.0).astype(np.int32) % 180
    hsv[..., 1] = 255
    if max_magnitude > 0:
        hsv[..., 2] = np.round(np.clip(magnitude / max_magnitude, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        hsv[..., 2] = 0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def quantized_flow_to_color(flow_x, flow_y, bound=DEFAULT_BOUND, max_magnitude=None):
    """Draws a quantised flow pair (the uint8 x and y images on disk) in colour.

    Args:
      flow_x, flow_y: uint8 `(H, W)` quantised with `bound` (see `two_stream_tf.flow.quantize`).
      bound: the quantisation bound.
      max_magnitude: as in `flow_to_color`.

    Returns:
      uint8 RGB `(H, W, 3)`.
    """
    flow = np.stack([dequantize_flow(flow_x, bound), dequantize_flow(flow_y, bound)], axis=-1)
    return flow_to_color(flow, max_magnitude)


def color_wheel(size=65):
    """A legend: the colour of every displacement within a disc, centre = no motion.

    Args:
      size: side of the square image in pixels.

    Returns:
      uint8 RGB `(size, size, 3)`; pixels outside the disc are black.
    """
    radius = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([x - radius, y - radius], axis=-1)
    image = flow_to_color(flow, max_magnitude=radius)
    image[np.hypot(flow[..., 0], flow[..., 1]) > radius] = 0
    return image
