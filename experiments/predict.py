"""Predicts the actions in videos, streams or a camera: the same as `two-stream predict …`.

    python experiments/predict.py v_Archery_g02_c02.avi --model runs/fusion/final.keras --class-index classInd.txt
    python experiments/predict.py 0 --model spatial.keras --model temporal.keras --window 64 --annotate live.mp4

A thin absl entry point over `two_stream_tf.commands.predict` (run with --help for the options).
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
    # `two-stream predict` parses its own options; absl only runs it (and sets up logging).
    return cli.main(["predict", *argv[1:]])


def _keep_arguments(argv):
    flags.FLAGS(argv[:1])  # absl's own flags stay unset; every option goes to `two-stream predict`
    return argv


if __name__ == "__main__":
    app.run(main, flags_parser=_keep_arguments)
