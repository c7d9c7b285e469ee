"""Small frame folders with known pixels for the input-pipeline tests, indexed by the real `build_index`."""
import os

import cv2
import numpy as np

from two_stream_tf.data.index import build_index
from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.data.splits import SplitEntry


def ramp(height, width, t, offset=0):
    """uint8 `(H, W)`: 2 * column + 6 * t + offset — a frame that tells its column and its time."""
    cols = np.arange(width, dtype=np.int32)[None, :].repeat(height, 0)
    return np.clip(2 * cols + 6 * t + offset, 0, 255).astype(np.uint8)


def write_video(root, video, num_frames, num_flow=None, size=(48, 64), offset=0, layout="tsn"):
    """Writes a video folder whose RGB frame t (gray) and flow pair t (x and y) are all `ramp(t)`.

    Args:
      root: dataset root.
      video: video folder name.
      num_frames: RGB frames; num_flow: flow pairs (default num_frames - 1).
      size: (height, width).
      offset: added to every pixel (tells videos apart).
      layout: a layout name.

    Returns:
      The video folder path.
    """
    layout = LAYOUTS[layout]
    num_flow = num_frames - 1 if num_flow is None else num_flow
    height, width = size
    quality = [cv2.IMWRITE_JPEG_QUALITY, 100]
    for t in range(num_frames):
        path = os.path.join(root, layout.rgb_file(video, t))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, cv2.cvtColor(ramp(height, width, t, offset), cv2.COLOR_GRAY2BGR), quality)
    for t in range(num_flow):
        for path in layout.flow_files(video, t):
            cv2.imwrite(os.path.join(root, path), ramp(height, width, t, offset), quality)
    return os.path.join(root, video)


def index_videos(root, videos, classes=("ClassA", "ClassB")):
    """The `DatasetIndex` of `videos` [(video, label), …] under `root` (no cache file written)."""
    entries = [SplitEntry(video, label, f"{classes[label]}/{video}.avi") for video, label in videos]
    return build_index(root, entries, classes, cache=False)


def truncate(path, keep=0.5):
    """Cuts a file to `keep` of its bytes (a truncated JPEG)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])
