"""Frames of a video prepared as the training data was, and their optical flow computed on the fly.

`FrameStore` takes decoded frames one by one and does what data preparation
(`two_stream_tf.preparation.extract`) does before writing JPEGs: resize to the prepared size (340×256 by
default, bilinear), convert to grayscale, compute the flow of consecutive frames with the same OpenCV
method objects (`two_stream_tf.flow.compute`) and quantise it with the same bound
(`two_stream_tf.flow.quantize`). Pair i is the motion from frame i to frame i + 1.

Flow runs in a thread pool (`FlowWorkers`, one reusable OpenCV flow object per thread; OpenCV releases
the GIL), so flow of several pairs — and decoding in the caller's thread — proceed in parallel. A pair
is computed once, when first asked for (`request`), and kept until `evict_before` drops it.

`Timings` adds up the seconds spent in each stage, across threads.
"""
import collections
import concurrent.futures
import contextlib
import os
import threading
import time

import cv2
import numpy as np

from two_stream_tf.flow.compute import get_optical_flow
from two_stream_tf.flow.quantize import quantize_flow


class Timings:
    """Seconds spent per stage (summed over threads), thread-safe.

    Stages used by prediction: "decode", "resize", "flow", "preprocess", "spatial", "temporal", "models"
    (a fused two-stream model), "annotate".
    """

    def __init__(self):
        self._seconds = collections.defaultdict(float)
        self._lock = threading.Lock()

    def add(self, stage, seconds):
        with self._lock:
            self._seconds[stage] += seconds

    @contextlib.contextmanager
    def measure(self, stage):
        """Adds the time spent in the `with` block to `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def as_dict(self):
        with self._lock:
            return dict(self._seconds)


class FlowWorkers:
    """A thread pool computing quantised optical flow of grayscale frame pairs.

    The threads live as long as the pool, so each keeps its OpenCV flow object (and its buffers) from one
    video to the next.

    Args:
      method: "tvl1", "dis" or "farneback" (`two_stream_tf.flow.compute`).
      bound: quantisation bound in pixels (`two_stream_tf.flow.quantize`).
      workers: threads; None uses the CPUs this process may run on.
    """

    def __init__(self, method, bound, workers=None):
        self.method, self.bound = method, bound
        get_optical_flow(method)  # fail early (UserError) on an unknown method
        self.workers = workers or _available_cpus()
        self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="flow")

    def _compute(self, first, second, timings):
        started = time.perf_counter()
        flow = quantize_flow(get_optical_flow(self.method).calc(first, second, None), self.bound)
        if timings is not None:
            timings.add("flow", time.perf_counter() - started)
        return flow

    def submit(self, first, second, timings=None):
        """Starts computing the flow from `first` to `second` (uint8 gray `(H, W)`).

        Args:
          first, second: uint8 grayscale frames `(H, W)`.
          timings: a `Timings` to add the time to (stage "flow").

        Returns:
          A future of the quantised flow, uint8 `(H, W, 2)`, x then y.
        """
        return self._executor.submit(self._compute, first, second, timings)

    def close(self):
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _available_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class FrameStore:
    """Frames of one video by index — resized as prepared, in BGR and gray — and their flow pairs.

    Args:
      output_size: function `(width, height) -> (width, height)` giving the prepared frame size, e.g.
        `ExtractionSettings.output_size`.
      flow_workers: a `FlowWorkers`, or None when no flow is needed.
      timings: a `Timings` ("resize" stage).
      keep_color: keep the colour frames (needed by the spatial stream).
    """

    def __init__(self, output_size, flow_workers=None, timings=None, keep_color=True):
        self._output_size = output_size
        self._size = None
        self.flow_workers = flow_workers
        self.timings = timings if timings is not None else Timings()
        self.keep_color = keep_color
        self._color = {}
        self._gray = {}
        self._flow = {}
        self.count = 0  # frames added so far; the next frame gets this index

    @property
    def frame_size(self):
        """`(width, height)` of the stored frames (None before the first frame)."""
        return self._size

    def add(self, frame, store=True):
        """Resizes and stores the next decoded frame (uint8 BGR); returns its index.

        With `store=False` the frame is only counted (a first pass that counts a long video).
        """
        index = self.count
        self.count += 1
        if not store:
            return index
        with self.timings.measure("resize"):
            if self._size is None:
                self._size = tuple(self._output_size(frame.shape[1], frame.shape[0]))
            if (frame.shape[1], frame.shape[0]) != self._size:
                frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_LINEAR)
            if self.flow_workers is not None:
                self._gray[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if self.keep_color:
                self._color[index] = frame
        return index

    def has_frame(self, index):
        return index in self._color or index in self._gray

    def color(self, index):
        """The resized BGR frame `index`, uint8 `(H, W, 3)`."""
        return self._color[index]

    def request(self, pair):
        """Starts computing flow pair `pair` (frames pair → pair + 1) unless it is computed or under way."""
        if pair not in self._flow:
            self._flow[pair] = self.flow_workers.submit(self._gray[pair], self._gray[pair + 1], self.timings)

    def flow(self, pair):
        """The quantised flow of pair `pair`, uint8 `(H, W, 2)` (waits for it; computes it if not requested)."""
        self.request(pair)
        return self._flow[pair].result()

    def has_flow(self, pair):
        return pair in self._flow

    def evict_before(self, index):
        """Forgets frames and flow pairs before `index` (a sliding window moved on)."""
        for table in (self._color, self._gray, self._flow):
            for key in [key for key in table if key < index]:
                del table[key]

    def forget_frames(self):
        """Drops every stored frame and pair (keeps the count)."""
        for table in (self._color, self._gray, self._flow):
            table.clear()
