"""Flow quantisation to 8 bits, the convention of dense_flow / denseflow (see DESIGN.md).

A flow component v (pixels per frame, float32) is mapped to 0..255 as dense_flow's `CAST` macro does:
255 above `bound`, 0 below `-bound`, else `cvRound(255 * (v + bound) / (2 * bound))` computed in double
precision, where OpenCV's `cvRound` rounds half to even (the x86 conversion under the default rounding
mode, as `np.rint`). The double matters: in float32 the product lands on the other side of a half step
for about one value in 10^5 near half steps. The image is stored as a grayscale JPEG. Decoding maps q
back to `q / 255 * 2 * bound - bound`. With bound 20 one step is 40/255 ≈ 0.157 px; q = 128 is
+0.078 px, the level the pipelines' flow normalisations map to 0.
"""
import numpy as np

DEFAULT_BOUND = 20.0


def quantize_flow(flow, bound=DEFAULT_BOUND):
    """Quantises flow to uint8 as dense_flow does.

    Args:
      flow: float array of any shape (typically `(H, W, 2)` with x then y), in pixels per frame; taken
        as float32, as dense_flow's flow is.
      bound: clipping bound B; values beyond ±B saturate at 0 or 255.

    Returns:
      uint8 array of the same shape.
    """
    # dense_flow's flow is a float32 Mat; its CAST promotes each value to double.
    flow = np.asarray(flow, dtype=np.float32).astype(np.float64)
    bound = float(bound)
    scaled = np.rint(255.0 * (flow + bound) / (2.0 * bound))
    quantized = np.where(flow > bound, 255.0, np.where(flow < -bound, 0.0, scaled))
    return quantized.astype(np.uint8)


def dequantize_flow(quantized, bound=DEFAULT_BOUND):
    """Maps quantised flow (uint8, 0..255) back to pixels per frame as float32."""
    return np.asarray(quantized, dtype=np.float32) / 255.0 * (2.0 * bound) - bound
