"""The whole method on synthetic videos in one command: the same as `two-stream quickstart …`.

    python experiments/quickstart.py                      # about 5 minutes on 2 CPU cores
    python experiments/quickstart.py --output my_quickstart --fast

A thin absl entry point over `two_stream_tf.commands.quickstart` (run with --help for the options).
"""
import os
import sys

from absl import app, flags

try:
    from two_stream_tf import cli
except ImportError:  # run from a clone without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from two_stream_tf import cli


def main(argv):
    # `two-stream quickstart` parses its own options; absl only runs it (and sets up logging).
    return cli.main(["quickstart", *argv[1:]])


def _keep_arguments(argv):
    flags.FLAGS(argv[:1])  # absl's own flags stay unset; every option goes to `two-stream quickstart`
    return argv


if __name__ == "__main__":
    app.run(main, flags_parser=_keep_arguments)
