"""Where the pipelines get a video's JPEG bytes: frame folders (a `DatasetIndex`) or packed TFRecords.

A source gives the pipelines three things:

- `epoch_videos(epoch_key, …)`: a dataset of per-video dicts for one epoch — "video" (id), "key" (hash of
  the id, see `sampling.video_keys`), "epoch_key", "label", "num_frames", "num_flow", plus what the source
  needs to find bytes — in index order or shuffled, and sharded for `tf.distribute` input pipelines;
- `locate(video, stream, indices)`: in-graph, the locators and display names of the sampled files —
  paths built from the layout's parts for folders, the bytes themselves for packed records;
- `load(locators)`: the file contents (reads files; a no-op for records).

Both sources give the same bytes for the same video and indices, so the same sampling yields the same
tensors from either.
"""
import os

import tensorflow as tf

from two_stream_tf.data import sampling, tfrecord
from two_stream_tf.data.decode import read_files

DEFAULT_RECORD_SHUFFLE_BUFFER = 16  # whole videos (several MB each) held for shuffling packed records


def for_index(index):
    """The source of an index: `PackedSource` for a `PackedIndex`, else `FolderSource`."""
    if isinstance(index, tfrecord.PackedIndex):
        return PackedSource(index)
    return FolderSource(index)


def _epoch_permutation(count, seed, epoch_key):
    uniform = tf.random.stateless_uniform([count], tf.stack([tf.cast(seed, tf.int64), epoch_key]))
    return tf.argsort(uniform, stable=True)


def _interleave_xy(x, y):
    """`[..., L]` x and y -> `[..., 2L]` as `[x1, y1, x2, y2, …]`."""
    stacked = tf.stack([x, y], -1)
    return tf.reshape(stacked, tf.concat([tf.shape(x)[:-1], [2 * x.shape[-1]]], 0))


class FolderSource:
    """JPEG files in frame folders, paths built in-graph from the index's layout.

    Args:
      index: an object with `.root`, `.layout` (a `Layout` with `start` resolved) and `.entries`
        (`video`, `label`, `num_frames`, `num_flow`), e.g. a `DatasetIndex`.
    """

    def __init__(self, index):
        self.entries = tuple(index.entries)
        self.layout = index.layout
        self.root = index.root

    def _table(self, entries):
        layout = self.layout

        def prefix(folder, name, video):
            return os.path.join(self.root, folder.format(video=video), name)

        return {
            "video": tf.constant([e.video for e in entries], tf.string),
            "label": tf.constant([e.label for e in entries], tf.int32),
            "num_frames": tf.constant([e.num_frames for e in entries], tf.int32),
            "num_flow": tf.constant([e.num_flow for e in entries], tf.int32),
            "rgb_prefix": tf.constant([prefix(layout.rgb_dir, layout.rgb_prefix, e.video) for e in entries]),
            "flow_x_prefix": tf.constant([prefix(layout.flow_x_dir, layout.flow_x_prefix, e.video) for e in entries]),
            "flow_y_prefix": tf.constant([prefix(layout.flow_y_dir, layout.flow_y_prefix, e.video) for e in entries]),
        }

    def epoch_videos(self, epoch_key, *, shard_index=0, num_shards=1, shuffle=False, seed=0, shuffle_buffer=None,
                     streams=("rgb", "flow")):
        """One epoch of this shard's videos; shuffled means a full permutation keyed by (seed, epoch_key)."""
        del shuffle_buffer, streams  # folders are permuted whole; every stream is found by path
        entries = self.entries[shard_index::num_shards]
        table = self._table(entries)
        table["key"] = sampling.video_keys(table["video"])
        table["epoch_key"] = tf.fill([len(entries)], tf.cast(epoch_key, tf.int64))
        if shuffle:
            order = _epoch_permutation(len(entries), seed, epoch_key)
            table = {name: tf.gather(values, order) for name, values in table.items()}
        return tf.data.Dataset.from_tensor_slices(table)

    def _names(self, prefix, indices):
        numbers = tf.strings.as_string(indices + self.layout.start, width=self.layout.digits, fill="0")
        return prefix + numbers + self.layout.extension

    def locate(self, video, stream, indices):
        """Paths of RGB frames (`stream="rgb"`, indices `[...]` -> `[...]`) or of flow pairs (`"flow"`,
        pair indices `[..., L]` -> x/y paths `[..., 2L]`); locators and names are both the paths."""
        if stream == "rgb":
            paths = self._names(video["rgb_prefix"], indices)
        else:
            paths = _interleave_xy(self._names(video["flow_x_prefix"], indices),
                                   self._names(video["flow_y_prefix"], indices))
        return paths, paths

    def load(self, locators):
        """Reads the files (static shape)."""
        flat = read_files(tf.reshape(locators, [-1]))
        return tf.reshape(flat, tf.shape(locators))


