"""RGB frames and optical flow from videos with local worker processes: `two-stream prepare` as a script.

    python pipelines/extract_frames.py UCF-101 frames --flow tvl1 --workers 8

Same flags, files and exit status as `two-stream prepare` (see `two-stream prepare --help`); for a cluster,
use `pipelines/beam_extract.py`, which writes the same files.
"""
import sys

from two_stream_tf import cli

if __name__ == "__main__":
    sys.exit(cli.main(["prepare", *sys.argv[1:]]))
