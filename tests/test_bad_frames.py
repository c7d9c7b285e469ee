"""Unreadable frames in real frame folders: evaluation scores around them, training skips and reports them,
`strict` stops naming them — on TensorFlow ops and on the compiled kernels.

The frames are a small synthetic dataset (real AVIs, RGB JPEGs and quantised flow JPEGs) with four kinds of
damage: a zero-byte JPEG, a JPEG whose header is overwritten after SOI, a flow JPEG truncated to a fifth,
and one frame of another size than the rest of its video.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.data import native, pipelines, sampling
from two_stream_tf.data.index import build_index
from two_stream_tf.data.splits import SplitEntry
from two_stream_tf.data.synthetic import write_synthetic_dataset
from two_stream_tf.evaluation import protocol, report
from two_stream_tf.evaluation.scores import load_scores

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES, FLOW = 12, 11  # per video: frames rendered, flow pairs
RGB = FLOW  # RGB images: dense_flow's numbering writes one per flow pair
SNIPPETS = 5

# test videos: (file, damage) -> the view of these files is unreadable
ZERO_RGB = ("v_RedTriangleRise_g04_c01", "img_00004.jpg")
HEADER_RGB = ("v_RedTriangleRise_g04_c02", "img_00008.jpg")
TRUNCATED_FLOW = ("v_RedTriangleRise_g05_c01", "flow_x_00003.jpg")
SMALL_FLOW = ("v_RedTriangleRise_g05_c02", "flow_y_00006.jpg")
ALL_ZERO = "v_RedTriangleFall_g04_c01"  # every file empty: no view decodes
# training videos: every sample of these has an unreadable file
TRAIN_HEADER_AND_TRUNCATED = "v_RedTriangleRise_g01_c01"  # every RGB header damaged, every flow_x truncated
TRAIN_SIZES = "v_RedTriangleFall_g01_c01"  # every flow_y smaller; RGB frame 5 larger than the others


def zero(path):
    open(path, "wb").close()


def damage_header(path):
    data = bytearray(open(path, "rb").read())
    data[2:42] = np.random.RandomState(len(data)).randint(0, 256, 40).astype(np.uint8).tobytes()
    open(path, "wb").write(bytes(data))


def truncate(path, keep=0.2):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def resize(path, factor):
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    size = (int(image.shape[1] * factor), int(image.shape[0] * factor))
    cv2.imwrite(path, cv2.resize(image, size))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """2 classes, 12 training and 8 test videos of 12 frames (64x48), damaged as the constants say."""
    data = write_synthetic_dataset(tmp_path_factory.mktemp("bad_frames"), num_classes=2, videos_per_class=10,
                                   num_frames=FRAMES, frame_size=(64, 48), progress=False)
    frames = data.frames_dir

    def path(video, name):
        return os.path.join(frames, video, name)

    zero(path(*ZERO_RGB))
    damage_header(path(*HEADER_RGB))
    truncate(path(*TRUNCATED_FLOW))
    resize(path(*SMALL_FLOW), 0.625)
    for name in os.listdir(os.path.join(frames, ALL_ZERO)):
        zero(path(ALL_ZERO, name))
    for t in range(1, RGB + 1):
        damage_header(path(TRAIN_HEADER_AND_TRUNCATED, f"img_{t:05d}.jpg"))
    for t in range(1, FLOW + 1):
        truncate(path(TRAIN_HEADER_AND_TRUNCATED, f"flow_x_{t:05d}.jpg"), 0.5)
        resize(path(TRAIN_SIZES, f"flow_y_{t:05d}.jpg"), 0.5)
    resize(path(TRAIN_SIZES, "img_00005.jpg"), 1.25)
    return data


def index_of(data, subset):
    with open(os.path.join(data.split_dir, f"{subset}list01.txt")) as handle:
        paths = [line.split()[0] for line in handle if line.strip()]
    entries = [SplitEntry(os.path.basename(p)[:-4], data.classes.index(p.split("/")[0]), p) for p in paths]
    return build_index(data.frames_dir, entries, data.classes, cache=False)


@pytest.fixture(params=["tensorflow_ops", "compiled_kernels"])
def kernels(request, monkeypatch):
    """Both training-view paths: TWO_STREAM_TF_NATIVE=0, and the compiled kernels (skipped without them)."""
    if request.param == "tensorflow_ops":
        monkeypatch.setenv(native.ENABLE_VARIABLE, "0")
    elif native.load() is None:
        pytest.skip("the compiled kernels cannot be built here")
    return request.param


def unreadable_snippets(num_items, length, bad_item):
    """Which test snippets read item `bad_item` (0-based) by the pipelines' own sampling."""
    starts = sampling.test_starts(num_items, SNIPPETS, length=length)
    if length == 1:
        items = sampling.rgb_indices(starts, num_items).numpy()[:, None]
    else:
        items = sampling.stack_indices(starts, length, num_items).numpy()
    return np.any(items == bad_item, axis=1)


