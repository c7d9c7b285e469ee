"""Storage anywhere: tf.io.gfile paths (ram:// here, no network needed), atomic writes and file generations."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf import storage
from two_stream_tf.data import pipelines
from two_stream_tf.data.index import build_index
from two_stream_tf.data.splits import load_split
from two_stream_tf.data.tfrecord import open_packed, pack_index
from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic, callbacks


def test_paths_with_and_without_schemes():
    assert (storage.scheme("gs://b/x"), storage.scheme("/data/x"), storage.scheme("file:///data/x")) == ("gs", "", "")
    assert storage.scheme("runs/a://b") == ""  # a colon inside a local relative path is no scheme
    assert storage.join("ram://r/", "a", "b.keras") == "ram://r/a/b.keras"
    assert storage.dirname("ram://r/a/b.keras") == "ram://r/a" and storage.basename("ram://r/a/b.keras") == "b.keras"
    assert storage.absolute("gs://b/run") == "gs://b/run" and storage.absolute("run") == os.path.abspath("run")
    with pytest.raises(UserError, match=r"^--x=nofs://a/b: TensorFlow has no file system for 'nofs://' paths"):
        storage.check("nofs://a/b", "--x")


def test_atomic_writes_on_a_remote_store_leave_no_temporaries():
    path = "ram://atomic_test/folder/metrics.json"
    atomic.write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(path) as tmp:
            assert not storage.is_remote(tmp)  # writers get a local file
            with open(tmp, "w") as handle:
                handle.write("half")
            raise RuntimeError("killed")
    assert storage.read_text(path) == "old"
    atomic.write_text(path, "new")
    assert storage.read_text(path) == "new" and storage.listdir("ram://atomic_test/folder") == ["metrics.json"]
    storage.rmtree("ram://atomic_test")


@pytest.mark.parametrize("folder", ["local", "ram://generations_test"])
def test_a_damaged_generation_falls_back_to_the_previous_one(tmp_path, folder):
    folder = str(tmp_path) if folder == "local" else folder
    path = storage.join(folder, "log.csv")
    atomic.write_generation_text(path, "epoch,loss\n0,2.5\n")
    atomic.write_generation_text(path, "epoch,loss\n0,2.5\n1,2.0\n")
    assert storage.read_text(atomic.previous_path(path)) == "epoch,loss\n0,2.5\n"
    assert [r["epoch"] for r in callbacks.ResumableCSVLogger.read_rows(path)] == [0, 1]
    atomic.write_text(path, "epoch,loss\n0,2.5\n1,2.")  # torn: no line end
    with pytest.warns(RuntimeWarning, match=r"training log .*log\.csv is damaged \(ValueError: the last line is cut"):
        rows = callbacks.ResumableCSVLogger.read_rows(path)
    assert rows == [{"epoch": 0, "loss": 2.5}]
    # Killed between the two renames: only the staged new generation and the previous one exist.
    storage.remove(path)
    atomic.write_text(atomic.staged_path(path), "epoch,loss\n0,2.5\n1,2.0\n2,1.5\n")
    assert [r["epoch"] for r in callbacks.ResumableCSVLogger.read_rows(path)] == [0, 1, 2]
    if storage.is_remote(folder):
        storage.rmtree(folder)


def _copy_tree(source, destination):
    for folder, _, files in os.walk(source):
        target = storage.join(destination, os.path.relpath(folder, source)) if folder != source else destination
        storage.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(folder, name), storage.join(target, name), overwrite=True)


def test_frames_and_packed_records_on_a_remote_store_give_the_same_batches(synthetic_dataset):
    split = load_split(synthetic_dataset.split_dir, 1)
    entries = split.subset("test")[:6]
    local = build_index(synthetic_dataset.frames_dir, entries, split.classes, cache=False)
    remote_root = "ram://frames_test/frames"
    for entry in local.entries:
        _copy_tree(os.path.join(local.root, entry.video), storage.join(remote_root, entry.video))
    remote = build_index(remote_root, entries, split.classes)
    assert remote.root == remote_root and remote.entries == local.entries
    assert remote.rgb_path(remote.entries[0], 0) == f"{remote_root}/{remote.entries[0].video}/img_00001.jpg"

    def first_batch(index, **shuffle):
        dataset = pipelines.spatial_dataset(index, training=True, batch_size=4, image_size=32, seed=3,
                                            deterministic=True, repeat=True, **shuffle)
        x, y = next(iter(dataset))
        return x.numpy(), y.numpy()

    x_local, y_local = first_batch(local)
    x_remote, y_remote = first_batch(remote)
    np.testing.assert_array_equal(y_local, y_remote)
    np.testing.assert_array_equal(x_local, x_remote)
    assert float(np.abs(x_local).max()) > 0

    packed = pack_index(remote, "ram://frames_test/packed", shards=2, progress=False)
    reopened = open_packed("ram://frames_test/packed")
    assert reopened.shards == packed.shards and reopened.shards[0].startswith("ram://frames_test/packed/")
    assert json.loads(storage.read_text("ram://frames_test/packed/packed.json"))["shard_sizes"] == [3, 3]
    # Unshuffled (frame folders are permuted, packed records go through a buffer): the same samples.
    x_packed, y_packed = first_batch(reopened, shuffle_buffer=0)
    x_frames, y_frames = first_batch(local, shuffle_buffer=0)
    np.testing.assert_array_equal(y_packed, y_frames)
    np.testing.assert_array_equal(x_packed, x_frames)
    storage.rmtree("ram://frames_test")


def test_unreachable_or_unknown_stores_are_one_clear_error():
    with pytest.raises(UserError, match=r"^frames folder=nofs://x/frames: TensorFlow has no file system"):
        build_index("nofs://x/frames", [], ())
    with pytest.raises(UserError, match=r"^packed folder=gs://two-stream-no-such-bucket/p: cannot reach the gs:// "):
        open_packed("gs://two-stream-no-such-bucket/p")
