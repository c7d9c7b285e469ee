"""The tf.data pipelines on frame folders with known pixels, the real mmaction2 sample, Keras and tf.distribute."""
import json
import logging
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf

from pipeline_helpers import index_videos, truncate, write_video
from two_stream_tf.data import pipelines
from two_stream_tf.data.index import build_index
from two_stream_tf.data.splits import SplitEntry

SIZE = 32
CLIP = dict(image_size=SIZE, seed=7)


@pytest.fixture(scope="module")
def ramps(tmp_path_factory):
    """4 videos of 16 frames / 15 flow pairs, 48×64, frame t = 2·column + 6·t (+ 100 in class B)."""
    root = tmp_path_factory.mktemp("ramps")
    videos = [("v_A_g01_c01", 0), ("v_A_g02_c01", 0), ("v_B_g01_c01", 1), ("v_B_g02_c01", 1)]
    for video, label in videos:
        write_video(str(root), video, 16, offset=50 * label)
    return index_videos(str(root), videos)


def tsn_test_starts(num_items, length, num_snippets):
    tick = (num_items - length + 1) / float(num_snippets)
    return [int(tick / 2.0 + tick * j) for j in range(num_snippets)]


def test_spatial_training_batches(ramps):
    dataset = pipelines.spatial_dataset(ramps, training=True, batch_size=3, **CLIP)
    batches = list(dataset)
    assert [int(b[1].shape[0]) for b in batches] == [3, 1]  # one pass: each video once
    x, labels = batches[0]
    assert x.shape == (3, SIZE, SIZE, 3) and x.dtype == tf.float32 and labels.dtype == tf.int32
    assert -1.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    assert sorted(np.concatenate([b[1].numpy() for b in batches]).tolist()) == [0, 0, 1, 1]


def test_segments_give_five_dimensional_batches(ramps):
    x, _ = next(iter(pipelines.temporal_dataset(ramps, training=True, batch_size=2, stack_length=3, num_segments=3,
                                                **CLIP)))
    assert x.shape == (2, 3, SIZE, SIZE, 6)
    x, _ = next(iter(pipelines.spatial_dataset(ramps, training=True, batch_size=2, num_segments=4, **CLIP)))
    assert x.shape == (2, 4, SIZE, SIZE, 3)


def test_two_stream_samples_share_snippet_crop_and_flip(ramps):
    dataset = pipelines.two_stream_dataset(ramps, training=True, batch_size=4, stack_length=3, num_segments=2,
                                           rgb_normalization="none", flow_normalization="none", repeat=4, **CLIP)
    flips = []
    for x, _ in dataset:
        rgb, flow = x["rgb"].numpy()[..., 0], x["flow"].numpy()
        assert rgb.shape == (4, 2, SIZE, SIZE) and flow.shape == (4, 2, SIZE, SIZE, 6)
        for sample_rgb, sample_flow in zip(rgb.reshape(-1, SIZE, SIZE), flow.reshape(-1, SIZE, SIZE, 6)):
            flipped = sample_rgb[:, -1].mean() < sample_rgb[:, 0].mean()  # the ramp runs right to left
            flips.append(flipped)
            # Same frame, same window, same mirror: y of the first pair equals the RGB frame (both ramp(t)) …
            np.testing.assert_allclose(sample_flow[..., 1], sample_rgb, atol=4)
            # … and x too, negated when mirrored.
            np.testing.assert_allclose(sample_flow[..., 0], 255 - sample_rgb if flipped else sample_rgb, atol=4)
            # The stack's next pairs are the next frames: +6 each.
            np.testing.assert_allclose(sample_flow[..., 3] - sample_flow[..., 1], 6, atol=4)
    assert any(flips) and not all(flips)


def batches_of(dataset):
    return [tuple(np.asarray(t) for t in batch) for batch in dataset]


def test_same_seed_same_batches(ramps):
    def build(seed):
        return pipelines.temporal_dataset(ramps, training=True, batch_size=2, stack_length=3, image_size=SIZE,
                                          seed=seed, deterministic=True)

    dataset = build(11)
    first, second = batches_of(dataset), batches_of(dataset)  # two epochs of one dataset
    again = batches_of(build(11))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(first[0][0], second[0][0])  # a new epoch draws new samples
    assert not np.array_equal(first[0][0], batches_of(build(12))[0][0])


def test_repeated_epochs_differ_and_reproduce(ramps):
    def build():
        return pipelines.spatial_dataset(ramps, training=True, batch_size=4, image_size=SIZE, seed=3, deterministic=True,
                                         repeat=2)

    first, again = batches_of(build()), batches_of(build())
    assert len(first) == 2  # two epochs of 4 videos
    assert not np.array_equal(first[0][0], first[1][0])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])


