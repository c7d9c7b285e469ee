"""`two-stream prepare` and two_stream_tf.preparation: real clips, layouts, numbering, resuming, SIGKILL,
failures, inputs, flags. (Crash loops and orphaned workers are in test_prepare_crashes.py.)"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from two_stream_tf import cli
from two_stream_tf.data.index import build_index
from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.data.splits import SplitEntry
from two_stream_tf.errors import UserError
from two_stream_tf.flow.compute import compute_flow
from two_stream_tf.flow.quantize import quantize_flow
from two_stream_tf.preparation import (ExtractionSettings, OutputFolder, extract_video, find_videos,
                                       prepare_videos, read_frames)

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHORT_CLIP = "videos/hmdb51/50_FIRST_DATES_drink_u_nm_np1_fr_goo_29.mp4"  # 48 frames, 340x256


def decoded_counts(shared_data):
    """{path relative to the data folder: frames that decode}, from the table in its README."""
    counts = {}
    column = None
    for line in (shared_data / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "frames decoded" in cells:
            column = cells.index("frames decoded")
        elif column is not None and cells[0].startswith("videos/"):
            counts[cells[0]] = int(cells[column])
    return counts


def files_of(root):
    """{relative path: bytes} of every file under root."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def count(folder, prefix):
    return len([name for name in os.listdir(folder) if name.startswith(prefix)])


def run_cli(*args):
    return cli.main(["prepare", *map(str, args)])


def dead_writers_staging(output, video):
    """What a writer killed half-way leaves: a staging folder with a lock file nobody holds."""
    output.create()
    folder = pathlib.Path(output.tmp) / f"{video}.killed"
    (folder / video).mkdir(parents=True)
    (folder / video / "img_00001.jpg").write_bytes(b"\xff\xd8 half a JPEG")
    (folder.parent / f"{folder.name}.lock").write_text("12345\n")
    return folder


def test_every_real_clip_gives_its_decoded_frame_count(shared_data, tmp_path, capsys):
    expected = decoded_counts(shared_data)
    assert len(expected) == 52
    status = run_cli(shared_data / "videos", tmp_path, "--flow", "dis", "--short-side", "32", "--workers", "2",
                     "--no-progress")
    assert status == 0, capsys.readouterr()
    assert "52 extracted, 0 already done, 0 failed" in capsys.readouterr().out
    layout = LAYOUTS["tsn"]
    for relative, frames in expected.items():
        video = pathlib.Path(relative).stem
        folder = tmp_path / video
        # dense_flow numbering: one RGB image per flow pair, N - 1 of each.
        assert count(folder, "img_") == frames - 1, relative
        assert count(folder, "flow_x_") == count(folder, "flow_y_") == frames - 1, relative
        assert (tmp_path / layout.rgb_file(video, frames - 2)).is_file()
        assert not (tmp_path / layout.rgb_file(video, frames - 1)).exists()
        marker = OutputFolder(tmp_path).read_marker(video)
        assert (marker["num_frames"], marker["decoded_frames"]) == (frames - 1, frames)
    # The dataset index reads what was written (layout detected, frames and flow counted).
    entries = [SplitEntry(video=pathlib.Path(k).stem, label=0, path=k) for k in expected]
    index = build_index(tmp_path, entries, ("any",), layout="auto", cache=False)
    assert index.layout.name == "tsn" and index.layout.start == 1
    assert {e.video: (e.num_frames, e.num_flow) for e in index} == {
        pathlib.Path(k).stem: (v - 1, v - 1) for k, v in expected.items()}
    # 320x240 and 340x256 clips both come out with a 32-pixel short side.
    assert cv2.imread(str(tmp_path / "v_Biking_g01_c03" / "img_00001.jpg")).shape == (32, 43, 3)
    assert cv2.imread(str(tmp_path / "v_Basketball_g01_c02" / "flow_y_00001.jpg"), 0).shape == (32, 43)


