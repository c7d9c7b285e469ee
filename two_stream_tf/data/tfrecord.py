"""Packed videos: one `tf.train.SequenceExample` per video holding all its JPEG bytes, in sharded TFRecords.

Reading a few large files instead of hundreds of small ones per video is what network file systems and
cloud storage want. The records keep the JPEG bytes as they are on disk (nothing is decoded or
re-encoded), so the pipelines read the same pixels from a packed folder as from the frame folders: they
sample frame indices on the string tensors of a record, then decode only the sampled frames.

Record (the Model Garden video style):

  context        video/id (bytes, the index's video folder path), video/label (int64, 0-based),
                 video/num_frames, video/num_flow (int64)
  feature lists  image/encoded (one bytes per RGB frame), flow/x/encoded, flow/y/encoded (one per pair)

A packed folder holds `videos-00000-of-0000N.tfrecord` … and `packed.json` (classes, videos in order,
shard of each video). Shards hold consecutive runs of the index's videos, so reading the shards in order
gives the index's order. A shard is written to a temporary name and renamed when complete, with a
`.json` sidecar listing its videos: packing again skips shards already complete with the same videos.
Packed folders (and the frames they are packed from) may be on any `tf.io.gfile` path (`gs://`, `ram://`).
"""
import dataclasses
import json
import os

import tensorflow as tf
from tqdm import tqdm

from two_stream_tf import storage
from two_stream_tf.data.index import VideoEntry
from two_stream_tf.errors import UserError

MANIFEST = "packed.json"
FORMAT = "two_stream_tf.packed_videos/1"
VIDEO_ID = "video/id"
LABEL = "video/label"
NUM_FRAMES = "video/num_frames"
NUM_FLOW = "video/num_flow"
RGB_FRAMES = "image/encoded"
FLOW_X = "flow/x/encoded"
FLOW_Y = "flow/y/encoded"


@dataclasses.dataclass(frozen=True, eq=False)
class PackedIndex:
    """The videos of a packed folder; the pipelines take it wherever they take a `DatasetIndex`.

    Attributes:
      root: absolute path of the packed folder.
      classes: class names, index = label.
      entries: `VideoEntry`s in packing order (the frame-folder index's order).
      shards: absolute paths of the shard files, in order.
      shard_sizes: videos per shard (consecutive runs of `entries`).
    """

    root: str
    classes: tuple
    entries: tuple
    shards: tuple
    shard_sizes: tuple
    layout = None

    def __len__(self):
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, i):
        return self.entries[i]


def shard_name(shard, num_shards):
    """File name of shard `shard` (0-based) of `num_shards`."""
    return f"videos-{shard:05d}-of-{num_shards:05d}.tfrecord"


def video_example(entry, rgb_frames, flow_x, flow_y):
    """The `SequenceExample` of one video.

    Args:
      entry: the video's `VideoEntry`.
      rgb_frames, flow_x, flow_y: sequences of JPEG bytes (one per frame / flow pair).

    Returns:
      `tf.train.SequenceExample`.
    """
    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def byte_list(values):
        return tf.train.FeatureList(
            feature=[tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for v in values])

    context = tf.train.Features(feature={
        VIDEO_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[entry.video.encode("utf-8")])),
        LABEL: ints(entry.label),
        NUM_FRAMES: ints(len(rgb_frames)),
        NUM_FLOW: ints(len(flow_x)),
    })
    lists = tf.train.FeatureLists(feature_list={
        RGB_FRAMES: byte_list(rgb_frames), FLOW_X: byte_list(flow_x), FLOW_Y: byte_list(flow_y)})
    return tf.train.SequenceExample(context=context, feature_lists=lists)


def _read(path):
    return storage.read_bytes(path)


