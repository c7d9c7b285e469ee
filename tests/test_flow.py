"""Optical flow: recovery of known motion, TV-L1 parameters, object reuse, quantisation, colour drawing."""
import threading

import cv2
import numpy as np
import pytest

from two_stream_tf.errors import UserError
from two_stream_tf.flow.compute import (FLOW_METHODS, TVL1_PARAMETERS, compute_flow, create_optical_flow,
                                        get_optical_flow, to_gray)
from two_stream_tf.flow.quantize import dequantize_flow, quantize_flow
from two_stream_tf.flow.visualize import color_wheel, flow_to_color, quantized_flow_to_color

SIZE = 96
MARGIN = 16  # flow near the borders is unreliable for every method: judge the interior


def translated_pair(dx, dy, size=SIZE, seed=0):
    """Two uint8 frames of a smooth random texture, the second one moved by (dx, dy) pixels."""
    rng = np.random.default_rng(seed)
    pad = 24
    coarse = rng.uniform(0, 255, ((size + 2 * pad) // 4, (size + 2 * pad) // 4)).astype(np.float32)
    texture = cv2.resize(coarse, (size + 2 * pad, size + 2 * pad), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.0)
    # warpAffine with [[1, 0, dx], [0, 1, dy]] writes src(x, y) at (x + dx, y + dy): content moves by +d.
    moved = cv2.warpAffine(texture, np.float32([[1, 0, dx], [0, 1, dy]]), texture.shape[::-1],
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    crop = np.s_[pad:pad + size, pad:pad + size]
    return (np.clip(texture[crop], 0, 255).round().astype(np.uint8),
            np.clip(moved[crop], 0, 255).round().astype(np.uint8))


def interior_error(flow, dx, dy):
    inner = flow[MARGIN:-MARGIN, MARGIN:-MARGIN]
    return float(np.hypot(inner[..., 0] - dx, inner[..., 1] - dy).mean())


@pytest.mark.parametrize("method, tolerance", [("tvl1", 0.25), ("dis", 0.5), ("farneback", 0.5)])
@pytest.mark.parametrize("dx, dy", [(1.5, -0.75), (-2.25, 1.0), (0.5, 3.0)])
def test_dequantised_flow_recovers_known_translation(method, tolerance, dx, dy):
    first, second = translated_pair(dx, dy)
    flow = compute_flow(first, second, method)
    assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
    recovered = dequantize_flow(quantize_flow(flow))
    assert interior_error(recovered, dx, dy) < tolerance
    # Sign convention: x positive = rightward motion, y positive = downward motion.
    inner = recovered[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert np.sign(np.median(inner[..., 0])) == np.sign(dx)
    assert np.sign(np.median(inner[..., 1])) == np.sign(dy)


def test_no_motion_gives_zero_flow_and_quantises_to_the_middle():
    first, _ = translated_pair(0, 0)
    flow = compute_flow(first, first, "dis")
    assert np.abs(flow[MARGIN:-MARGIN, MARGIN:-MARGIN]).mean() < 0.05
    quantized = quantize_flow(flow)
    assert np.median(quantized) == 128  # 255 * 20 / 40 = 127.5, rounded half to even


def test_tvl1_uses_dense_flow_cuda_parameters():
    flow = get_optical_flow("tvl1")
    assert flow.getTau() == pytest.approx(0.25)
    assert flow.getLambda() == pytest.approx(0.15)
    assert flow.getTheta() == pytest.approx(0.3)
    assert flow.getScalesNumber() == 5
    assert flow.getWarpingsNumber() == 5
    assert flow.getEpsilon() == pytest.approx(0.01)
    assert flow.getScaleStep() == pytest.approx(0.8)
    # CUDA "iterations" 300 per warping = inner × outer on the CPU class, with no median filter in between.
    assert flow.getInnerIterations() * flow.getOuterIterations() == 300
    assert flow.getOuterIterations() == TVL1_PARAMETERS.outer_iterations == 1
    assert flow.getMedianFiltering() == 1


def test_flow_objects_are_reused_per_thread_and_give_the_same_flow_as_new_ones():
    assert get_optical_flow("dis") is get_optical_flow("dis")
    other = []
    thread = threading.Thread(target=lambda: other.append(get_optical_flow("dis")))
    thread.start()
    thread.join()
    assert other[0] is not get_optical_flow("dis")
    pairs = [translated_pair(1.0, 0.5, seed=s) for s in (1, 2)]
    reused = [compute_flow(a, b, "farneback") for a, b in pairs]
    fresh = [create_optical_flow("farneback").calc(a, b, None) for a, b in pairs]
    for r, f in zip(reused, fresh):
        np.testing.assert_array_equal(r, f)


def test_colour_frames_are_converted_to_gray_by_channel_order():
    first, second = translated_pair(1.0, -1.0)
    rgb = np.stack([first, first // 2, first // 3], axis=-1)
    assert np.array_equal(to_gray(rgb, "rgb"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert np.array_equal(to_gray(rgb, "bgr"), cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    gray_rgb = np.repeat(first[..., None], 3, axis=-1), np.repeat(second[..., None], 3, axis=-1)
    np.testing.assert_array_equal(compute_flow(*gray_rgb, "dis"), compute_flow(first, second, "dis"))
    with pytest.raises(ValueError, match="differ in size"):
        compute_flow(first, second[:-1], "dis")


def test_unknown_method_is_a_user_error_naming_it():
    with pytest.raises(UserError, match="'sift'.*tvl1, dis, farneback"):
        get_optical_flow("sift")
    assert FLOW_METHODS == ("tvl1", "dis", "farneback")


def test_quantisation_follows_dense_flow():
    values = np.array([-25.0, -20.0, -10.0, 0.0, 10.0, 20.0, 25.0], np.float32)
    np.testing.assert_array_equal(quantize_flow(values), [0, 0, 64, 128, 191, 255, 255])
    np.testing.assert_allclose(dequantize_flow(np.array([0, 128, 255], np.uint8)), [-20.0, 20 / 255, 20.0],
                               atol=1e-5)
    inside = np.linspace(-20, 20, 1001, dtype=np.float32)
    assert np.abs(dequantize_flow(quantize_flow(inside)) - inside).max() <= 20 / 255 + 1e-5


def test_flow_colours_direction_as_hue_and_magnitude_as_value():
    flow = np.array([[[1, 0], [0, 1], [-1, 0], [0, -1]],
                     [[0.5, 0], [0, 0], [3, 0], [0, 0]]], np.float32)
    image = flow_to_color(flow, max_magnitude=1.0).astype(int)
    assert image.shape == (2, 4, 3)
    np.testing.assert_allclose(image[0, 0], [255, 0, 0], atol=1)      # right: red
    np.testing.assert_allclose(image[0, 1], [128, 255, 0], atol=1)    # down: yellow-green
    np.testing.assert_allclose(image[0, 2], [0, 255, 255], atol=1)    # left: cyan
    np.testing.assert_allclose(image[0, 3], [128, 0, 255], atol=1)    # up: violet
    np.testing.assert_allclose(image[1, 0], [128, 0, 0], atol=1)      # half the magnitude, half the value
    np.testing.assert_array_equal(image[1, 1], [0, 0, 0])             # no motion: black
    np.testing.assert_allclose(image[1, 2], [255, 0, 0], atol=1)      # beyond max_magnitude saturates
    # Without max_magnitude the largest motion in the field is drawn at full brightness.
    assert flow_to_color(flow)[1, 2].tolist() == [255, 0, 0]
    assert flow_to_color(flow).dtype == np.uint8


def test_quantised_flow_and_colour_wheel_use_the_same_colours():
    x = np.full((2, 2), 255, np.uint8)  # +20 px
    y = np.full((2, 2), 128, np.uint8)  # ~0 px
    image = quantized_flow_to_color(x, y, max_magnitude=20.0)
    np.testing.assert_allclose(image[0, 0], [255, 0, 0], atol=2)
    wheel = color_wheel(65)
    assert wheel.shape == (65, 65, 3)
    np.testing.assert_array_equal(wheel[32, 32], [0, 0, 0])     # centre: no motion
    np.testing.assert_allclose(wheel[32, 64], [255, 0, 0], atol=1)  # right edge: red
    np.testing.assert_array_equal(wheel[0, 0], [0, 0, 0])       # outside the disc