def test_tvl1_clip_files_hold_the_resized_frames_and_their_quantised_flow(shared_data, tmp_path):
    clip = shared_data / SHORT_CLIP
    result = extract_video(clip, tmp_path, short_side=48)  # TV-L1, bound 20, quality 95, TSN layout
    assert (result.status, result.num_frames, result.num_flow) == ("extracted", 47, 47)
    frames = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_LINEAR) for _, f in zip(range(2), read_frames(clip))]
    folder = tmp_path / clip.stem
    rgb = cv2.imread(str(folder / "img_00001.jpg"))
    assert np.abs(rgb.astype(int) - frames[1]).mean() < 3  # the second frame, JPEG at quality 95
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    expected = quantize_flow(compute_flow(gray[0], gray[1], "tvl1"))
    for channel, name in enumerate(("flow_x_00001.jpg", "flow_y_00001.jpg")):
        written = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        assert written.shape == (48, 64)
        assert np.abs(written.astype(int) - expected[..., channel]).mean() < 2


def test_twostreamfusion_layout_names_come_from_the_layout(shared_data, tmp_path):
    clip = shared_data / SHORT_CLIP
    result = extract_video(clip, tmp_path, layout="twostreamfusion", flow_method="farneback", short_side=32,
                           max_frames=4)
    assert (result.num_frames, result.num_flow) == (4, 3)
    video = clip.stem
    layout = LAYOUTS["twostreamfusion"]
    written = {k for k in files_of(tmp_path) if not k.startswith(".prepare")}
    expected = {layout.rgb_file(video, i) for i in range(4)} | {f for i in range(3) for f in layout.flow_files(video, i)}
    assert written == expected
    assert f"jpegs_256/{video}/frame000004.jpg" in written and f"tvl1_flow/v/{video}/frame000003.jpg" in written


def test_rerun_skips_done_videos_and_replaces_partial_ones(shared_data, tmp_path):
    clips = [shared_data / "videos/ucf101/v_PushUps_g02_c03.avi", shared_data / SHORT_CLIP]
    options = dict(flow_method="dis", short_side=32, max_frames=6, progress=False)
    first = prepare_videos(clips, tmp_path, **options)
    assert [r.status for r in first.results] == ["extracted", "extracted"]
    reference = files_of(tmp_path)
    # A crash after renaming but before the marker, plus a half-written temporary folder of a dead writer.
    output = OutputFolder(tmp_path)
    os.remove(output.marker_path(clips[1].stem))
    os.remove(tmp_path / clips[1].stem / "img_00005.jpg")
    stale = dead_writers_staging(output, clips[0].stem)
    second = prepare_videos(clips, tmp_path, **options)
    assert [r.status for r in second.results] == ["skipped", "extracted"]
    assert [r.num_frames for r in second.results] == [5, 5]  # 6 frames decoded, dense_flow numbering
    assert not stale.exists() and os.listdir(output.tmp) == []
    assert files_of(tmp_path) == reference
    # Other settings: not done with them, so extracted again.
    third = prepare_videos(clips, tmp_path, **{**options, "max_frames": 3})
    assert [r.status for r in third.results] == ["extracted", "extracted"]
    assert count(tmp_path / clips[0].stem, "img_") == 2


def test_sigkill_in_the_middle_then_rerun_completes_correctly(shared_data, tmp_path):
    names = ["v_Billiards_g15_c01", "v_FrontCrawl_g23_c04", "v_HeadMassage_g02_c05", "v_HorseRace_g24_c05",
             "v_PlayingTabla_g14_c02", "v_Punch_g22_c07"]
    expected = {pathlib.Path(k).stem: v for k, v in decoded_counts(shared_data).items()}
    video_list = tmp_path / "videos.txt"
    video_list.write_text("".join(f"{shared_data}/videos/ucf101/{name}.avi\n" for name in names))
    flags = [str(video_list), "--flow", "dis", "--size", "64x48", "--workers", "2", "--no-progress"]
    killed = tmp_path / "killed"
    output = OutputFolder(killed)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "two_stream_tf.cli", "prepare", flags[0], str(killed),
                                *flags[1:]], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if os.path.isdir(output.done) and os.listdir(output.done) and os.listdir(output.tmp):
                break  # some videos committed, others half-written
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = [name[:-5] for name in os.listdir(output.done) if name.endswith(".json")]
    assert 0 < len(done) < len(names)
    assert os.listdir(output.tmp), "the kill should have caught a video half-written"
    for video in done:  # whatever counts as done is complete
        assert count(killed / video, "img_") == expected[video] - 1
        assert count(killed / video, "flow_x_") == count(killed / video, "flow_y_") == expected[video] - 1

    assert run_cli(flags[0], killed, *flags[1:]) == 0
    assert os.listdir(output.tmp) == []
    reference = tmp_path / "reference"
    assert run_cli(flags[0], reference, *flags[1:]) == 0
    assert files_of(killed) == files_of(reference)