def item_of(name):
    return int(name.split("_")[-1][:5]) - 1


# --- evaluation ------------------------------------------------------------------------------------------

def test_test_views_with_unreadable_frames_are_masked_and_zeros(tree):
    index = index_of(tree, "test")
    videos = [entry.video for entry in index.entries]
    spatial = pipelines.spatial_dataset(index, training=False, batch_size=3, image_size=32, num_snippets=SNIPPETS,
                                        crops=1, readable_mask=True)
    temporal = pipelines.temporal_dataset(index, training=False, batch_size=3, image_size=32, stack_length=5,
                                          num_snippets=SNIPPETS, crops=1, readable_mask=True)
    for dataset, damaged, length, items in ((spatial, (ZERO_RGB, HEADER_RGB), 1, RGB),
                                            (temporal, (TRUNCATED_FLOW, SMALL_FLOW), 5, FLOW)):
        views, labels, readable = (np.concatenate([np.asarray(e[i]) for e in dataset]) for i in range(3))
        assert len(labels) == len(videos)  # every video is kept
        expected = np.ones((len(videos), SNIPPETS), bool)
        expected[videos.index(ALL_ZERO)] = False
        for video, name in damaged:
            expected[videos.index(video)] = ~unreadable_snippets(items, length, item_of(name))
        np.testing.assert_array_equal(readable, expected)
        assert 0 < (~expected).sum() < expected.size
        assert not np.any(views[~readable])
        if length == 1:  # (a readable flow view of still frames is exactly 0 too: no motion normalises to 0)
            assert np.all(np.abs(views[readable]).reshape(readable.sum(), -1).max(1) > 0)
        named = set(dataset.decode_stats.files)
        assert {os.path.join(tree.frames_dir, *item) for item in damaged} <= named


def _tiny_model(channels):
    inputs = tf.keras.Input((32, 32, channels))
    pooled = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = tf.keras.layers.Dense(2, activation="softmax", kernel_initializer="glorot_uniform")(pooled)
    return tf.keras.Model(inputs, outputs)


def test_evaluation_averages_readable_views_and_marks_unscored_videos(tree, tmp_path):
    index = index_of(tree, "test")
    videos = [entry.video for entry in index.entries]
    tf.keras.utils.set_random_seed(3)
    model = _tiny_model(3)
    scores = protocol.evaluate(model, index, "spatial", image_size=32, num_snippets=SNIPPETS, crops=1,
                               batch_size=2, progress=False)
    # The view-level reference: the model's softmax on each readable view, averaged per video.
    dataset = protocol.test_dataset(index, "spatial", image_size=32, num_snippets=SNIPPETS, crops=1)
    views, _, readable = (np.concatenate([np.asarray(e[i]) for e in dataset]) for i in range(3))
    for i, video in enumerate(videos):
        if readable[i].any():
            expected = model.predict(views[i][readable[i]], verbose=0).mean(0)
            np.testing.assert_allclose(scores.scores[i], expected, rtol=1e-5)
    lost = {video: int(unreadable_snippets(RGB, 1, item_of(name)).sum()) for video, name in (ZERO_RGB, HEADER_RGB)}
    lost[ALL_ZERO] = SNIPPETS
    assert {videos[i]: int(n) for i, n in enumerate(scores.unreadable_views) if n} == lost
    assert videos[np.flatnonzero(scores.unscored)[0]] == ALL_ZERO and scores.unscored.sum() == 1
    np.testing.assert_allclose(scores.scores[videos.index(ALL_ZERO)], [0.5, 0.5])
    # The report: metrics.json lists them; the unscored video is wrong whatever its uniform scores say.
    result = report.write_report(str(tmp_path), scores)
    summary = json.loads((tmp_path / report.METRICS_NAME).read_text())
    assert summary["unreadable_views"] == lost and summary["unscored"] == [ALL_ZERO]
    assert result.unscored_videos == 1 and summary["unscored_videos"] == 1
    right = (scores.predictions == scores.labels) & ~scores.unscored
    assert result.top1 == pytest.approx(right.mean())
    again = load_scores(tmp_path / report.SCORES_NAME)
    np.testing.assert_array_equal(again.unreadable_views, scores.unreadable_views)
    np.testing.assert_array_equal(again.unscored, scores.unscored)


def test_strict_evaluation_raises_naming_the_file(tree):
    index = index_of(tree, "test")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"v_RedTriangleRise_g04_c01/img_00004\.jpg"):
        protocol.evaluate(_tiny_model(3), index, "spatial", image_size=32, num_snippets=SNIPPETS, crops=1,
                          progress=False, strict=True)


