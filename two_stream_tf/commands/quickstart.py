"""`two-stream quickstart`: the whole method on synthetic videos in one command, in about 5 minutes on a CPU.

Writes a small synthetic action dataset, extracts RGB frames and optical flow (DIS, fast on a CPU) from its
videos, trains the spatial and the temporal stream (MobileNet 0.25 at 64 pixels), scores every test video
by the published protocol (25 snippets x 10 crops), fuses the streams by averaging their softmax scores and
prints a Spatial | Temporal | Fusion accuracy table. OUTPUT gets results.json, confusion_matrix.png,
training_curves.png, annotated_sample.mp4, and the data, runs and evaluations behind them. Run it again to
resume after an interruption: finished stages are skipped.

    two-stream quickstart
    two-stream quickstart --output my_quickstart --weights mobilenet_2_5_224_tf_no_top.h5
    two-stream quickstart --fast            # a minute or two, tiny everything: checks the installation
"""
import argparse
import dataclasses
import os

from two_stream_tf.commands._arguments import Parser
from two_stream_tf.errors import UserError

HELP = "the whole method on synthetic videos: data, DIS flow, two streams, 25x10 test protocol, fusion, report"


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def build_parser():
    parser = Parser(prog="two-stream quickstart", description=__doc__.split("\n\n")[1],
                     epilog="examples:\n" + __doc__.split("\n\n")[2],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="quickstart_output",
                        help="folder to work in (default: quickstart_output); a rerun there resumes")
    parser.add_argument("--fast", action="store_true",
                        help="tiny data and one epoch per stream (a minute or two): checks that everything runs "
                        "and writes its files; the accuracies mean nothing")
    parser.add_argument("--weights", default=None,
                        help="a Keras weights file of MobileNet alpha 0.25 without top (e.g. "
                        "mobilenet_2_5_224_tf_no_top.h5), or 'imagenet' to download it, to start both streams "
                        "from ImageNet (the temporal one by cross-modality init); default: random init")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed of data, sampling and init (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch)")
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    weights = args.weights
    if weights not in (None, "imagenet"):
        if not os.path.isfile(weights):
            raise UserError(f"--weights: file not found: {weights}")
        weights = os.path.abspath(weights)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: less C++ start-up chatter
    from two_stream_tf import quickstart
    settings = dataclasses.replace(quickstart.FAST if args.fast else quickstart.FULL, seed=args.seed,
                                   weights=weights)
    quickstart.run_quickstart(args.output, settings, progress=not args.no_progress)
    return 0