def test_unreadable_videos_are_reported_and_the_run_goes_on(shared_data, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "garbage.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (videos / "empty.avi").write_bytes(b"")
    real = shutil.copy(shared_data / SHORT_CLIP, videos / "good.mp4")
    (videos / "notes.txt").write_text("not a video")
    (videos / "._good.mp4").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden: not a video
    listing = tmp_path / "list.txt"
    listing.write_text("# test list\ngarbage.avi 1\nempty.avi 2\n\ngood.mp4 3\n")
    out = tmp_path / "out"
    status = run_cli(listing, out, "--video-root", videos, "--flow", "dis", "--short-side", "32", "--workers", "1",
                     "--no-progress")
    printed = capsys.readouterr().out
    assert status == 1
    assert "1 extracted, 0 already done, 2 failed" in printed
    assert f"{videos / 'garbage.avi'}: cannot be opened as a video" in printed
    assert f"{videos / 'empty.avi'}: empty file" in printed
    report = (out / ".prepare" / "failures.tsv").read_text().splitlines()
    assert report == ["path\treason", f"{videos / 'empty.avi'}\tempty file",
                      f"{videos / 'garbage.avi'}\tcannot be opened as a video (corrupt or unknown format)"]
    assert count(out / "good", "img_") == 47
    assert not (out / "garbage").exists() and not (out / "empty").exists()
    # The folder form finds the same three videos (not notes.txt, not the hidden file).
    assert [pathlib.Path(p).name for p in find_videos(videos)] == ["empty.avi", "garbage.avi", "good.mp4"]
    assert pathlib.Path(real).is_file()


@pytest.mark.parametrize("flags, named", [
    (["--flow", "sift"], "--flow"),
    (["--size", "0x256"], "--size"),
    (["--size", "big"], "--size"),
    (["--short-side", "-3"], "--short-side"),
    (["--jpeg-quality", "101"], "--jpeg-quality"),
    (["--bound", "0"], "--bound"),
    (["--workers", "0"], "--workers"),
    (["--layout", "caffe"], "--layout"),
    (["--rgb-frames", "odd"], "--rgb-frames"),
    (["--short-decode", "ignore"], "--short-decode"),
])
def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys, flags, named):
    assert run_cli(tmp_path, tmp_path / "out", *flags) == 2
    error = capsys.readouterr().err
    assert f"argument {named}:" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_extract_frames_script_is_the_prepare_command(tmp_path):
    completed = subprocess.run([sys.executable, str(PROJECT_ROOT / "pipelines" / "extract_frames.py"), str(tmp_path),
                                str(tmp_path / "out"), "--flow", "sift"], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))
    assert completed.returncode == 2
    assert "argument --flow: invalid choice: 'sift'" in completed.stderr


def test_missing_or_empty_video_folder_exits_2_naming_the_argument(tmp_path, capsys):
    assert run_cli(tmp_path / "missing", tmp_path / "out") == 2
    assert "argument videos:" in capsys.readouterr().err
    assert run_cli(tmp_path, tmp_path / "out") == 2
    assert "no video files" in capsys.readouterr().err