# --- training ----------------------------------------------------------------------------------------------

def _epoch(dataset):
    return np.concatenate([np.asarray(label) for _, label in dataset])


def test_training_skips_counts_and_names_unreadable_samples(tree, kernels):
    index = index_of(tree, "train")
    damaged = {TRAIN_HEADER_AND_TRUNCATED, TRAIN_SIZES}
    expected = sorted(e.label for e in index.entries if e.video not in damaged)
    # Flow stacks of all 11 pairs: every sample reads every flow file.
    temporal = pipelines.temporal_dataset(index, training=True, batch_size=4, image_size=32, stack_length=FLOW,
                                          seed=1)
    assert sorted(_epoch(temporal)) == expected
    assert temporal.decode_stats.skipped == 2
    files = set(temporal.decode_stats.files)
    assert os.path.join(tree.frames_dir, TRAIN_HEADER_AND_TRUNCATED, "flow_x_00004.jpg") in files
    assert os.path.join(tree.frames_dir, TRAIN_SIZES, "flow_y_00004.jpg") in files
    assert not any("flow_x" in name for name in files if TRAIN_SIZES in name)  # x planes have the common size
    # TSN segments over all 11 RGB images: damaged headers, and one larger frame among the others.
    spatial = pipelines.spatial_dataset(index, training=True, batch_size=4, image_size=32, num_segments=RGB,
                                        seed=1)
    assert sorted(_epoch(spatial)) == expected and spatial.decode_stats.skipped == 2
    assert os.path.join(tree.frames_dir, TRAIN_SIZES, "img_00005.jpg") in spatial.decode_stats.files
    assert [n for n in spatial.decode_stats.files if TRAIN_SIZES in n] == [
        os.path.join(tree.frames_dir, TRAIN_SIZES, "img_00005.jpg")]


def test_two_stream_training_skips_a_sample_when_either_stream_is_unreadable(tree, kernels):
    index = index_of(tree, "train")
    dataset = pipelines.two_stream_dataset(index, training=True, batch_size=4, image_size=32, stack_length=FLOW,
                                           num_segments=2, seed=2)
    epoch = list(dataset)
    labels = np.concatenate([np.asarray(label) for _, label in epoch])
    assert sorted(labels) == sorted(e.label for e in index.entries
                                    if e.video not in (TRAIN_HEADER_AND_TRUNCATED, TRAIN_SIZES))
    assert dataset.decode_stats.skipped == 2
    for x, label in epoch:
        assert x["rgb"].shape[:2] == x["flow"].shape[:2] == (len(label), 2)
        # (RGB: a flow stack of still frames is exactly 0, since no motion normalises to 0)
        assert np.all(np.abs(x["rgb"].numpy()).reshape(len(label), -1).max(1) > 0)


def test_strict_training_raises_naming_the_file(tree, kernels):
    index = index_of(tree, "train")
    dataset = pipelines.temporal_dataset(index, training=True, batch_size=4, image_size=32, stack_length=FLOW,
                                         seed=1, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(v_RedTriangleRise_g01_c01/flow_x|"
                                                             r"v_RedTriangleFall_g01_c01/flow_y)_000\d\d\.jpg"):
        _epoch(dataset)


# --- the commands ------------------------------------------------------------------------------------------

def _run(*argv):
    env = dict(os.environ, PYTHONPATH=PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "two_stream_tf.cli", *argv], capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT, timeout=1800)


