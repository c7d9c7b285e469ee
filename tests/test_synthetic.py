"""Synthetic action videos: determinism, readable AVIs, group-disjoint splits, ground-truth flow on disk."""
import dataclasses
import os
import re

import cv2
import numpy as np
import pytest

from inference_helpers import decode_all
from two_stream_tf.data.index import open_split_index
from two_stream_tf.data.splits import load_ucf101_split
from two_stream_tf.data.synthetic import MAX_CLASSES, class_names, render_video, write_synthetic_dataset
from two_stream_tf.errors import UserError
from two_stream_tf.flow.quantize import dequantize_flow

TINY = dict(num_classes=2, videos_per_class=3, num_frames=5, frame_size=(48, 32))


def files_of(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def test_same_seed_same_bytes(tmp_path):
    first = files_of(write_synthetic_dataset(tmp_path / "a", seed=3, **TINY).root)
    second = files_of(write_synthetic_dataset(tmp_path / "b", seed=3, **TINY).root)
    other = files_of(write_synthetic_dataset(tmp_path / "c", seed=4, **TINY).root)
    assert len(first) == 3 + 6 + 6 * (4 + 2 * 4)  # split files, AVIs, frame folders (dense_flow: N - 1 RGB)
    assert first == second
    assert first.keys() == other.keys()
    changed = [name for name in first if first[name] != other[name]]
    assert all(name in changed for name in first if name.endswith((".avi", "img_00001.jpg")))


def test_every_avi_decodes_with_its_frame_count(synthetic_dataset):
    assert len(synthetic_dataset.videos) == 8 * 12
    for spec in synthetic_dataset.videos:
        frames = decode_all(synthetic_dataset.video_path(spec))
        assert len(frames) == 32, spec.video
        assert frames[0].shape == (96, 128, 3)
    # The AVI holds the rendered pictures (MJPG is lossy: closer to its own frame than to another one).
    rendered = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in render_video(spec).frames[[-1, 0]]]
    own, other = (np.abs(frames[-1].astype(int) - r.astype(int)).mean() for r in rendered)
    assert own < 8 and own < 0.6 * other, (own, other)


def test_split_files_never_share_a_group(synthetic_dataset):
    split = load_ucf101_split(synthetic_dataset.split_dir)
    assert split.classes == synthetic_dataset.classes == class_names(8)
    assert all(re.fullmatch(r"(?:[A-Z][a-z]+)+", name) for name in class_names(MAX_CLASSES))
    assert (len(split.train), len(split.test)) == (64, 32)  # 2/3 : 1/3
    for label, name in enumerate(split.classes):
        groups = {subset: {re.fullmatch(rf"v_{name}_g(\d\d)_c\d\d", e.video).group(1)
                           for e in getattr(split, subset) if e.label == label} for subset in ("train", "test")}
        assert groups["train"] and groups["test"] and not groups["train"] & groups["test"]
        assert all(os.path.exists(os.path.join(synthetic_dataset.videos_dir, name, f"v_{name}_g{g}_c01.avi"))
                   for g in groups["test"])


