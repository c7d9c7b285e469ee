"""`two-stream index FRAMES_ROOT --split-dir DIR`: build and validate the dataset index, print a summary.

Finds the frame layout (or takes `--layout`) and whether video folders are flat or per class, counts every
video's RGB frames and flow pairs, and reports every broken video at once (exit 2). Counts are cached per
folder, so running it again is fast.

    two-stream index frames --split-dir ucfTrainTestlist --split 1
    two-stream index rawframes --split-dir ucfTrainTestlist --subset test --class-subset my10classes.txt
"""
import argparse
import json

from two_stream_tf.commands._arguments import Parser
from two_stream_tf.data.index import open_split_index
from two_stream_tf.data.layouts import AUTO, LAYOUTS

HELP = "build/validate the index of a frames folder for a split and print its statistics"



def _split_number(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a split number (1, 2, 3, …)")
    return value


def build_parser():
    parser = Parser(prog="two-stream index", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames_root", metavar="FRAMES_ROOT", help="folder of the video frame folders")
    parser.add_argument("--split-dir", required=True, help="folder of the split files (UCF-101 or HMDB-51 style)")
    parser.add_argument("--split", type=_split_number, default=1, help="split number (default 1)")
    parser.add_argument("--subset", choices=("train", "test"), help="index one subset (default: both)")
    parser.add_argument("--layout", default=AUTO, choices=(AUTO, *LAYOUTS), help="frame layout (default: detect)")
    parser.add_argument("--class-subset", metavar="FILE", help="classInd-style file of the classes to keep")
    parser.add_argument("--no-cache", action="store_true", help="count every folder again, write no cache")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _stats_line(name, stats):
    return f"{name:<18}min {stats['min']}, mean {stats['mean']:.1f}, max {stats['max']}, total {stats['total']}"


def main(argv):
    args = build_parser().parse_args(argv)
    summaries = {}
    for subset in ([args.subset] if args.subset else ["train", "test"]):
        index = open_split_index(args.frames_root, args.split_dir, split=args.split, subset=subset,
                                 class_subset=args.class_subset, layout=args.layout, cache=not args.no_cache)
        summaries[subset] = index.summary()
    if args.json:
        print(json.dumps({"split": args.split, **summaries}, indent=2))
        return 0
    first = next(iter(summaries.values()))
    print(f"frames root: {first['root']}")
    print(f"layout:      {first['layout']} (frames numbered from {first['start']})")
    print(f"classes:     {first['classes']}")
    for subset, summary in summaries.items():
        print(f"split {args.split} {subset}: {summary['videos']} videos, "
              f"{summary['classes_with_videos']} of {summary['classes']} classes present")
        print("  " + _stats_line("videos per class:", summary["videos_per_class"]))
        print("  " + _stats_line("RGB frames:", summary["frames"]))
        print("  " + _stats_line("flow pairs:", summary["flow"]))
    return 0
