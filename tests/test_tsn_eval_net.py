"""The test views of the pipelines against a NumPy port of TSN's Caffe test tools, value for value.

The port below follows TSN's public `tools/eval_net.py` (snippet ticks, stacks clamped at the last flow
pair), `pyActionRecog/action_caffe.py` (every frame and flow plane read with OpenCV and resized to
340×256 with `cv2.resize`, flow fed as `q - 128`, RGB as BGR minus [104, 117, 123]) and
`pyActionRecog/utils/io.py` / Caffe's `oversample` (4 corners and centre, then the same 5 mirrored, x
planes of mirrored flow crops `255 - q`). The 25 × 10 views of each video must equal the pipelines' test
views with `test_sampling="tsn"` and `frame_size=(256, 340)` exactly (0 levels), after undoing each side's
normalisation, for flow stacks of L = 5 and 10 and for RGB, on a real UCF-101 clip prepared by the
project's own extraction (stored at 340×256 and at its native 320×240) and on the mmaction2 sample frames
(320×240).
"""
import glob
import os

import cv2
import numpy as np
import pytest

from pipeline_helpers import index_videos
from two_stream_tf.data import pipelines
from two_stream_tf.preparation.extract import extract_video

CLIP = "v_Archery_g02_c02"
NUM_SNIPPETS = 25
FRAME_SIZE = (340, 256)  # TSN's frame_size, OpenCV's (width, height)
CAFFE_BGR_MEAN = np.array([104, 117, 123], np.float32)


# --- The port of TSN's test tools -------------------------------------------------------------------------

def eval_net_ticks(frame_count, stack_depth, num=NUM_SNIPPETS):
    """1-based first frame of each snippet, as eval_net computes it (Python 2 integer division)."""
    step = (frame_count - stack_depth) // (num - 1)
    if step > 0:
        ticks = list(range(1, min(2 + step * (num - 1), frame_count + 1), step))
    else:
        ticks = [1] * num
    assert len(ticks) == num
    return ticks


def corner_and_centre_boxes(height, width, crop):
    """(top, left, bottom, right) of the 4 corners (row-major) and the centre, as Caffe's oversample."""
    boxes = [(i, j, i + crop, j + crop) for i in (0, height - crop) for j in (0, width - crop)]
    top, left = (height - crop) // 2, (width - crop) // 2
    return boxes + [(top, left, top + crop, left + crop)]


def oversample_flow(stack, crop):
    """stack (2L, H, W) uint8 -> (10, 2L, crop, crop) float32 crops; the last 5 mirrored, x as 255 - x."""
    boxes = corner_and_centre_boxes(stack.shape[1], stack.shape[2], crop) * 2
    crops = np.stack([stack[:, t:b, l:r] for t, l, b, r in boxes]).astype(np.float32)
    crops[5:] = crops[5:, :, :, ::-1]
    crops[5:, 0::2] = 255 - crops[5:, 0::2]
    return crops


def oversample_rgb(image, crop):
    """image (H, W, 3) -> (10, crop, crop, 3) float32 crops; the last 5 mirrored."""
    boxes = corner_and_centre_boxes(image.shape[0], image.shape[1], crop) * 2
    crops = np.stack([image[t:b, l:r] for t, l, b, r in boxes]).astype(np.float32)
    crops[5:] = crops[5:, :, ::-1]
    return crops


