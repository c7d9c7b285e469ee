"""The Beam pipeline (DirectRunner) writes what `two-stream prepare` writes, and survives retried elements."""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("apache_beam")
import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from two_stream_tf import cli  # noqa: E402
from two_stream_tf.preparation import ExtractionSettings, OutputFolder, find_videos  # noqa: E402
from two_stream_tf.preparation.beam import ExtractVideoFn, extract_videos_pipeline, read_run_report  # noqa: E402

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
CLIPS = ["videos/hmdb51/50_FIRST_DATES_drink_u_nm_np1_fr_goo_29.mp4",           # MP4
         "videos/hmdb51/Increase_stride_length_by_running_stairs__working_step_over_action_speed_development_"
         "climb_stairs_f_cm_np1_le_med_1.avi",                                    # DivX AVI
         "videos/ucf101/v_PushUps_g02_c03.avi",                                   # XviD AVI
         "videos/ucf101_elementary_stream/v_CliffDiving_g03_c01.mp4"]             # raw MPEG-4 stream
FLAGS = ["--flow", "tvl1", "--short-side", "48", "--max-frames", "5"]
SETTINGS = ExtractionSettings(flow_method="tvl1", short_side=48, max_frames=5)


def files_of(root):
    """{relative path: bytes} of every file under root."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def videos(shared_data, tmp_path_factory):
    """A folder with four real clips in four formats and one corrupt file."""
    folder = tmp_path_factory.mktemp("videos")
    for clip in CLIPS:
        shutil.copy(shared_data / clip, folder)
    (folder / "corrupt.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes())
    return folder


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory):
    """`two-stream prepare`'s output for the clips: the reference."""
    output = tmp_path_factory.mktemp("prepared")
    assert cli.main(["prepare", str(videos), str(output), *FLAGS, "--workers", "1", "--no-progress"]) == 1
    return output


def test_beam_script_writes_the_same_files_as_prepare(videos, prepared, tmp_path):
    output = tmp_path / "beam"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "pipelines" / "beam_extract.py"), str(videos), str(output), *FLAGS,
         "--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
        env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 1, completed.stderr[-3000:]  # the corrupt file failed
    assert "4 videos done, 1 failed" in completed.stdout
    assert f"{videos / 'corrupt.avi'}: cannot be opened as a video" in completed.stdout
    expected = files_of(prepared)
    written = files_of(output)
    assert sorted(written) == sorted(expected)  # file for file ...
    for name, content in expected.items():      # ... and byte for byte
        assert written[name] == content, name
    # 4 videos × (4 RGB + 4 × 2 flow) JPEGs (5 frames, dense_flow numbering) + 4 markers + the failure report.
    assert len(expected) == 4 * 12 + 4 + 1


def test_retried_elements_rewrite_or_skip_safely(videos, prepared, tmp_path):
    output = tmp_path / "beam"
    paths = find_videos(videos)

    def run():
        with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
            extract_videos_pipeline(pipeline, paths, output, SETTINGS)

    run()
    assert files_of(output) == files_of(prepared)
    # A retried bundle on a worker: the second attempt finds the marker and leaves the files alone.
    fn = ExtractVideoFn(str(output), SETTINGS)
    fn.setup()
    try:
        first_video = next(p for p in paths if "PushUps" in p)
        before = files_of(output)
        assert next(fn.process(first_video, True)).status == "skipped"
        assert files_of(output) == before
    finally:
        fn.teardown()
    # Attempts that died: one after renaming its folder but before the marker (and with a frame missing),
    # one half-way through writing its temporary folder.
    folder = OutputFolder(output)
    os.remove(folder.marker_path("v_PushUps_g02_c03"))
    os.remove(output / "v_PushUps_g02_c03" / "img_00004.jpg")
    stale = pathlib.Path(folder.tmp) / "v_CliffDiving_g03_c01.killed"
    (stale / "v_CliffDiving_g03_c01").mkdir(parents=True)
    (stale / "v_CliffDiving_g03_c01" / "img_00001.jpg").write_bytes(b"\xff\xd8 half a JPEG")
    (stale.parent / f"{stale.name}.lock").write_text("12345\n")  # a lock file its dead writer no longer holds
    # A done video whose folder lost a file behind its marker's back: redone, not trusted.
    os.remove(output / "v_CliffDiving_g03_c01" / "flow_y_00002.jpg")
    run()
    assert files_of(output) == files_of(prepared)
    report = read_run_report(paths, output, SETTINGS)
    assert len(report.done) == 4 and report.exit_code == 1
    assert report.failures == ((str(videos / "corrupt.avi"), "cannot be opened as a video (corrupt or unknown format)"),)
