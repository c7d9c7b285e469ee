"""`two-stream pack FRAMES_ROOT --split-dir DIR --output DIR --shards N`: frame folders -> packed TFRecords.

Indexes the split's videos (as `two-stream index` does), then writes one `SequenceExample` per video with
all its RGB and flow JPEG bytes into N shard files per subset, under `OUTPUT/train` and `OUTPUT/test`.
The pipelines read a packed folder like the frame folders (`two_stream_tf.data.tfrecord.open_packed`).
Shards already written with the same videos are kept, so an interrupted run resumes.

    two-stream pack frames --split-dir ucfTrainTestlist --output packed --shards 64
    two-stream pack rawframes --split-dir ucfTrainTestlist --split 2 --subset test --output packed2 --shards 8
"""
import argparse
import os

from two_stream_tf.commands._arguments import Parser
from two_stream_tf.data.index import open_split_index
from two_stream_tf.data.layouts import AUTO, LAYOUTS
from two_stream_tf.data.tfrecord import pack_index

HELP = "pack a split's frame folders into sharded TFRecords (one SequenceExample per video)"



def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def build_parser():
    parser = Parser(prog="two-stream pack", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames_root", metavar="FRAMES_ROOT", help="folder of the video frame folders")
    parser.add_argument("--split-dir", required=True, help="folder of the split files (UCF-101 or HMDB-51 style)")
    parser.add_argument("--output", required=True, help="folder to write OUTPUT/train and OUTPUT/test into")
    parser.add_argument("--shards", type=_positive, default=1, help="shard files per subset (default 1)")
    parser.add_argument("--split", type=_positive, default=1, help="split number (default 1)")
    parser.add_argument("--subset", choices=("train", "test"), help="pack one subset (default: both)")
    parser.add_argument("--layout", default=AUTO, choices=(AUTO, *LAYOUTS), help="frame layout (default: detect)")
    parser.add_argument("--class-subset", metavar="FILE", help="classInd-style file of the classes to keep")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    subsets = [args.subset] if args.subset else ["train", "test"]
    indexes = {subset: open_split_index(args.frames_root, args.split_dir, split=args.split, subset=subset,
                                        class_subset=args.class_subset, layout=args.layout)
               for subset in subsets}
    for subset, index in indexes.items():
        shards = min(args.shards, len(index))
        if shards < args.shards:
            print(f"{subset}: {len(index)} videos, so {shards} shard(s) instead of {args.shards}")
        folder = os.path.join(args.output, subset)
        packed = pack_index(index, folder, shards=shards, progress=not args.no_progress)
        size = sum(os.path.getsize(path) for path in packed.shards)
        print(f"{subset}: {len(packed)} videos in {len(packed.shards)} shard(s), {size / 1e6:.1f} MB -> {folder}")
    return 0
