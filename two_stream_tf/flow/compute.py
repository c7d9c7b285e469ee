"""Dense optical flow between two frames with OpenCV: TV-L1, DIS and Farneback.

Flow is returned as float32 `(H, W, 2)` in pixels per frame, channel 0 = x (positive = rightward motion),
channel 1 = y (positive = downward motion), measured at the pixels of the first frame:
`first[y, x] ≈ second[y + flow_y, x + flow_x]`.

Methods:

  tvl1       Dual TV-L1 (Zach et al. 2007), the flow of the two-stream and TSN papers; slow on a CPU
             (~1 frame pair/s at 340×256 on one core).
  dis        Dense Inverse Search (Kroeger et al. 2016), medium preset; ~50× faster, a little less accurate.
  farneback  Farneback's polynomial expansion, OpenCV defaults.

TV-L1 parameters. TSN's flow was made by dense_flow with OpenCV's CUDA class `cv::cuda::OpticalFlowDual_TVL1`
and its defaults: tau 0.25, lambda 0.15, theta 0.3, nscales 5, warps 5, epsilon 0.01, iterations 300,
scaleStep 0.8 (denseflow uses the same class and defaults). The CPU class `cv2.optflow.DualTVL1OpticalFlow`
takes the same tau, lambda, theta, nscales, warps, epsilon and scaleStep, but splits the CUDA class's
`iterations` into two loops: for every warping it runs up to `outerIterations` rounds of up to
`innerIterations` primal-dual updates each, and before every round it median-filters the flow
(`medianFiltering`, 5×5 by default; the CUDA class has no median filter). Both stop a warping early once the
squared update falls below `epsilon² · pixels`. Its defaults, 10 outer × 30 inner with a 5×5 median,
also make 300 updates per warping, but not the same ones. We set 1 outer × 300 inner with the median filter
off (`medianFiltering=1`), which is the CUDA loop: the same 300 updates per warping, the same stopping rule
(the CUDA class only evaluates it less often). Like the CUDA class, the CPU class scales uint8 input to
0..255 floats, so the same lambda weighs the data term the same way.

Creating a flow object allocates its buffers, so objects are created once per thread and reused
(`get_optical_flow`); `compute_flow` uses them.
"""
import dataclasses
import threading

import cv2
import numpy as np

from two_stream_tf.errors import UserError

FLOW_METHODS = ("tvl1", "dis", "farneback")


@dataclasses.dataclass(frozen=True)
class TVL1Parameters:
    """Parameters of OpenCV's CPU Dual TV-L1, set to match dense_flow's CUDA TV-L1 (see the module doc).

    Attributes:
      tau: time step of the numerical scheme.
      lambda_: weight of the data term (smaller = smoother flow).
      theta: coupling between the two sub-problems.
      nscales: pyramid levels.
      warps: warpings per pyramid level.
      epsilon: stopping threshold.
      inner_iterations, outer_iterations: updates per warping = inner × outer (CUDA "iterations" = 300).
      scale_step: pyramid down-scaling factor.
      median_filtering: median filter size between outer iterations; 1 turns it off, as in the CUDA class.
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 300
    outer_iterations: int = 1
    scale_step: float = 0.8
    median_filtering: int = 1


TVL1_PARAMETERS = TVL1Parameters()


def _check_method(method):
    if method not in FLOW_METHODS:
        raise UserError(f"unknown optical flow method {method!r}: use one of {', '.join(FLOW_METHODS)}")


def create_optical_flow(method="tvl1", tvl1_parameters=TVL1_PARAMETERS):
    """Creates a new OpenCV dense optical flow object.

    Prefer `get_optical_flow`, which reuses one object per thread.

    Args:
      method: "tvl1", "dis" or "farneback".
      tvl1_parameters: `TVL1Parameters` for "tvl1".

    Returns:
      A `cv2.DenseOpticalFlow`; call `.calc(first_gray, second_gray, None)` on uint8 grayscale frames.
    """
    _check_method(method)
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if method == "farneback":
        return cv2.FarnebackOpticalFlow_create()
    p = tvl1_parameters
    # Setters rather than create() keywords: the keyword names differ between OpenCV releases.
    flow = cv2.optflow.DualTVL1OpticalFlow_create()
    flow.setTau(p.tau)
    flow.setLambda(p.lambda_)
    flow.setTheta(p.theta)
    flow.setScalesNumber(p.nscales)
    flow.setWarpingsNumber(p.warps)
    flow.setEpsilon(p.epsilon)
    flow.setInnerIterations(p.inner_iterations)
    flow.setOuterIterations(p.outer_iterations)
    flow.setScaleStep(p.scale_step)
    flow.setMedianFiltering(p.median_filtering)
    flow.setGamma(0.0)
    flow.setUseInitialFlow(False)
    return flow


_per_thread = threading.local()


def get_optical_flow(method="tvl1"):
    """Returns this thread's reusable flow object for `method` (created on first use).

    OpenCV flow objects keep per-call buffers, so one object must not be shared by threads; processes and
    threads each get their own.
    """
    _check_method(method)
    cache = getattr(_per_thread, "flows", None)
    if cache is None:
        cache = _per_thread.flows = {}
    if method not in cache:
        cache[method] = create_optical_flow(method)
    return cache[method]


def to_gray(frame, channel_order="rgb"):
    """Converts a frame to the uint8 grayscale image the flow methods take.

    Args:
      frame: uint8 `(H, W)`, `(H, W, 1)` or `(H, W, 3)`.
      channel_order: "rgb" or "bgr" (what OpenCV decodes), for 3-channel frames.

    Returns:
      uint8 `(H, W)`.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return frame
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W) or (H, W, 3), got shape {frame.shape}")
    code = {"rgb": cv2.COLOR_RGB2GRAY, "bgr": cv2.COLOR_BGR2GRAY}[channel_order]
    return cv2.cvtColor(frame, code)


def compute_flow(first, second, method="tvl1", channel_order="rgb"):
    """Dense optical flow from `first` to `second`.

    Args:
      first, second: uint8 frames of the same size, grayscale `(H, W)` or colour `(H, W, 3)`.
      method: "tvl1", "dis" or "farneback".
      channel_order: "rgb" or "bgr", for colour frames.

    Returns:
      float32 `(H, W, 2)`: x then y displacement in pixels; positive x = rightward, positive y = downward.
    """
    first = to_gray(first, channel_order)
    second = to_gray(second, channel_order)
    if first.shape != second.shape:
        raise ValueError(f"frames differ in size: {first.shape} and {second.shape}")
    return get_optical_flow(method).calc(first, second, None)