def eval_net_flow_inputs(folder, stack_depth, crop):
    """The Caffe input blobs of one video's flow views: (25 * 10, 2L, crop, crop), `q - 128`."""
    frame_count = len(glob.glob(os.path.join(folder, "flow_x_*.jpg")))
    blobs = []
    for tick in eval_net_ticks(frame_count, stack_depth):
        planes = []
        for index in [min(frame_count, tick + offset) for offset in range(stack_depth)]:
            for prefix in ("flow_x_", "flow_y_"):
                plane = cv2.imread(os.path.join(folder, f"{prefix}{index:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
                planes.append(cv2.resize(plane, FRAME_SIZE))
        blobs.append(oversample_flow(np.stack(planes), crop) - np.float32(128.0))
    return np.concatenate(blobs)


def eval_net_rgb_inputs(folder, crop):
    """The Caffe input blobs of one video's RGB views: (25 * 10, crop, crop, 3), BGR minus the mean."""
    frame_count = len(glob.glob(os.path.join(folder, "img_*.jpg")))
    blobs = []
    for tick in eval_net_ticks(frame_count, 1):
        frame = cv2.imread(os.path.join(folder, f"img_{tick:05d}.jpg"), cv2.IMREAD_COLOR)
        blobs.append(oversample_rgb(cv2.resize(frame, FRAME_SIZE), crop) - CAFFE_BGR_MEAN)
    return np.concatenate(blobs)


# --- Data -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory):
    """The real clip's first 40 frames (39 DIS flow pairs and, in dense_flow's numbering, 39 RGB images) at
    340×256 and at its native 320×240, and its first 8 frames (7 pairs: shorter than a stack of 10), each
    extracted by the project."""
    root = tmp_path_factory.mktemp("tsn_eval_net")
    video = str(shared_data / "videos" / "ucf101" / f"{CLIP}.avi")
    made = {}
    for name, size, frames in (("stored_340", (340, 256), 40), ("stored_320", None, 40), ("short", None, 8)):
        result = extract_video(video, str(root / name), video_id=CLIP, size=size, flow_method="dis",
                               max_frames=frames)
        assert result.status == "extracted" and result.num_frames == result.num_flow == frames - 1, result
        made[name] = index_videos(str(root / name), [(CLIP, 0)])
    return root, made


def only_views(dataset):
    ((views, labels),) = list(dataset)
    assert labels.numpy().tolist() == [0]
    return views.numpy()[0]


def flow_views(index, stack_length, crop, **options):
    options = {"test_sampling": "tsn", "frame_size": (256, 340), **options}
    return only_views(pipelines.temporal_dataset(index, training=False, batch_size=1, stack_length=stack_length,
                                                 image_size=crop, crops=10, num_snippets=NUM_SNIPPETS,
                                                 flow_normalization="caffe", **options))


def rgb_views(index, crop, **options):
    options = {"test_sampling": "tsn", "frame_size": (256, 340), **options}
    return only_views(pipelines.spatial_dataset(index, training=False, batch_size=1, image_size=crop, crops=10,
                                                num_snippets=NUM_SNIPPETS, rgb_normalization="none", **options))


# --- The comparisons --------------------------------------------------------------------------------------

# L = 10 at 112 px keeps a video's 250 float views at 250 MB; the crop boxes follow the input size as in
# Caffe's oversample.
@pytest.mark.parametrize("stored, stack_length, crop", [
    ("stored_340", 5, 224), ("stored_320", 5, 224), ("stored_340", 10, 112), ("stored_320", 10, 112),
    ("short", 10, 112)])
def test_flow_views_equal_eval_net(clips, stored, stack_length, crop):
    root, indices = clips
    theirs = eval_net_flow_inputs(str(root / stored / CLIP), stack_length, crop)
    ours = flow_views(indices[stored], stack_length, crop)  # "caffe": q - 128, channels last
    assert ours.shape == (NUM_SNIPPETS * 10, crop, crop, 2 * stack_length)
    np.testing.assert_array_equal(ours.transpose(0, 3, 1, 2), theirs)
    assert np.ptp(theirs) > 100  # real motion, not a flat picture


def test_flow_views_of_the_default_options_differ_from_eval_net(clips):
    """What the protocol options change: centred snippets, stored size and the fast IDCT each differ."""
    root, indices = clips
    theirs = eval_net_flow_inputs(str(root / "stored_320" / CLIP), 5, 224)
    for options in (dict(test_sampling="centered"), dict(frame_size=None), dict(dct_method="INTEGER_FAST")):
        ours = flow_views(indices["stored_320"], 5, 224, **options).transpose(0, 3, 1, 2)
        assert np.abs(ours - theirs).max() > 0, options

@pytest.mark.parametrize("stored", ["stored_340", "stored_320"])
def test_rgb_views_equal_eval_net(clips, stored):
    root, indices = clips
    theirs = eval_net_rgb_inputs(str(root / stored / CLIP), 224)
    ours = rgb_views(indices[stored], 224)[..., ::-1] - CAFFE_BGR_MEAN  # RGB 0..255 -> Caffe's BGR - mean
    assert ours.shape == theirs.shape == (NUM_SNIPPETS * 10, 224, 224, 3)
    np.testing.assert_array_equal(ours, theirs)


def test_rgb_views_of_the_mmaction2_sample_frames_equal_eval_net(shared_data):
    root = shared_data / "frames" / "mmaction2_sample"
    video = "v_ApplyEyeMakeup_g01_c01"
    assert cv2.imread(str(root / video / "img_00001.jpg")).shape == (240, 320, 3)
    index = index_videos(str(root), [(video, 0)])
    theirs = eval_net_rgb_inputs(str(root / video), 224)
    ours = rgb_views(index, 224)[..., ::-1] - CAFFE_BGR_MEAN
    np.testing.assert_array_equal(ours, theirs)
    # TensorFlow's default (fast) IDCT alone already gives other pixels.
    fast = rgb_views(index, 224, dct_method="INTEGER_FAST")[..., ::-1] - CAFFE_BGR_MEAN
    assert np.abs(fast - theirs).max() >= 2


def test_symmetric_flow_is_the_caffe_input_over_128(clips):
    root, indices = clips
    caffe = flow_views(indices["stored_340"], 5, 224)
    symmetric = only_views(pipelines.temporal_dataset(
        indices["stored_340"], training=False, batch_size=1, stack_length=5, image_size=224, crops=10,
        num_snippets=NUM_SNIPPETS, test_sampling="tsn", frame_size=(256, 340)))
    np.testing.assert_array_equal(symmetric * 128, caffe)
