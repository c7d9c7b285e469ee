"""Packed TFRecords: `two-stream pack`, the record format, resuming, and the reader equal to the folder reader."""
import os

import numpy as np
import pytest
import tensorflow as tf

from pipeline_helpers import index_videos, write_video
from two_stream_tf import cli
from two_stream_tf.data import pipelines, tfrecord
from two_stream_tf.data.index import open_split_index
from two_stream_tf.errors import UserError


@pytest.fixture(scope="module")
def packed_synthetic(synthetic_dataset, tmp_path_factory):
    """The synthetic dataset's split 1 packed by the CLI into 3 shards per subset."""
    output = tmp_path_factory.mktemp("packed")
    status = cli.main(["pack", str(synthetic_dataset.frames_dir), "--split-dir", str(synthetic_dataset.split_dir),
                       "--output", str(output), "--shards", "3", "--no-progress"])
    assert status == 0
    folders = open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset="train")
    test_folders = open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset="test")
    assert tfrecord.open_packed(output / "test").entries == test_folders.entries
    return folders, tfrecord.open_packed(output / "train"), output


def test_pack_writes_every_video_in_order(packed_synthetic):
    folders, packed, _ = packed_synthetic
    assert packed.entries == folders.entries and packed.classes == folders.classes
    assert [os.path.basename(s) for s in packed.shards] == [f"videos-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sum(packed.shard_sizes) == len(folders) and min(packed.shard_sizes) >= len(folders) // 3
    # Shards hold consecutive runs of the index: the first record of shard 2 is the matching video.
    first = next(iter(tf.data.TFRecordDataset(packed.shards[2]).take(1)))
    video = tfrecord.parse_video(first)
    entry = folders.entries[packed.shard_sizes[0] + packed.shard_sizes[1]]
    assert video["video"].numpy().decode() == entry.video
    assert (int(video["num_frames"]), int(video["num_flow"]), int(video["label"])) == (
        entry.num_frames, entry.num_flow, entry.label)
    with open(folders.rgb_path(entry, 3), "rb") as f:
        assert video["rgb_data"][3].numpy() == f.read()
    with open(folders.flow_paths(entry, 5)[1], "rb") as f:
        assert video["flow_y_data"][5].numpy() == f.read()


def assert_same_batches(a, b, batches):
    count = 0
    for (xa, ya), (xb, yb) in zip(a.take(batches), b.take(batches)):
        for key in (xa if isinstance(xa, dict) else {None: None}):
            np.testing.assert_array_equal(xa[key] if key else xa, xb[key] if key else xb)
        np.testing.assert_array_equal(ya, yb)
        count += 1
    assert count == batches


def test_packed_reader_equals_folder_reader(packed_synthetic):
    folders, packed, _ = packed_synthetic
    training = dict(training=True, batch_size=8, image_size=32, seed=5, deterministic=True, shuffle_buffer=0)
    assert_same_batches(pipelines.two_stream_dataset(folders, stack_length=3, num_segments=2, **training),
                        pipelines.two_stream_dataset(packed, stack_length=3, num_segments=2, **training), 2)
    assert_same_batches(pipelines.spatial_dataset(folders, **training),
                        pipelines.spatial_dataset(packed, **training), 2)
    testing = dict(training=False, batch_size=2, image_size=32, crops=3, num_snippets=2)
    assert_same_batches(pipelines.temporal_dataset(folders, stack_length=5, **testing),
                        pipelines.temporal_dataset(packed, stack_length=5, **testing), 2)


def test_shuffled_records_cover_each_video_once(packed_synthetic):
    folders, packed, _ = packed_synthetic
    dataset = pipelines.spatial_dataset(packed, training=True, batch_size=16, image_size=16, seed=3)
    labels = np.concatenate([y.numpy() for _, y in dataset])
    expected = np.array([e.label for e in folders.entries])
    assert sorted(labels.tolist()) == sorted(expected.tolist())
    assert not np.array_equal(labels, expected)


def test_shuffled_records_build_and_repeat_under_a_global_seed_of_zero(packed_synthetic):
    # tf.random.set_seed(0) (what keras.utils.set_random_seed(0) sets) once made building the shuffle fail.
    folders, packed, _ = packed_synthetic

    def labels_after(global_seed):
        tf.random.set_seed(global_seed)
        try:
            dataset = pipelines.spatial_dataset(packed, training=True, batch_size=16, image_size=16, seed=3,
                                                deterministic=True)
            return np.concatenate([y.numpy() for _, y in dataset])
        finally:
            tf.random.set_seed(None)

    first = labels_after(0)
    np.testing.assert_array_equal(first, labels_after(0))
    assert sorted(first.tolist()) == sorted(e.label for e in folders.entries)


def test_shards_split_between_input_pipelines(packed_synthetic):
    _, packed, _ = packed_synthetic
    counts = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        dataset = pipelines.spatial_dataset(packed, training=True, batch_size=64, image_size=8, seed=1,
                                            input_context=context)
        counts.append(sum(int(y.shape[0]) for _, y in dataset))
    # 3 shard files over 2 pipelines: files 0 and 2, and file 1.
    assert counts == [packed.shard_sizes[0] + packed.shard_sizes[2], packed.shard_sizes[1]]


@pytest.fixture()
def small_index(tmp_path):
    videos = [("v_A_g01_c01", 0), ("v_A_g02_c01", 0), ("v_B_g01_c01", 1)]
    for video, _ in videos:
        write_video(str(tmp_path / "frames"), video, 4, size=(16, 16))
    return index_videos(str(tmp_path / "frames"), videos)


def test_packing_again_keeps_complete_shards(small_index, tmp_path):
    output = tmp_path / "packed"
    tfrecord.pack_index(small_index, output, shards=2, progress=False)
    shard0, shard1 = (output / tfrecord.shard_name(s, 2) for s in range(2))
    before = shard0.stat().st_mtime_ns
    os.utime(shard1, ns=(1, 1))
    (output / (tfrecord.shard_name(1, 2) + ".json")).write_text("[]")  # shard 1 looks unfinished
    packed = tfrecord.pack_index(small_index, output, shards=2, progress=False)
    assert shard0.stat().st_mtime_ns == before  # kept
    assert shard1.stat().st_mtime_ns != 1  # written again
    assert packed.shard_sizes == (1, 2) and packed.entries == small_index.entries


def test_pack_errors_name_the_problem(small_index, tmp_path, capsys):
    with pytest.raises(UserError, match="--shards must be between 1 and the number of videos"):
        tfrecord.pack_index(small_index, tmp_path / "out", shards=4)
    with pytest.raises(UserError, match="not a packed folder"):
        tfrecord.open_packed(tmp_path)
    status = cli.main(["pack", str(tmp_path / "frames"), "--split-dir", str(tmp_path), "--output",
                       str(tmp_path / "out"), "--shards", "0"])
    assert status == 2
    assert "'0' is not a positive whole number" in capsys.readouterr().err
