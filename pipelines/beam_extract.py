"""RGB frames and optical flow from videos as an Apache Beam pipeline (needs `pip install .[beam]`).

Takes the flags of `two-stream prepare` (except --workers: Beam decides the parallelism) plus any standard
Beam pipeline options, and writes the same files, byte for byte:

    python pipelines/beam_extract.py UCF-101 frames --flow tvl1 --runner DirectRunner \
        --direct_num_workers 2 --direct_running_mode multi_processing
    python pipelines/beam_extract.py /mnt/nfs/UCF-101 /mnt/nfs/frames --runner FlinkRunner \
        --flink_master host:8081 --setup_file ./setup.py ...

(`--setup_file ./setup.py` installs this package on the workers.)

The output must be a shared POSIX file system mounted at the same path on every worker. Exit status: 0 all
videos done, 1 some failed (see OUTPUT/.prepare/failures.tsv), 2 bad arguments.
"""
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from two_stream_tf.commands._arguments import Parser
from two_stream_tf.commands.prepare import add_extraction_arguments, extraction_settings, list_videos
from two_stream_tf.errors import UserError
from two_stream_tf.preparation.beam import extract_videos_pipeline, read_run_report
from two_stream_tf.preparation.settings import ExtractionSettings


def main(argv):
    parser = Parser(prog="beam_extract.py", description=__doc__.splitlines()[0],
                            epilog="Other options are passed to Beam as PipelineOptions.")
    add_extraction_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    settings = ExtractionSettings(**extraction_settings(args))
    paths = list_videos(args)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        extract_videos_pipeline(pipeline, paths, args.output, settings)
    report = read_run_report(paths, args.output, settings)
    print(report.describe())
    return report.exit_code


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UserError as error:
        print(f"beam_extract.py: error: {error}", file=sys.stderr)
        sys.exit(2)
