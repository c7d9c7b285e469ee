"""Flow quantisation to 8 bits, the convention of dense_flow / denseflow (see DESIGN.md).

A flow component v (pixels per frame) is clipped to [-bound, bound] and mapped linearly to 0..255 with
rounding, `round(255 * (v + bound) / (2 * bound))`; it is stored as a grayscale JPEG. Decoding maps
q back to `q / 255 * 2 * bound - bound`. With bound 20 one step is 40/255 ≈ 0.157 px.
"""
import numpy as np

DEFAULT_BOUND = 20.0


def quantize_flow(flow, bound=DEFAULT_BOUND):
    """Quantises flow to uint8 as dense_flow does.

    Args:
      flow: float array of any shape (typically `(H, W, 2)` with x then y), in pixels per frame.
      bound: clipping bound B; values beyond ±B saturate at 0 or 255.

    Returns:
      uint8 array of the same shape.
    """
    flow = np.asarray(flow, dtype=np.float32)
    scaled = 255.0 * (np.clip(flow, -bound, bound) + bound) / (2.0 * bound)
    # cvRound rounds half to even like np.rint; the clip keeps float error at ±B inside 0..255.
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def dequantize_flow(quantized, bound=DEFAULT_BOUND):
    """Maps quantised flow (uint8, 0..255) back to pixels per frame as float32."""
    return np.asarray(quantized, dtype=np.float32) / 255.0 * (2.0 * bound) - bound