def test_test_mode_yields_snippets_times_crops_views(ramps):
    for crops in (1, 3, 10):
        batches = batches_of(pipelines.temporal_dataset(ramps, training=False, batch_size=3, stack_length=3,
                                                         crops=crops, image_size=16))
        assert [b[0].shape for b in batches] == [(3, 25 * crops, 16, 16, 6), (1, 25 * crops, 16, 16, 6)]
        assert np.concatenate([b[1] for b in batches]).tolist() == [0, 0, 1, 1]  # index order
    views, _ = next(iter(pipelines.two_stream_dataset(ramps, training=False, batch_size=1, stack_length=3, crops=10,
                                                       image_size=16)))
    assert views["rgb"].shape == (1, 250, 16, 16, 3) and views["flow"].shape == (1, 250, 16, 16, 6)


def test_test_snippets_are_evenly_spaced_in_order(ramps):
    views, _ = next(iter(pipelines.temporal_dataset(ramps, training=False, batch_size=1, stack_length=3, crops=1,
                                                     image_size=16, flow_normalization="none")))
    # Centre 16×16 window of a 48×64 frame: columns 24..39, mean 2·31.5 = 63; the time adds 6·start.
    starts = np.round((views.numpy()[0, :, :, :, 1].mean(axis=(1, 2)) - 63) / 6).astype(int)
    assert starts.tolist() == tsn_test_starts(15, 3, 25)


def test_mirrored_test_crops_negate_x_flow(ramps):
    views, _ = next(iter(pipelines.temporal_dataset(ramps, training=False, batch_size=1, stack_length=3, crops=10,
                                                     image_size=16, flow_normalization="none", num_snippets=2)))
    views = views.numpy()[0].reshape(2, 10, 16, 16, 6)
    for crop in range(5):
        plain, mirrored = views[:, crop], views[:, 5 + crop]
        np.testing.assert_array_equal(mirrored[..., 0::2], 255 - plain[:, :, ::-1, 0::2])
        np.testing.assert_array_equal(mirrored[..., 1::2], plain[:, :, ::-1, 1::2])
    # Corner crops sit where they should: the ramp's columns 0..15 (left) and 48..63 (right).
    assert views[0, 0, 0, 0, 1] == pytest.approx(2 * 0 + 6 * tsn_test_starts(15, 3, 2)[0], abs=3)
    assert views[0, 1, 0, 0, 1] == pytest.approx(2 * 48 + 6 * tsn_test_starts(15, 3, 2)[0], abs=3)


@pytest.fixture()
def damaged(tmp_path):
    """3 videos of 4 frames / 3 flow pairs; the middle one has a truncated flow_x_00002.jpg."""
    videos = [("v_A_g01_c01", 0), ("v_A_g02_c01", 0), ("v_B_g01_c01", 1)]
    for video, _ in videos:
        write_video(str(tmp_path), video, 4)
    bad = os.path.join(str(tmp_path), "v_A_g02_c01", "flow_x_00002.jpg")
    truncate(bad)
    return index_videos(str(tmp_path), videos), bad


def test_corrupt_jpeg_is_skipped_counted_and_logged(damaged, caplog):
    index, bad = damaged
    caplog.set_level(logging.WARNING, logger="two_stream_tf.data.decode")
    dataset = pipelines.temporal_dataset(index, training=True, batch_size=8, stack_length=3, image_size=16,
                                         shuffle_buffer=0, seed=1)
    (x, labels), = list(dataset)
    assert labels.numpy().tolist() == [0, 1]  # the damaged video's sample is gone, the epoch went on
    assert dataset.decode_stats.skipped == 1 and dataset.decode_stats.files == (bad,)
    assert any(bad in record.getMessage() for record in caplog.records)
    # One video per batch: the damaged video's batch would be empty and is left out.
    single = pipelines.temporal_dataset(index, training=True, batch_size=1, stack_length=3, image_size=16,
                                        shuffle_buffer=0, seed=1)
    assert [b[1].tolist() for b in batches_of(single)] == [[0], [1]]
    # Test mode skips the whole video; RGB frames of that video are fine.
    test = pipelines.temporal_dataset(index, training=False, batch_size=8, stack_length=3, image_size=16)
    assert next(iter(test))[1].numpy().tolist() == [0, 1]
    assert test.decode_stats.skipped == 1
    spatial = pipelines.spatial_dataset(index, training=True, batch_size=8, image_size=16, seed=1)
    assert next(iter(spatial))[1].shape == (3,) and spatial.decode_stats.skipped == 0


def test_corrupt_jpeg_raises_in_strict_mode(damaged):
    index, bad = damaged
    dataset = pipelines.temporal_dataset(index, training=True, batch_size=8, stack_length=3, image_size=16,
                                         shuffle_buffer=0, seed=1, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"corrupt or truncated JPEG.*flow_x_00002\.jpg"):
        list(dataset)


