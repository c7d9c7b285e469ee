"""Fuses per-video score files: the same as `two-stream fuse …`.

    python experiments/fuse.py --flagfile=experiments/configs/<recipe>.cfg [--flag=value ...]

A thin wrapper over `two_stream_tf.commands.fuse` (run with --help for the flags).
"""
import os
import sys

try:
    from two_stream_tf.commands import _training_flags, fuse
except ImportError:  # run from a clone without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from two_stream_tf.commands import _training_flags, fuse

PROG = os.path.basename(__file__)


def main(argv):
    return fuse.main(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(_training_flags.run(main, sys.argv[1:], PROG))