def test_library_arguments_are_checked(tmp_path):
    with pytest.raises(UserError, match="flow_method 'sift'"):
        extract_video(tmp_path / "a.avi", tmp_path, flow_method="sift")
    with pytest.raises(UserError, match="size must be"):
        extract_video(tmp_path / "a.avi", tmp_path, size=(340, 0))
    with pytest.raises(UserError, match="workers"):
        prepare_videos([], tmp_path, workers=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(UserError, match="'v_X'"):
        prepare_videos([tmp_path / "a" / "v_X.avi", tmp_path / "b" / "v_X.mp4"], tmp_path / "out")


def test_two_runs_cannot_write_the_same_output(tmp_path):
    with OutputFolder(tmp_path).exclusive():
        with pytest.raises(UserError, match=rf"another extraction \(process {os.getpid()}\) is writing to "):
            prepare_videos([], tmp_path, progress=False)


def test_output_size_rules():
    assert ExtractionSettings().output_size(320, 240) == (340, 256)
    assert ExtractionSettings(short_side=256).output_size(320, 240) == (341, 256)
    assert ExtractionSettings(short_side=256).output_size(240, 320) == (256, 341)
    assert ExtractionSettings(size=None).output_size(320, 240) == (320, 240)
    assert ExtractionSettings(short_side=256).size is None


# --- Frame numbering -----------------------------------------------------------------------------------

ARCHERY = "videos/ucf101/v_Archery_g02_c02.avi"  # much motion: consecutive frames differ clearly


def closest_frame(image, frames):
    return int(np.argmin([np.abs(image.astype(int) - f.astype(int)).mean() for f in frames]))


def test_tsn_rgb_numbering_is_dense_flows(shared_data, tmp_path):
    clip = shared_data / ARCHERY
    decoded = [f for _, f in zip(range(4), read_frames(clip))]
    assert np.abs(decoded[0].astype(int) - decoded[1].astype(int)).mean() > 5  # tell frames apart
    result = extract_video(clip, tmp_path / "tsn", size=None, flow_method="farneback", jpeg_quality=100,
                           max_frames=4)
    assert (result.num_frames, result.num_flow) == (3, 3)
    folder = tmp_path / "tsn" / clip.stem
    # img_00001 is the video's second frame, img_k frame k: RGB k and flow k end at the same frame.
    for k in (1, 2, 3):
        assert closest_frame(cv2.imread(str(folder / f"img_{k:05d}.jpg")), decoded) == k
    assert not (folder / "img_00004.jpg").exists()
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in decoded]
    for k in (1, 3):  # flow k is the motion from frame k - 1 to frame k
        expected = quantize_flow(compute_flow(gray[k - 1], gray[k], "farneback"))
        written = cv2.imread(str(folder / f"flow_x_{k:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
        assert np.abs(written.astype(int) - expected[..., 0]).mean() < 2
    # Every frame on request: img_00001 is the first frame, the start of flow 1.
    every = extract_video(clip, tmp_path / "all", size=None, flow_method="none", jpeg_quality=100, max_frames=4,
                          rgb_frames="all")
    assert (every.num_frames, every.num_flow) == (4, 0)
    for k in (1, 4):
        image = cv2.imread(str(tmp_path / "all" / clip.stem / f"img_{k:05d}.jpg"))
        assert closest_frame(image, decoded) == k - 1
    # The other layouts keep every frame, as their published dumps do.
    assert ExtractionSettings(layout="twostreamfusion").rgb_frames == "all"
    assert ExtractionSettings().rgb_frames == "dense_flow"


def test_the_synthetic_dataset_is_numbered_as_prepare_numbers_it(tmp_path):
    from two_stream_tf.data.synthetic import render_video, write_synthetic_dataset

    dataset = write_synthetic_dataset(tmp_path / "synthetic", num_classes=1, videos_per_class=2, num_frames=6,
                                      frame_size=(64, 48), progress=False)
    spec = dataset.videos[0]
    rendered = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in render_video(spec).frames]
    prepared = tmp_path / "prepared"
    assert extract_video(dataset.video_path(spec), prepared, size=None, flow_method="dis").ok
    synthetic_names = sorted(os.listdir(pathlib.Path(dataset.frames_dir) / spec.video))
    assert synthetic_names == sorted(os.listdir(prepared / spec.video))
    assert count(prepared / spec.video, "img_") == 5 and count(prepared / spec.video, "flow_y_") == 5
    for k in (1, 5):
        for root in (pathlib.Path(dataset.frames_dir), prepared):
            assert closest_frame(cv2.imread(str(root / spec.video / f"img_{k:05d}.jpg")), rendered) == k


# --- Checks of what decodes and of what is on disk -----------------------------------------------------

def truncated_copy(shared_data, folder, fraction=0.5):
    """A real 330-frame AVI with the second half of its bytes cut off (its header still says 330)."""
    data = (shared_data / "videos/ucf101/v_Billiards_g15_c01.avi").read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "v_Billiards_g15_c01.avi"
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def test_a_truncated_video_is_a_reported_failure(shared_data, tmp_path, capsys):
    cut = truncated_copy(shared_data, tmp_path / "videos")
    decodes = sum(1 for _ in read_frames(cut))
    assert 100 < decodes < 300
    out = tmp_path / "out"
    assert run_cli(cut, out, "--flow", "dis", "--short-side", "32", "--no-progress") == 1
    printed = capsys.readouterr().out
    reason = f"only {decodes} of the 330 frames the container declares could be decoded"
    assert reason in printed
    report = (out / ".prepare" / "failures.tsv").read_text().splitlines()
    assert len(report) == 2 and report[1].startswith(f"{cut}\t{reason}")
    assert not (out / cut.stem).exists() and os.listdir(out / ".prepare" / "done") == []
    # On request, what decodes is kept, with both counts said.
    assert run_cli(cut, out, "--flow", "dis", "--short-side", "32", "--no-progress", "--short-decode", "warn") == 0
    printed = capsys.readouterr().out
    assert f"decoded {decodes} of the 330 frames its container declares; kept" in printed
    assert count(out / cut.stem, "img_") == decodes - 1
    marker = OutputFolder(out).read_marker(cut.stem)
    assert (marker["decoded_frames"], marker["declared_frames"]) == (decodes, 330) and "330" in marker["warning"]


def test_the_tolerance_for_container_counts(shared_data):
    from two_stream_tf.preparation.video import ShortDecodeError, check_decoded, declared_frame_count

    # A real HMDB-51 AVI declares 409 frames and 408 decode: one missing frame is a good video.
    hmdb = shared_data / "videos/hmdb51/April_09_brush_hair_u_nm_np1_ba_goo_0.avi"
    assert declared_frame_count(hmdb) == 409
    check_decoded(408, 409)
    with pytest.raises(ShortDecodeError, match="only 407 of the 409 frames"):
        check_decoded(407, 409)
    # A raw MPEG-4 stream declares a garbage count: unknown, nothing to check.
    assert declared_frame_count(shared_data / "videos/ucf101_elementary_stream/v_CliffDiving_g03_c01.mp4") is None
    check_decoded(92, None)
    check_decoded(12, 10)  # more than declared is fine


def test_a_done_video_whose_folder_disagrees_with_its_marker_is_redone(shared_data, tmp_path):
    clip = shared_data / "videos/ucf101/v_PushUps_g02_c03.avi"
    options = dict(flow_method="dis", short_side=32, progress=False)
    assert prepare_videos([clip], tmp_path, **options).exit_code == 0
    reference = files_of(tmp_path)
    folder = tmp_path / clip.stem
    settings = ExtractionSettings(flow_method="dis", short_side=32)
    output = OutputFolder(tmp_path)
    damages = {
        # What an orphaned writer did: the lowest RGB images gone, the marker still there.
        "lowest images gone": (lambda: [os.remove(folder / f"img_{k:05d}.jpg") for k in range(1, 61)],
                               f"{clip.stem}/ lacks 60 of its 234 files (first img_00001.jpg)"),
        "an empty image": (lambda: (folder / "img_00040.jpg").write_bytes(b""),
                           f"{clip.stem}/ has 1 empty files (first img_00040.jpg)"),
        "a cut image": (lambda: (folder / "flow_x_00007.jpg").write_bytes(
            (folder / "flow_x_00007.jpg").read_bytes()[:100]), "bytes, the marker records"),
        "an extra image": (lambda: shutil.copy(folder / "img_00078.jpg", folder / "img_00079.jpg"),
                           f"{clip.stem}/ has 1 unexpected files (first img_00079.jpg)"),
    }
    for damage, (apply, problem) in damages.items():
        apply()
        check = output.check_done(clip.stem, settings)
        assert not check.done and problem in check.problem, damage
        summary = prepare_videos([clip], tmp_path, **options)
        assert summary.results[0].status == "extracted", damage
        assert "re-extracted: its folder disagreed with its done-marker" in summary.describe(), damage
        assert files_of(tmp_path) == reference, damage


def test_a_commit_checks_the_files_it_records(shared_data, tmp_path):
    from two_stream_tf.preparation.output import CommitError

    output = OutputFolder(tmp_path)
    output.create()
    settings = ExtractionSettings(flow_method="none", size=(32, 24))
    with output.staging("v_Short") as staging:
        os.makedirs(os.path.join(staging, "v_Short"))
        for k in (1, 2):
            cv2.imwrite(os.path.join(staging, "v_Short", f"img_{k:05d}.jpg"), np.zeros((24, 32, 3), np.uint8))
        record = {"num_frames": 3, "num_flow": 0, "settings": settings.to_dict()}
        with pytest.raises(CommitError, match=r"incomplete: v_Short/ lacks 1 of its 3 files \(first img_00003.jpg\)"):
            output.commit("v_Short", staging, "tsn", record)
    assert output.read_marker("v_Short") is None and not (tmp_path / "v_Short").exists()
    assert os.listdir(output.tmp) == []  # the staging folder and its lock are gone


# --- Inputs --------------------------------------------------------------------------------------------

def test_a_single_video_file_is_an_input(shared_data, tmp_path, capsys):
    clip = shared_data / SHORT_CLIP
    assert run_cli(clip, tmp_path / "out", "--flow", "dis", "--short-side", "32", "--no-progress") == 0
    assert "1 videos into" in capsys.readouterr().out
    assert count(tmp_path / "out" / clip.stem, "img_") == 47
    assert find_videos(clip) == [str(clip.resolve())]
    # A binary file under a name that is not a video's is neither a video nor a list: said, not a traceback.
    odd = tmp_path / "clip.bin"
    shutil.copy(clip, odd)
    assert run_cli(odd, tmp_path / "out2") == 2
    error = capsys.readouterr().err
    assert f"{odd} is not a video" in error and "nor a text file list" in error and "Traceback" not in error


def test_list_entries_outside_the_video_root_are_refused(shared_data, tmp_path, capsys):
    root = tmp_path / "root"
    (root / "Class").mkdir(parents=True)
    shutil.copy(shared_data / SHORT_CLIP, root / "Class" / "inside.mp4")
    shutil.copy(shared_data / SHORT_CLIP, tmp_path / "outside.mp4")
    listing = tmp_path / "list.txt"
    for line, entry in ((2, "../outside.mp4"), (2, str(tmp_path / "outside.mp4")), (2, "Class/../../outside.mp4")):
        listing.write_text(f"Class/inside.mp4 1\n{entry} 1\n")
        with pytest.raises(UserError, match=rf"{listing}:{line}: video '{entry}' is outside the video root {root}"):
            find_videos(listing, root)
        assert run_cli(listing, tmp_path / "out", "--video-root", root) == 2
        assert f"{listing}:{line}: video" in capsys.readouterr().err
    listing.write_text("Class/inside.mp4 1\nClass/./inside.mp4 1\n")
    assert find_videos(listing, root) == [str((root / "Class" / "inside.mp4").resolve())] * 2


def test_frames_written_before_the_numbering_choice_are_kept_with_rgb_frames_all(shared_data, tmp_path):
    import json

    clip = shared_data / SHORT_CLIP
    options = dict(flow_method="dis", short_side=32, max_frames=5, progress=False)
    assert prepare_videos([clip], tmp_path, rgb_frames="all", **options).exit_code == 0
    before = files_of(tmp_path / clip.stem)
    # A marker as older versions wrote it: no numbering in the settings, no total size.
    output = OutputFolder(tmp_path)
    marker = output.read_marker(clip.stem)
    del marker["settings"]["rgb_frames"], marker["bytes"]
    pathlib.Path(output.marker_path(clip.stem)).write_text(json.dumps(marker))
    kept = prepare_videos([clip], tmp_path, rgb_frames="all", **options)
    assert kept.results[0].status == "skipped" and files_of(tmp_path / clip.stem) == before
    # Its files are still checked: one missing, and it is redone.
    os.remove(tmp_path / clip.stem / "img_00005.jpg")
    assert prepare_videos([clip], tmp_path, rgb_frames="all", **options).results[0].status == "extracted"
    assert files_of(tmp_path / clip.stem) == before
    # The TSN default numbers differently: redone with 4 RGB images.
    renumbered = prepare_videos([clip], tmp_path, **options)
    assert renumbered.results[0].status == "extracted" and count(tmp_path / clip.stem, "img_") == 4
