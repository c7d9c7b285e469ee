"""`two-stream predict` and `experiments/predict.py`: text and JSON output, windows, annotated videos, exit status."""
import json
import os
import subprocess
import sys

import cv2
import pytest

from inference_helpers import FRAME_SIZE, build_models, decode_all, ucf101_clips
from two_stream_tf import cli
from two_stream_tf.commands import predict

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]}"


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory):
    return build_models(shared_data, tmp_path_factory.mktemp("predict_cli_models"))


def _run(*args):
    env = dict(os.environ, PYTHONPATH=PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, env=env,
                          timeout=600)


def test_command_predicts_several_clips_as_json_and_names_the_bad_one(models, shared_data, tmp_path):
    clips = ucf101_clips(shared_data)[:3]
    annotated = tmp_path / "annotated"
    annotated.mkdir()
    missing = tmp_path / "v_Missing_g01_c01.avi"
    result = _run("-m", "two_stream_tf.cli", "predict", *map(str, clips), str(missing), "--model",
                  str(models["fused"]), "--class-index", str(models["class_index"]), "--size", SIZE, "--json",
                  "--annotate", str(annotated), "--top-k", "3")
    assert result.returncode == 2, result.stderr
    assert f"two-stream predict: error: {missing}: video file not found" in result.stderr
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["video"] * 3
    assert [line["source"] for line in lines] == list(map(str, clips))
    class_names = [line.split()[1] for line in models["class_index"].read_text().splitlines()]
    for line, clip in zip(lines, clips):
        assert len(line["top_k"]) == 3 and all(entry["class"] in class_names for entry in line["top_k"])
        assert line["annotated"] == str(annotated / f"{clip.stem}.mp4")
        capture = cv2.VideoCapture(line["annotated"])
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == line["num_frames"]
        capture.release()


def test_sliding_windows_print_one_line_per_window(models, shared_data, capsys):
    clip = shared_data / "videos" / "ucf101" / "v_PushUps_g02_c03.avi"  # 79 frames
    status = cli.main(["predict", str(clip), "-m", str(models["spatial"]), "-m", str(models["temporal"]),
                       "--class-index", str(models["class_index"]), "--size", SIZE, "--window", "30",
                       "--stride", "12", "--json"])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    windows = [line for line in lines if line["type"] == "window"]
    # Windows start at 0, 12, 24, 36, 48: the last one that fits 30 frames of 79.
    assert [(w["start_frame"], w["end_frame"]) for w in windows] == [(s, s + 30) for s in (0, 12, 24, 36, 48)]
    assert lines[-1]["type"] == "video" and len(lines[-1]["windows"]) == 5
    assert windows[1]["start_time"] == pytest.approx(12 / 25.0)


def test_text_output_ranks_the_actions(models, shared_data, capsys):
    clip = shared_data / "videos" / "ucf101" / "v_PushUps_g02_c03.avi"
    assert cli.main(["predict", str(clip), "-m", str(models["fused"]), "--class-index", str(models["class_index"]),
                     "--size", SIZE, "--top-k", "2", "--flow", "farneback"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{clip} (79 frames, 3.2 s; whole video):"
    assert out[1].lstrip().startswith("1. ") and out[2].lstrip().startswith("2. ") and len(out) == 3
    first, second = (float(line.split()[-1]) for line in out[1:3])
    assert 0 < second <= first <= 1


def _write_clip(frames, path):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_videos_shorter_than_a_flow_stack_are_scored_with_a_note_or_refused(models, shared_data, tmp_path, capsys):
    frames = decode_all(shared_data / "videos" / "ucf101" / "v_Archery_g02_c02.avi")
    one, two, three = (_write_clip(frames[:n], tmp_path / f"clip{n}.avi") for n in (1, 2, 3))
    status = cli.main(["predict", str(one), str(two), str(three), "-m", str(models["spatial"]), "-m",
                       str(models["temporal"]), "--class-index", str(models["class_index"]), "--size", SIZE,
                       "--json"])
    err = capsys.readouterr()
    assert status == 2  # the one-frame clip has no flow at all
    assert (f"two-stream predict: error: {one}: 1 frame decoded; the temporal stream needs at least 2 (one flow pair; "
            "a full stack of 2 pairs takes 3 frames)") in err.err
    note = (f"{two}: 2 frames give 1 flow pair, fewer than one stack of 2 (3 frames); scored with each stack "
            "looping back to the first pair, as the test protocol scores short videos")
    assert f"two-stream predict: note: {note}" in err.err.splitlines()
    lines = [json.loads(line) for line in err.out.splitlines()]
    assert [(line["source"], line["num_frames"], line["notes"]) for line in lines] == [
        (str(two), 2, [note]), (str(three), 3, [])]
    assert all(len(line["top_k"]) == 5 for line in lines)


@pytest.mark.parametrize("arguments, message", [
    (["--flow-inset"], "--flow-inset needs --annotate"),
    (["--stride", "4"], "--stride needs --window"),
    (["--window", "0"], "argument --window: 0 is out of range"),
    (["--flow", "lucas"], "argument --flow: invalid choice: 'lucas'"),
    (["--annotate", "out.avi"], "must end with one of .mp4"),
    (["-m", "b.keras", "-m", "c.keras"], "--model given 3 times"),
])
def test_bad_flags_exit_2_with_the_flag_named(arguments, message, capsys):
    status = cli.main(["predict", "clip.avi", "-m", "a.keras", *arguments])
    assert status == 2
    assert message in capsys.readouterr().err


def test_unreadable_inputs_exit_2_before_loading_models(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n")
    # The model file does not exist either: inputs are checked first, so that is never reached.
    status = predict.main([str(tmp_path / "missing.avi"), str(text), "-m", str(tmp_path / "none.keras")])
    err = capsys.readouterr().err
    assert status == 2
    assert f"{tmp_path / 'missing.avi'}: video file not found" in err
    assert f"{text}: not a video" in err
    assert "none.keras" not in err


def test_experiments_script_is_the_same_command(tmp_path):
    result = _run("experiments/predict.py", str(tmp_path / "gone.avi"), "--model", "unused.keras")
    assert result.returncode == 2
    assert f"two-stream predict: error: {tmp_path / 'gone.avi'}: video file not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert "--window" in _run("experiments/predict.py", "--help").stdout