def read_flow(frames_dir, video, t):
    """Dequantised flow pair t (0-based) of a TSN frame folder, (H, W, 2)."""
    planes = [cv2.imread(os.path.join(frames_dir, video, f"flow_{axis}_{t + 1:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
              for axis in "xy"]
    return dequantize_flow(np.stack(planes, axis=-1))


def interior(mask):
    """The object's pixels away from its edge, where JPEG blur from the background cannot reach."""
    return cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


@pytest.mark.parametrize("class_name", ["RedTriangleRise", "GreenTriangleFall", "BlueKiteBounce", "GoldKiteSwing"])
def test_flow_on_disk_is_the_motion_the_generator_applied(synthetic_dataset, class_name):
    spec = next(s for s in synthetic_dataset.videos if s.class_name == class_name)
    rendered = render_video(spec)
    assert rendered.flow.shape == (31, 96, 128, 2) and rendered.object_mask.shape == (32, 96, 128)
    for t in (0, 15, 30):
        on_disk = read_flow(synthetic_dataset.frames_dir, spec.video, t)
        inside = interior(rendered.object_mask[t])
        assert inside.sum() > 30  # enough object pixels to measure (the object may be split between two edges)
        truth = rendered.flow[t]
        assert np.abs(on_disk[inside].mean(axis=0) - truth[inside].mean(axis=0)).max() < 0.3
        outside = ~cv2.dilate(rendered.object_mask[t].astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        pan = spec.background_offsets[t + 1] - spec.background_offsets[t]
        np.testing.assert_allclose(on_disk[outside].mean(axis=0), pan, atol=0.2)
        if class_name == "RedTriangleRise":  # a slide: every object pixel moves by the centre's step
            np.testing.assert_allclose(truth[inside], np.broadcast_to(spec.centers[t + 1] - spec.centers[t],
                                                                       truth[inside].shape), atol=1e-3)


@pytest.mark.parametrize("class_name", ["RedTriangleFall", "GreenTriangleRise", "BlueKiteSwing"])
def test_ground_truth_flow_explains_the_pictures(synthetic_dataset, class_name):
    # Frame t at p shows what frame t + 1 shows at p + flow(p): warping t + 1 back by the flow matches
    # frame t better than assuming no motion, and far better than the opposite motion. Rendered without
    # sensor noise, which would blur the comparison.
    spec = next(s for s in synthetic_dataset.videos if s.class_name == class_name)
    rendered = render_video(dataclasses.replace(spec, noise_sigma=0.0))
    height, width = rendered.flow.shape[1:3]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    errors = []
    for t in (3, 20):
        inside = interior(rendered.object_mask[t])
        now, later = rendered.frames[t].astype(np.float32), rendered.frames[t + 1].astype(np.float32)
        flow = rendered.flow[t]
        errors.append([np.abs(cv2.remap(later, xs + sign * flow[..., 0], ys + sign * flow[..., 1],
                                        cv2.INTER_LINEAR) - now)[inside].mean() for sign in (1, 0, -1)])
    with_flow, without, opposite = np.mean(errors, axis=0)
    assert with_flow < 0.7 * without and with_flow < 0.5 * opposite, (with_flow, without, opposite)


def test_one_frame_shows_the_look_and_the_flow_shows_the_motion(synthetic_dataset):
    """The streams are complementary: a look does two motions (only flow separates them) and a motion is
    done by two looks of one shape (only colour and texture separate them, which flow does not show)."""
    appearance, flow_y = {}, {}
    for name in ("RedTriangleRise", "RedTriangleFall", "GreenTriangleRise"):
        colours, motions = [], []
        for spec in (s for s in synthetic_dataset.videos if s.class_name == name):
            frames = [cv2.imread(os.path.join(synthetic_dataset.frames_dir, spec.video, f"img_{t + 1:05d}.jpg"))
                      for t in (0, 16, 30)]
            colours.append(np.mean([f.reshape(-1, 3).mean(axis=0) for f in frames], axis=0))
            mask = render_video(spec).object_mask
            motions.append(np.mean([read_flow(synthetic_dataset.frames_dir, spec.video, t)[interior(mask[t]), 1].mean()
                                    for t in (0, 15, 30)]))
        appearance[name], flow_y[name] = np.array(colours), np.array(motions)
    rise, fall, green = appearance["RedTriangleRise"], appearance["RedTriangleFall"], appearance["GreenTriangleRise"]
    # Same look: the class means differ by far less than videos differ within a class.
    assert np.all(np.abs(rise.mean(axis=0) - fall.mean(axis=0)) < 0.25 * rise.std(axis=0))
    # Opposite motion: every Rise video moves up (y < 0), every Fall video moves down.
    assert np.all(flow_y["RedTriangleRise"] < -0.8) and np.all(flow_y["RedTriangleFall"] > 0.8)
    # Same motion, other look: the green triangles rise as the red ones do, and look unlike them (colours,
    # texture and scene).
    assert np.all(flow_y["GreenTriangleRise"] < -0.8)
    assert np.abs(rise - green).mean() > 5 * np.abs(rise - fall).mean()
    assert {s.shape for s in synthetic_dataset.videos if "Triangle" in s.class_name} == {"triangle"}


def test_other_layout_and_no_frames(tmp_path):
    written = write_synthetic_dataset(tmp_path / "mm", layout="mmaction2", **TINY)
    index = open_split_index(written.frames_dir, written.split_dir, subset="all", cache=False)
    assert index.layout.name == "mmaction2" and [e.num_flow for e in index] == [4] * 6
    bare = write_synthetic_dataset(tmp_path / "bare", write_frames=False, **TINY)
    assert bare.frames_dir is None and not os.path.exists(tmp_path / "bare" / "frames")
    assert len(os.listdir(os.path.join(bare.videos_dir, bare.classes[1]))) == 3


@pytest.mark.parametrize("arguments, message", [
    (dict(num_classes=MAX_CLASSES + 1), rf"num_classes must be an integer 1\.\.{MAX_CLASSES}, got 17"),
    (dict(videos_per_class=1), r"videos_per_class must be an integer >= 2, got 1"),
    (dict(frame_size=(8, 8)), r"frame size must be at least 16x16, got 8x8"),
    (dict(layout="flat"), r"unknown frame layout 'flat'"),
])
def test_bad_arguments(tmp_path, arguments, message):
    with pytest.raises(UserError, match=message):
        write_synthetic_dataset(tmp_path, **arguments)


def test_synth_command(tmp_path, capsys):
    from two_stream_tf import cli

    status = cli.main(["synth", "--output", str(tmp_path / "out"), "--classes", "3", "--videos-per-class", "3",
                       "--frames", "4", "--size", "32x24", "--seed", "7"])
    assert status == 0
    assert "wrote 9 videos of 3 classes (6 train / 3 test)" in capsys.readouterr().out
    split = load_ucf101_split(tmp_path / "out")
    assert split.classes == class_names(3) and len(split.test) == 3
    frame = cv2.imread(str(tmp_path / "out" / "frames" / split.test[0].video / "img_00003.jpg"))  # 4 frames: 3 RGB
    assert frame.shape == (24, 32, 3)

    assert cli.main(["synth", "--output", str(tmp_path / "bad"), "--classes", "17"]) == 2
    assert "argument --classes: 17 is out of range (1..16)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