def _shuffle(dataset, buffer_size, seed):
    """`dataset.shuffle` with a seed tensor, whatever the global seed.

    `Dataset.shuffle` combines its seed with the graph's global seed in Python, comparing the pair with
    (0, 0): with `tf.random.set_seed(0)` (as `keras.utils.set_random_seed(0)` does) that comparison turns a
    seed tensor into a Python bool and fails. The pipelines' randomness is meant to depend on their own seed
    only, so the graph-level seed is left out while the shuffle is built.
    """
    if tf.executing_eagerly():
        return dataset.shuffle(buffer_size, seed=int(seed))
    graph = tf.compat.v1.get_default_graph()
    global_seed, graph.seed = graph.seed, None
    try:
        return dataset.shuffle(buffer_size, seed=seed)
    finally:
        graph.seed = global_seed


class PackedSource:
    """Videos packed by `two_stream_tf.data.tfrecord`: sampling picks frames out of each record's bytes.

    Args:
      index: a `PackedIndex`.
    """

    def __init__(self, index):
        self.entries = tuple(index.entries)
        self.shards = tuple(index.shards)

    def epoch_videos(self, epoch_key, *, shard_index=0, num_shards=1, shuffle=False, seed=0, shuffle_buffer=None,
                     streams=("rgb", "flow")):
        """One epoch of records; shuffled means shard files permuted by (seed, epoch_key), up to 4 read
        in turn, and a shuffle buffer of `shuffle_buffer` videos."""
        by_file = len(self.shards) >= num_shards
        files = self.shards[shard_index::num_shards] if by_file else self.shards
        files = tf.constant(files)
        if shuffle:
            files = tf.gather(files, _epoch_permutation(int(files.shape[0]), seed, epoch_key))
        cycle = min(4, int(files.shape[0])) if shuffle else 1
        records = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=cycle, block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE if cycle > 1 else None, deterministic=True)
        if not by_file:
            records = records.shard(num_shards, shard_index)
        if shuffle:
            shuffle_seed = tf.random.stateless_uniform([], tf.stack([tf.cast(seed, tf.int64), epoch_key]),
                                                       minval=1, maxval=2 ** 62, dtype=tf.int64)
            records = _shuffle(records, shuffle_buffer or DEFAULT_RECORD_SHUFFLE_BUFFER, shuffle_seed)

        def parse(serialized):
            video = tfrecord.parse_video(serialized, rgb="rgb" in streams, flow="flow" in streams)
            video["key"] = sampling.video_keys(video["video"])
            video["epoch_key"] = tf.cast(epoch_key, tf.int64)
            return video

        return records.map(tf.autograph.experimental.do_not_convert(parse), num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True)

    def _names(self, video, feature, indices):
        return video["video"] + f":{feature}[" + tf.strings.as_string(indices) + "]"

    def locate(self, video, stream, indices):
        """The sampled JPEG bytes (locators) and names like `video:image/encoded[12]`; see `FolderSource`."""
        if stream == "rgb":
            return tf.gather(video["rgb_data"], indices), self._names(video, tfrecord.RGB_FRAMES, indices)
        data = _interleave_xy(tf.gather(video["flow_x_data"], indices), tf.gather(video["flow_y_data"], indices))
        names = _interleave_xy(self._names(video, tfrecord.FLOW_X, indices),
                               self._names(video, tfrecord.FLOW_Y, indices))
        return data, names

    def load(self, locators):
        """The bytes are the locators."""
        return locators
