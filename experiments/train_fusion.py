"""Trains a recurrent fusion of two trained, frozen streams: the same as `two-stream train --stream=fusion …`.

    python experiments/train_fusion.py --flagfile=experiments/configs/<recipe>.cfg [--flag=value ...]

A thin wrapper over `two_stream_tf.commands.train` (run with --help for the flags).
"""
import os
import sys

try:
    from two_stream_tf.commands import _training_flags, train
except ImportError:  # run from a clone without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from two_stream_tf.commands import _training_flags, train

PROG = os.path.basename(__file__)


def main(argv):
    return train.main(argv, stream="fusion", prog=PROG)


if __name__ == "__main__":
    sys.exit(_training_flags.run(main, sys.argv[1:], PROG))