def _plan(num_videos, num_shards):
    """Consecutive runs: shard s holds videos [bounds[s], bounds[s + 1])."""
    return [s * num_videos // num_shards for s in range(num_shards + 1)]


def pack_index(index, output_dir, *, shards=1, progress=True):
    """Writes every video of a frame-folder index as one record, in `shards` TFRecord files.

    Args:
      index: a `DatasetIndex` (frame folders).
      output_dir: the packed folder to write (created).
      shards: number of shard files (at most the number of videos).
      progress: show a tqdm bar over videos.

    Returns:
      The `PackedIndex` of the written folder.

    Raises:
      UserError: `shards` is not between 1 and the number of videos.
    """
    entries = tuple(index.entries)
    if not 1 <= shards <= max(len(entries), 1):
        raise UserError(f"--shards must be between 1 and the number of videos ({len(entries)}), got {shards}")
    output_dir = storage.absolute(storage.check(os.fspath(output_dir), "packed folder"))
    storage.makedirs(output_dir)
    bounds = _plan(len(entries), shards)
    bar = tqdm(total=len(entries), unit="video", desc="packing", disable=not progress)
    for shard in range(shards):
        videos = entries[bounds[shard]:bounds[shard + 1]]
        path = storage.join(output_dir, shard_name(shard, shards))
        sidecar = path + ".json"
        listing = [dataclasses.asdict(e) for e in videos]
        if storage.exists(path) and _load_json(sidecar) == listing:
            bar.update(len(videos))
            continue
        temporary = path + ".incomplete"
        with tf.io.TFRecordWriter(temporary) as writer:
            for entry in videos:
                rgb = [_read(index.rgb_path(entry, i)) for i in range(entry.num_frames)]
                flow = [index.flow_paths(entry, i) for i in range(entry.num_flow)]
                example = video_example(entry, rgb, [_read(x) for x, _ in flow], [_read(y) for _, y in flow])
                writer.write(example.SerializeToString())
                bar.update(1)
        storage.rename(temporary, path)
        _write_json(sidecar, listing)
    bar.close()
    manifest = {
        "format": FORMAT,
        "classes": list(index.classes),
        "shards": [shard_name(s, shards) for s in range(shards)],
        "shard_sizes": [bounds[s + 1] - bounds[s] for s in range(shards)],
        "videos": [dataclasses.asdict(e) for e in entries],
    }
    _write_json(storage.join(output_dir, MANIFEST), manifest)
    return open_packed(output_dir)


def open_packed(folder):
    """Opens a packed folder written by `pack_index`.

    Returns:
      A `PackedIndex`.

    Raises:
      UserError: no readable `packed.json`, or shard files are missing.
    """
    root = storage.absolute(storage.check(os.fspath(folder), "packed folder"))
    path = storage.join(root, MANIFEST)
    manifest = _load_json(path)
    if manifest is None:
        raise UserError(f"not a packed folder: {path} is missing or unreadable (write one with `two-stream pack`)")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path}: unknown format {manifest.get('format')!r}, expected {FORMAT!r}")
    try:
        entries = tuple(VideoEntry(**v) for v in manifest["videos"])
        shards = tuple(storage.join(root, name) for name in manifest["shards"])
        sizes = tuple(int(n) for n in manifest["shard_sizes"])
        classes = tuple(manifest["classes"])
    except (KeyError, TypeError) as error:
        raise UserError(f"{path}: malformed manifest ({error})") from None
    missing = [s for s in shards if not storage.exists(s)]
    if missing:
        raise UserError(f"{path}: {len(missing)} shard file(s) missing, e.g. {missing[0]}")
    if sum(sizes) != len(entries):
        raise UserError(f"{path}: shard sizes add up to {sum(sizes)} but {len(entries)} videos are listed")
    return PackedIndex(root=root, classes=classes, entries=entries, shards=shards, shard_sizes=sizes)


def parse_video(serialized, rgb=True, flow=True):
    """Parses one packed video record (in-graph).

    Args:
      serialized: string scalar, a serialized `SequenceExample`.
      rgb, flow: whether to parse the RGB frames / the flow pairs (skipping one saves copying its bytes).

    Returns:
      dict: "video" (string), "label", "num_frames", "num_flow" (int32), and "rgb_data" `(num_frames,)`,
      "flow_x_data", "flow_y_data" `(num_flow,)` JPEG bytes for the parsed streams.
    """
    context_spec = {
        VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
        NUM_FLOW: tf.io.FixedLenFeature([], tf.int64),
    }
    frames = tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
    sequence_spec = {}
    if rgb:
        sequence_spec[RGB_FRAMES] = frames
    if flow:
        sequence_spec[FLOW_X] = frames
        sequence_spec[FLOW_Y] = frames
    context, sequence = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
    video = {
        "video": context[VIDEO_ID],
        "label": tf.cast(context[LABEL], tf.int32),
        "num_frames": tf.cast(context[NUM_FRAMES], tf.int32),
        "num_flow": tf.cast(context[NUM_FLOW], tf.int32),
    }
    if rgb:
        video["rgb_data"] = sequence[RGB_FRAMES]
    if flow:
        video["flow_x_data"] = sequence[FLOW_X]
        video["flow_y_data"] = sequence[FLOW_Y]
    return video


def _load_json(path):
    try:
        return json.loads(storage.read_text(path))
    except (OSError, ValueError, tf.errors.NotFoundError):
        return None


def _write_json(path, data):
    temporary = path + ".incomplete"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(json.dumps(data))
    storage.rename(temporary, path)
