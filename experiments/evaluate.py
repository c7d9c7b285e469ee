"""Scores a trained model by the test protocol: the same as `two-stream evaluate …`.

    python experiments/evaluate.py --flagfile=experiments/configs/<recipe>.cfg [--flag=value ...]

A thin wrapper over `two_stream_tf.commands.evaluate` (run with --help for the flags).
"""
import os
import sys

try:
    from two_stream_tf.commands import _training_flags, evaluate
except ImportError:  # run from a clone without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from two_stream_tf.commands import _training_flags, evaluate

PROG = os.path.basename(__file__)


def main(argv):
    return evaluate.main(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(_training_flags.run(main, sys.argv[1:], PROG))