def test_train_and_evaluate_commands_report_and_strict_fails(tree, tmp_path):
    data = [f"--frames_root={tree.frames_dir}", f"--split_dir={tree.split_dir}", "--stack_length=5"]
    model_dir = str(tmp_path / "run")
    trained = _run("train", "--stream=temporal", *data, f"--model_dir={model_dir}", "--backbone=mobilenet",
                   "--backbone_kwargs=alpha=0.25", "--weights=none", "--image_size=32", "--epochs=2",
                   "--batch_size=4", "--tensorboard_images=false", "--verbose=2", "--seed=0")
    assert trained.returncode == 0, trained.stderr[-3000:]
    lines = [line for line in trained.stdout.splitlines() if "training sample(s) with unreadable frames" in line]
    # Two damaged videos per pass over the 12 training videos; the strategy reads a batch or two ahead, so
    # epoch 1 may count some of pass 2's (and epoch 2 some of pass 3's).
    counts = {int(line.split(":")[0].split()[1]): int(line.split("skipped ")[1].split()[0]) for line in lines}
    assert 4 <= sum(counts.values()) <= 6 and counts.get(1, 0) >= 2, lines
    assert all(TRAIN_HEADER_AND_TRUNCATED in line or TRAIN_SIZES in line for line in lines)
    assert TRAIN_HEADER_AND_TRUNCATED in "".join(lines) and TRAIN_SIZES in "".join(lines)
    with open(os.path.join(model_dir, "log.csv")) as handle:
        header, *rows = [line.strip().split(",") for line in handle]
    column = header.index("skipped_samples")
    assert [float(row[column]) for row in rows] == [counts.get(1, 0), counts.get(2, 0)]

    evaluated = _run("evaluate", f"--checkpoint={model_dir}", "--test_snippets=5", "--test_crops=1",
                     f"--output_dir={tmp_path / 'evaluation'}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scores = load_scores(tmp_path / "evaluation" / report.SCORES_NAME)
    assert len(scores) == 8
    lost = {video: int(unreadable_snippets(FLOW, 5, item_of(name)).sum())
            for video, name in (TRUNCATED_FLOW, SMALL_FLOW)}
    lost[ALL_ZERO] = SNIPPETS
    assert {str(v): int(n) for v, n in zip(scores.videos, scores.unreadable_views) if n} == lost
    for video, count in lost.items():
        assert any(line.split()[:2] == [video, str(count)] for line in evaluated.stdout.splitlines()), \
            evaluated.stdout
    assert "unscored" in next(line for line in evaluated.stdout.splitlines() if ALL_ZERO in line)
    assert "1 unscored" in evaluated.stdout

    strict = _run("evaluate", f"--checkpoint={model_dir}", "--test_snippets=5", "--test_crops=1", "--strict",
                  f"--output_dir={tmp_path / 'strict'}")
    assert strict.returncode == 2, strict.stderr[-3000:]
    message = next(line for line in strict.stderr.splitlines() if "--strict" in line)
    assert "--strict: unreadable frame" in message and "v_RedTriangle" in message and "Traceback" not in strict.stderr
    assert not os.path.exists(tmp_path / "strict" / report.SCORES_NAME)

    strict_train = _run("train", "--stream=temporal", *data, f"--model_dir={tmp_path / 'strict_run'}",
                        "--backbone=mobilenet", "--backbone_kwargs=alpha=0.25", "--weights=none", "--image_size=32",
                        "--epochs=1", "--batch_size=4", "--tensorboard_images=false", "--verbose=2", "--strict")
    assert strict_train.returncode == 2, strict_train.stderr[-3000:]
    message = next(line for line in strict_train.stderr.splitlines() if "--strict" in line)
    assert "--strict: unreadable frame" in message and (TRAIN_HEADER_AND_TRUNCATED in message
                                                         or TRAIN_SIZES in message), message


def test_fusion_keeps_a_video_unscored_only_when_no_stream_scored_it():
    from two_stream_tf.evaluation.fusion import fuse
    from two_stream_tf.evaluation.metrics import compute_metrics
    from two_stream_tf.evaluation.scores import VideoScores

    videos, labels, classes = ["a", "b", "c"], [0, 0, 1], ["A", "B"]
    spatial = VideoScores(videos, labels, [[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]], classes, unreadable_views=[5, 5, 0],
                          unscored=[True, True, False])
    temporal = VideoScores(videos, labels, [[0.5, 0.5], [0.9, 0.1], [0.3, 0.7]], classes,
                           unreadable_views=[5, 0, 0], unscored=[True, False, False])
    fused = fuse([spatial, temporal])
    assert fused.unscored.tolist() == [True, False, False]
    # Video a's uniform row would win label 0 on the tie; as unscored it is wrong: 2 of 3 right.
    assert compute_metrics(fused).top1 == pytest.approx(2 / 3) and compute_metrics(fused).unscored_videos == 1
    assert fuse([spatial, VideoScores(videos, labels, temporal.scores, classes)]).unscored is None


def test_a_sequence_with_an_unreadable_snippet_is_left_out_whole():
    # 6 snippets x 2 crops dealt into 2 interleaved sequences of 3 (snippet j -> sequence j mod 2).
    readable = np.ones((1, 12), bool)
    readable[0, 2:4] = False  # both crops of snippet 1, which sits in sequence 1
    units = protocol.readable_units(readable, crops=2, segments=3).numpy()
    assert units.tolist() == [True, True, False, False]  # (sequence, crop): (0, 0), (0, 1), (1, 0), (1, 1)
    readable[0, 3] = True  # only crop 0 of snippet 1 lost: only that crop's sequence goes
    assert protocol.readable_units(readable, crops=2, segments=3).numpy().tolist() == [True, True, False, True]
    assert protocol.readable_units(readable, crops=2).numpy().tolist() == readable[0].tolist()
