"""The frame and flow extraction as an Apache Beam pipeline (extra `beam`), for Dataflow, Flink or Spark.

Every video is one element, extracted by the same `extract_with_settings` that `two-stream prepare` runs,
so for the same videos and settings both write the same files, byte for byte. The per-video
temporary-folder → check → rename → check → done-marker protocol (`two_stream_tf.preparation.output`) makes
the pipeline idempotent under Beam's bundle retries: a retried element either finds its marker (and files
that agree with it) and skips, or rewrites the video from scratch in a fresh temporary folder and swaps it
in. Temporary folders whose writer is gone are removed once before any video starts and once after all have
finished; one that a live worker holds (an advisory lock) is never touched.

The output folder must be a POSIX file system that every worker mounts at the same path (local disk for
the DirectRunner, NFS / Filestore / Lustre on a cluster), with working `flock` locks; renames on object
stores are not atomic.

    import apache_beam as beam
    from two_stream_tf.preparation import ExtractionSettings, find_videos
    from two_stream_tf.preparation.beam import extract_videos_pipeline

    with beam.Pipeline(options=...) as pipeline:
        extract_videos_pipeline(pipeline, find_videos("UCF-101"), "frames", ExtractionSettings())
"""
import dataclasses
import os

import apache_beam as beam
import cv2

from two_stream_tf.preparation.discovery import check_unique_ids, video_id
from two_stream_tf.preparation.extract import FAILED, extract_with_settings
from two_stream_tf.preparation.output import OutputFolder
from two_stream_tf.preparation.video import quiet_opencv_warnings


class ExtractVideoFn(beam.DoFn):
    """Extracts one video per element (a path) and emits its `VideoResult`.

    Args:
      output_root: the dataset root, the same path on every worker.
      settings: an `ExtractionSettings`.
    """

    def __init__(self, output_root, settings):
        self.output_root = os.fspath(output_root)
        self.settings = settings
        self._previous_threads = None

    def setup(self):
        # Beam already runs one bundle per core; OpenCV threads on top would oversubscribe the cores.
        self._previous_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        quiet_opencv_warnings()  # failures are reported in the results and the failure report

    def process(self, video_path, staging_cleaned):
        del staging_cleaned  # a side input only to order this step after the clean-up
        yield extract_with_settings(video_path, self.output_root, self.settings)

    def teardown(self):
        if self._previous_threads is not None:
            cv2.setNumThreads(self._previous_threads)


class ExtractVideos(beam.PTransform):
    """PCollection of video paths → PCollection of `VideoResult`, written under `output_root`."""

    def __init__(self, output_root, settings):
        super().__init__()
        self.output_root = os.fspath(output_root)
        self.settings = settings

    def expand(self, video_paths):
        cleaned = (video_paths.pipeline
                   | "Once" >> beam.Create([None])
                   | "RemoveStaleTemporaries" >> beam.Map(_clean_staging, self.output_root))
        return (video_paths
                # Spread the videos over workers: a Create'd list would otherwise stay in one bundle.
                | "Spread" >> beam.Reshuffle()
                | "Extract" >> beam.ParDo(ExtractVideoFn(self.output_root, self.settings),
                                          beam.pvalue.AsSingleton(cleaned)))


def extract_videos_pipeline(pipeline, video_paths, output_root, settings):
    """Adds the whole extraction to `pipeline`: videos → frames and flow, then the failure report.

    Args:
      pipeline: a `beam.Pipeline`.
      video_paths: video files (see `find_videos`); their stems must be unique.
      output_root: the dataset root.
      settings: an `ExtractionSettings`.

    Returns:
      The PCollection of `VideoResult`.

    Raises:
      UserError: duplicate video ids.
    """
    paths = [os.fspath(p) for p in video_paths]
    check_unique_ids(paths)
    OutputFolder(output_root).create()
    results = (pipeline
               | "VideoPaths" >> beam.Create(paths)
               | "ExtractVideos" >> ExtractVideos(output_root, settings))
    _ = (results
         | "AllResults" >> beam.combiners.ToList()
         | "FinishRun" >> beam.Map(_finish, os.fspath(output_root)))
    return results


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What a finished pipeline left on disk.

    Attributes:
      done: ids of the requested videos that have a done-marker for the settings.
      failures: `(path, reason)` of the videos that failed, from the failure report.
      report_path: the failure report.
    """

    done: tuple
    failures: tuple
    report_path: str

    @property
    def exit_code(self):
        return 1 if self.failures else 0

    def describe(self):
        lines = [f"{len(self.done)} videos done, {len(self.failures)} failed"]
        if self.failures:
            lines.append(f"failed videos (also listed in {self.report_path}):")
            lines.extend(f"  {path}: {reason}" for path, reason in self.failures)
        return "\n".join(lines)


def read_run_report(video_paths, output_root, settings):
    """Reads the markers and the failure report a finished pipeline wrote (for its driver's summary)."""
    output = OutputFolder(output_root)
    done = tuple(video_id(p) for p in video_paths if output.is_done(video_id(p), settings))
    failures = []
    if os.path.isfile(output.report_path):
        with open(output.report_path, encoding="utf-8") as report:
            next(report, None)
            failures = [tuple(line.rstrip("\n").split("\t", 1)) for line in report if line.strip()]
    return RunReport(done, tuple(failures), output.report_path)


def _clean_staging(_, output_root):
    OutputFolder(output_root).clean_staging()
    return True


def _finish(results, output_root):
    output = OutputFolder(output_root)
    output.clean_staging()
    return output.write_failure_report((r.source, r.error) for r in results if r.status == FAILED)
