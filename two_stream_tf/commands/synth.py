"""`two-stream synth --output DIR`: a small synthetic UCF-101-style dataset of action videos.

Writes `DIR/videos/<Class>/v_<Class>_gGG_cCC.avi`, `DIR/classInd.txt`, `trainlist01.txt`, `testlist01.txt`,
and (unless `--no-frames`) TSN frame folders `DIR/frames/<video>/` whose flow images are the generator's
ground-truth motion. A frame shows a class's look, the flow its motion, and only both together tell the class.

    two-stream synth --output demo_data
    two-stream synth --output demo_data --classes 16 --videos-per-class 20 --frames 48 --size 160x120
"""
import argparse

from two_stream_tf.commands._arguments import Parser, frame_size, whole_number
from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.data.synthetic import MAX_CLASSES, write_synthetic_dataset

HELP = "write a small synthetic action dataset (AVIs, split files, frames + ground-truth flow)"



def build_parser():
    parser = Parser(prog="two-stream synth", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder to write the dataset into")
    parser.add_argument("--classes", type=whole_number(1, MAX_CLASSES), default=8,
                        help=f"number of classes, 1..{MAX_CLASSES} (default 8)")
    parser.add_argument("--videos-per-class", type=whole_number(2), default=12, help="clips per class, >= 2 (default 12)")
    parser.add_argument("--frames", type=whole_number(2), default=32, help="frames per video, >= 2 (default 32)")
    parser.add_argument("--size", type=frame_size(16, example="128x96"), default=(128, 96), metavar="WxH", help="frame size (default 128x96)")
    parser.add_argument("--seed", type=whole_number(0), default=0, help="random seed; the same seed writes the same files")
    parser.add_argument("--layout", default="tsn", choices=sorted(LAYOUTS), help="frame folder layout (default tsn)")
    parser.add_argument("--no-frames", action="store_true", help="write only the videos and split files")
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    dataset = write_synthetic_dataset(
        args.output, num_classes=args.classes, videos_per_class=args.videos_per_class, num_frames=args.frames,
        frame_size=args.size, seed=args.seed, write_frames=not args.no_frames, layout=args.layout, progress=None)
    train = sum(v.subset == "train" for v in dataset.videos)
    print(f"wrote {len(dataset.videos)} videos of {len(dataset.classes)} classes "
          f"({train} train / {len(dataset.videos) - train} test) to {dataset.root}")
    print(f"  videos:      {dataset.videos_dir}")
    print(f"  split files: {dataset.split_dir} (classInd.txt, trainlist01.txt, testlist01.txt)")
    if dataset.frames_dir:
        print(f"  frames:      {dataset.frames_dir} ({dataset.layout.name} layout, ground-truth flow)")
        print(f"next: two-stream index {dataset.frames_dir} --split-dir {dataset.split_dir}")
    return 0