def test_mmaction2_sample_goes_through(shared_data):
    root = shared_data / "frames" / "mmaction2_sample"
    video = "v_ApplyEyeMakeup_g01_c01"
    index = build_index(str(root), [SplitEntry(video, 0, f"ApplyEyeMakeup/{video}.avi")], ["ApplyEyeMakeup"],
                        cache=False)
    assert index.layout.name == "mmaction2" and (index.entries[0].num_frames, index.entries[0].num_flow) == (10, 5)
    # 5 flow pairs for L = 10: the stack loops back.
    x, labels = next(iter(pipelines.temporal_dataset(index, training=True, batch_size=1, image_size=112, seed=0)))
    assert x.shape == (1, 112, 112, 20) and labels.numpy().tolist() == [0]
    np.testing.assert_array_equal(x[..., 0:10], x[..., 10:20])  # pairs 0..4 then 0..4 again
    # Test mode, centre crop: view j is frame start_j of TSN's sampling, cropped and normalised.
    views, _ = next(iter(pipelines.spatial_dataset(index, training=False, batch_size=1, image_size=112)))
    views = views.numpy()[0]
    for j, start in enumerate(tsn_test_starts(10, 1, 25)[::6]):
        frame = cv2.cvtColor(cv2.imread(str(root / video / f"img_{start + 1:05d}.jpg")), cv2.COLOR_BGR2RGB)
        expected = frame[64:176, 104:216] / 127.5 - 1.0  # centre 112×112 of 240×320
        assert np.abs(views[6 * j] - expected).mean() < 0.01
    flow, _ = next(iter(pipelines.temporal_dataset(index, training=False, batch_size=1, image_size=112,
                                                    stack_length=5, crops=10)))
    x_plane = cv2.imread(str(root / video / "x_00001.jpg"), cv2.IMREAD_GRAYSCALE)[:112, :112] / 127.5 - 1.0
    assert np.abs(flow.numpy()[0, 0, ..., 0] - x_plane).mean() < 0.01  # top-left crop, first pair's x


@pytest.fixture(scope="module")
def four_videos(tmp_path_factory):
    """4 small videos told apart by brightness (offsets 0, 40, 80, 120)."""
    root = tmp_path_factory.mktemp("four")
    videos = [(f"v_{c}_g0{g}_c01", label) for label, c in enumerate("AB") for g in (1, 2)]
    for i, (video, _) in enumerate(videos):
        write_video(str(root), video, 4, size=(24, 32), offset=40 * i)
    return index_videos(str(root), videos)


def test_input_context_shards_videos_and_splits_the_batch(four_videos):
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        batches = batches_of(pipelines.spatial_dataset(four_videos, training=False, batch_size=4, crops=1,
                                                        num_snippets=1, image_size=16, rgb_normalization="none",
                                                        input_context=context))
        assert [b[0].shape[0] for b in batches] == [2]  # per-replica batch of the global 4
        seen += [int(round((v.mean() - 31) / 40)) for v in batches[0][0][:, 0, ..., 0]]
    assert sorted(seen) == [0, 1, 2, 3]  # each video read by exactly one pipeline


def test_model_fit_takes_the_dataset(four_videos):
    import keras

    model = keras.Sequential([keras.Input((16, 16, 6)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    dataset = pipelines.temporal_dataset(four_videos, training=True, batch_size=2, stack_length=3, image_size=16,
                                         seed=0)
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    sys.path.insert(0, sys.argv[2])
    from pipeline_helpers import index_videos
    from two_stream_tf.data import pipelines

    videos = [(f"v_{c}_g0{g}_c01", label) for label, c in enumerate("AB") for g in (1, 2)]
    index = index_videos(sys.argv[1], videos)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    contexts = []

    def dataset_fn(context):
        contexts.append((context.num_input_pipelines, context.get_per_replica_batch_size(4)))
        return pipelines.spatial_dataset(index, training=True, batch_size=4, image_size=16, seed=0, repeat=True,
                                         input_context=context)

    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    x, labels = next(iter(dataset))
    shapes = [list(t.shape) for t in strategy.experimental_local_results(x)]
    with strategy.scope():
        model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "shapes": shapes, "contexts": contexts,
                      "loss": history.history["loss"]}))
""")


def test_mirrored_strategy_over_two_cpus(four_videos, tmp_path):
    # Logical devices must be set before TensorFlow initialises, hence a fresh process.
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script), four_videos.root, os.path.dirname(__file__)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["contexts"] == [[1, 2]]
    assert result["shapes"] == [[2, 16, 16, 3], [2, 16, 16, 3]]
    assert np.isfinite(result["loss"][0])
