"""`two-stream quickstart --fast` through the real command line: stages, table, report files, resuming.

One fast run (tiny synthetic data, one epoch per stream) is shared by the tests; its accuracies mean
nothing, so the checks are about what is written and whether the numbers agree with each other.
"""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from inference_helpers import decode_all
from two_stream_tf.quickstart import FAST
from two_stream_tf.quickstart.report import SAMPLE_SCALE

COMMAND = [sys.executable, "-m", "two_stream_tf.cli", "quickstart"]
STAGES = 8


def _run(*args, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("quickstart") / "output"
    completed = _run("--fast", "--output", str(output))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return output, completed


def _table(stdout):
    """{row label: [spatial, temporal, fusion] percentages} from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("top-1", "top-5", "mean class"):
            rows[cells[0]] = [float(cell.rstrip(" %")) for cell in cells[1:]]
    return rows


@pytest.mark.slow
def test_stages_are_announced_and_show_progress(fast_run):
    _, completed = fast_run
    headers = re.findall(r"^== \[(\d)/(\d)\] (.+)$", completed.stdout, flags=re.M)
    assert [(int(number), int(total)) for number, total, _ in headers] == [(n, STAGES) for n in range(1, STAGES + 1)]
    titles = " ".join(title for *_, title in headers)
    for words in ("Synthetic", "DIS optical flow", "spatial stream", "temporal stream", "Batch-norm",
                  "25 snippets x 10 crops", "Fusion", "Report"):
        assert words in titles
    assert "DIS flow, not the papers' TV-L1" in completed.stdout
    # tqdm bars of extraction and evaluation, and the Keras progress bar of training.
    assert "prepare:" in completed.stderr and "evaluating:" in completed.stderr
    assert "step - loss:" in completed.stdout + completed.stderr


@pytest.mark.slow
def test_table_and_results_json_agree(fast_run):
    output, completed = fast_run
    results = json.loads((output / "results.json").read_text())
    assert set(results) == {"spatial", "temporal", "fusion"}
    for column, values in results.items():
        assert set(values) == {"top1", "top5", "mean_class"}
        assert 0.0 <= values["top1"] <= values["top5"] <= 1.0 and 0.0 <= values["mean_class"] <= 1.0
        # Four classes: the true class is always among the top 5.
        assert values["top5"] == 1.0
    assert "| Spatial" in completed.stdout and "| Temporal" in completed.stdout and "| Fusion" in completed.stdout
    table = _table(completed.stdout)
    for label, key in (("top-1", "top1"), ("top-5", "top5"), ("mean class", "mean_class")):
        expected = [round(100 * results[column][key], 2) for column in ("spatial", "temporal", "fusion")]
        assert table[label] == pytest.approx(expected, abs=0.006)
    assert "4 test videos of 4 classes (chance 25.0 %)" in completed.stdout


@pytest.mark.slow
def test_fusion_is_the_average_of_the_streams_softmax_scores(fast_run):
    output, _ = fast_run
    loaded = {}
    for stream in ("spatial", "temporal", "fusion"):
        with np.load(output / "evaluation" / stream / "scores.npz", allow_pickle=False) as data:
            loaded[stream] = {key: data[key] for key in data.files}
    spatial, temporal, fused = loaded["spatial"], loaded["temporal"], loaded["fusion"]
    assert list(spatial["videos"]) == list(temporal["videos"]) == list(fused["videos"])
    assert len(fused["videos"]) == 4 and fused["scores"].shape == (4, FAST.num_classes)
    np.testing.assert_allclose(fused["scores"], (spatial["scores"] + temporal["scores"]) / 2, atol=1e-6)
    np.testing.assert_allclose(fused["scores"].sum(axis=1), 1.0, atol=1e-5)
    top1 = float(np.mean(np.argmax(fused["scores"], axis=1) == fused["labels"]))
    assert json.loads((output / "results.json").read_text())["fusion"]["top1"] == pytest.approx(top1)


@pytest.mark.slow
def test_figures_and_annotated_video_decode(fast_run):
    output, _ = fast_run
    for name in ("confusion_matrix.png", "training_curves.png"):
        image = cv2.imread(str(output / name))
        assert image is not None, name
        assert image.shape[0] >= 300 and image.shape[1] >= 300 and image.std() > 10, name
    frames = decode_all(output / "annotated_sample.mp4")
    # Every frame of the test video, enlarged for the overlay.
    assert len(frames) == FAST.num_frames
    assert frames[0].shape == (SAMPLE_SCALE * FAST.frame_size[1], SAMPLE_SCALE * FAST.frame_size[0], 3)
    assert all(frame.std() > 0 for frame in frames)


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_keeps_the_models(fast_run):
    output, first = fast_run
    models = sorted((output / "runs").glob("*/*.keras"))
    assert {path.name for path in models} >= {"final.keras", "recalibrated.keras"}
    before = {path: path.stat().st_mtime_ns for path in models}
    again = _run("--fast", "--output", str(output))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already written" in again.stdout
    assert again.stdout.count("already trained") == 2
    assert again.stdout.count("already scored") == 2
    assert "0 extracted, 16 already done" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in models} == before
    assert _table(again.stdout) == _table(first.stdout)


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    (tmp_path / "quickstart.json").write_text(json.dumps(dict(FAST.to_json(), seed=7)))
    completed = _run("--fast", "--output", str(tmp_path), timeout=300)
    assert completed.returncode == 2
    assert "holds a quickstart run with other settings (seed" in completed.stderr
    assert str(tmp_path) in completed.stderr and "Traceback" not in completed.stderr


def test_missing_weights_file_is_named(tmp_path):
    completed = _run("--fast", "--output", str(tmp_path / "out"), "--weights", str(tmp_path / "nope.h5"),
                     timeout=300)
    assert completed.returncode == 2
    assert f"--weights: file not found: {tmp_path / 'nope.h5'}" in completed.stderr
    assert not (tmp_path / "out").exists()
