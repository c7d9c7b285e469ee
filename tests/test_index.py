"""Dataset index: layouts detected from the files, flat and per-class folders, validation, the cache."""
import json
import os

import pytest

from two_stream_tf.data import index as index_lib
from two_stream_tf.data.index import CACHE_FILE_NAME, VideoEntry, build_index, open_split_index
from two_stream_tf.data.layouts import LAYOUTS, detect_layout, layout_from_file_names
from two_stream_tf.data.splits import SplitEntry
from two_stream_tf.errors import UserError

OLD = 1_500_000_000  # a fixed past time for folders, so the cache does not skip them as just modified


def make_video(folder, frames, flow, start=1, names=("img_", "flow_x_", "flow_y_"), digits=5, skip=()):
    """Empty frame files: `frames` RGB and `flow` flow pairs (only the names matter to the index)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb, x, y = names
    for prefix, count in ((rgb, frames), (x, flow), (y, flow)):
        for i in range(count):
            name = f"{prefix}{i + start:0{digits}d}.jpg"
            if name not in skip:
                (folder / name).touch()
    os.utime(folder, (OLD, OLD))
    return folder


def entry(video, label=0, cls="Walk"):
    return SplitEntry(video, label, f"{cls}/{video}.avi")


def test_synthetic_dataset_split_index(synthetic_dataset, tmp_path):
    train = open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset="train", cache=tmp_path)
    test = open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset="test", cache=tmp_path)
    assert (len(train), len(test)) == (64, 32)
    assert train.layout.name == "tsn" and train.layout.start == 1
    assert train.classes == synthetic_dataset.classes
    first = train.entries[0]
    assert first == VideoEntry("v_RedTriangleRise_g01_c01", 0, 31, 31)  # dense_flow numbering: 31 RGB, 31 pairs
    assert train.rgb_path(first, 0) == os.path.join(synthetic_dataset.frames_dir, first.video, "img_00001.jpg")
    assert train.flow_paths(first, 30)[1].endswith(os.path.join(first.video, "flow_y_00031.jpg"))
    assert all(os.path.exists(p) for p in (train.rgb_path(first, 30), *train.flow_paths(first, 30)))
    with pytest.raises(IndexError):
        train.rgb_path(first, 31)
    summary = test.summary()
    assert summary["videos_per_class"]["min"] == summary["videos_per_class"]["max"] == 4
    assert summary["frames"]["total"] == 32 * 31 and summary["flow"]["mean"] == 31


def test_mmaction2_sample_frames(shared_data, tmp_path):
    root = shared_data / "frames" / "mmaction2_sample"
    result = build_index(root, [entry("v_ApplyEyeMakeup_g01_c01", cls="ApplyEyeMakeup")], ["ApplyEyeMakeup"],
                         cache=tmp_path)
    assert result.layout.name == "mmaction2" and result.layout.start == 1
    assert result.entries == (VideoEntry("v_ApplyEyeMakeup_g01_c01", 0, 10, 5),)
    assert result.flow_paths(result.entries[0], 4) == (str(root / "v_ApplyEyeMakeup_g01_c01" / "x_00005.jpg"),
                                                        str(root / "v_ApplyEyeMakeup_g01_c01" / "y_00005.jpg"))
    assert detect_layout(str(root)).name == "mmaction2"
    assert list(tmp_path.iterdir())  # the cache went to the folder given, the read-only root is untouched
    assert sorted(os.listdir(root)) == ["v_ApplyEyeMakeup_g01_c01"]


def test_denseflow_is_detected_by_img_00000(tmp_path):
    make_video(tmp_path / "zero" / "v_a", frames=4, flow=3, start=0)
    make_video(tmp_path / "one" / "v_a", frames=4, flow=3, start=1)
    zero = build_index(tmp_path / "zero", [entry("v_a")], ["Walk"], cache=False)
    one = build_index(tmp_path / "one", [entry("v_a")], ["Walk"], cache=False)
    assert (zero.layout.name, zero.layout.start, one.layout.name, one.layout.start) == ("denseflow", 0, "tsn", 1)
    assert zero.rgb_path(zero.entries[0], 0).endswith("img_00000.jpg")
    assert zero.entries[0] == one.entries[0] == VideoEntry("v_a", 0, 4, 3)
    assert layout_from_file_names(os.listdir(tmp_path / "zero" / "v_a")).name == "denseflow"
    # Named explicitly, a layout is not overridden: 0-based files are reported, not re-read.
    with pytest.raises(UserError, match=r"v_a: RGB frames numbered from 0 \(img_00000\.jpg\) but layout tsn is "
                                        r"numbered from 1"):
        build_index(tmp_path / "zero", [entry("v_a")], ["Walk"], layout="tsn", cache=False)


def test_per_class_folders_any_case(tmp_path):
    # mmaction2's rawframes: <root>/<Class>/<video>, and UCF-101's HandstandPushups/v_HandStandPushups_… quirk.
    make_video(tmp_path / "HandstandPushups" / "v_HandStandPushups_g01_c01", frames=5, flow=4)
    make_video(tmp_path / "Walk" / "v_Walk_g01_c01", frames=6, flow=5)
    entries = [SplitEntry("v_HandStandPushups_g01_c01", 0, "HandstandPushups/v_HandStandPushups_g01_c01.avi"),
               SplitEntry("v_Walk_g01_c01", 1, "walk/v_Walk_g01_c01.avi")]
    result = build_index(tmp_path, entries, ["HandstandPushups", "Walk"], cache=False)
    assert [e.video for e in result] == ["HandstandPushups/v_HandStandPushups_g01_c01", "Walk/v_Walk_g01_c01"]
    assert [(e.num_frames, e.num_flow) for e in result] == [(5, 4), (6, 5)]
    assert os.path.exists(result.rgb_path(result.entries[1], 5))


def test_twostreamfusion_layout(tmp_path):
    make_video(tmp_path / "jpegs_256" / "v_a", frames=7, flow=0, names=("frame", "-", "-"), digits=6)
    for axis in "uv":
        make_video(tmp_path / "tvl1_flow" / axis / "v_a", frames=6, flow=0, names=("frame", "-", "-"), digits=6)
    result = build_index(tmp_path, [entry("v_a")], ["Walk"], cache=False)
    assert result.layout.name == "twostreamfusion"
    assert result.entries == (VideoEntry("v_a", 0, 7, 6),)
    assert result.flow_paths(result.entries[0], 5) == (str(tmp_path / "tvl1_flow/u/v_a/frame000006.jpg"),
                                                        str(tmp_path / "tvl1_flow/v/v_a/frame000006.jpg"))
    # A missing v folder is reported for that video.
    make_video(tmp_path / "jpegs_256" / "v_b", frames=3, flow=0, names=("frame", "-", "-"), digits=6)
    make_video(tmp_path / "tvl1_flow" / "u" / "v_b", frames=2, flow=0, names=("frame", "-", "-"), digits=6)
    with pytest.raises(UserError, match=r"v_b: missing flow folder tvl1_flow/v/v_b"):
        build_index(tmp_path, [entry("v_a"), entry("v_b")], ["Walk"], cache=False)


def test_every_broken_video_is_reported(tmp_path):
    make_video(tmp_path / "v_good", frames=5, flow=4)
    make_video(tmp_path / "v_gap", frames=6, flow=5, skip=("img_00003.jpg",))
    make_video(tmp_path / "v_xy", frames=5, flow=4, skip=("flow_y_00004.jpg",))
    make_video(tmp_path / "v_empty", frames=0, flow=0)
    make_video(tmp_path / "v_noflow", frames=5, flow=0)
    entries = [entry(v) for v in ("v_good", "v_gap", "v_missing", "v_xy", "v_empty", "v_noflow")]
    with pytest.raises(UserError) as error:
        build_index(tmp_path, entries, ["Walk"], cache=False)
    lines = str(error.value).splitlines()
    assert lines[0].startswith("5 of 6 videos in ") and "(layout tsn, numbered from 1)" in lines[0]
    assert lines[1:] == [
        "  v_gap: gap in RGB frames: missing img_00003.jpg",
        "  v_missing: missing folder v_missing",
        "  v_xy: flow x/y mismatch: 4 flow_x_ but 3 flow_y_ images",
        "  v_empty: no RGB frames (img_NNNNN.jpg); no flow images (flow_x_NNNNN.jpg)",
        "  v_noflow: no flow images (flow_x_NNNNN.jpg)",
    ]


def test_mixed_start_and_flow_naming_are_reported(tmp_path):
    for video in ("v_a", "v_b", "v_c"):
        make_video(tmp_path / video, frames=3, flow=2)
    make_video(tmp_path / "v_zero", frames=3, flow=2, start=0)
    make_video(tmp_path / "v_mm", frames=3, flow=2, names=("img_", "x_", "y_"))
    with pytest.raises(UserError) as error:
        build_index(tmp_path, [entry(v) for v in ("v_a", "v_b", "v_c", "v_zero", "v_mm")], ["Walk"], cache=False)
    message = str(error.value)
    assert "v_zero: RGB frames numbered from 0 (img_00000.jpg) but the other videos are numbered from 1" in message
    assert "v_mm: no flow images (flow_x_NNNNN.jpg); found x_/y_ files instead" in message
    assert "v_a" not in message


def test_entries_leaving_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    make_video(root / "v_in", frames=3, flow=2)
    outside = make_video(tmp_path / "elsewhere" / "v_out", frames=3, flow=2)
    os.symlink(outside, root / "v_link")
    make_video(root / "v_filelink", frames=2, flow=1)
    os.symlink(outside / "img_00003.jpg", root / "v_filelink" / "img_00003.jpg")
    make_video(tmp_path / "root" / "Walk" / "v_inside_target", frames=3, flow=2)
    os.symlink(root / "Walk" / "v_inside_target", root / "v_internal")  # a link inside the root is fine
    entries = [entry("v_in"), SplitEntry("v_out", 0, "../elsewhere/v_out.avi"),
               SplitEntry("v_abs", 0, "/etc/v_abs.avi"), entry("v_link"), entry("v_filelink"), entry("v_internal")]
    with pytest.raises(UserError) as error:
        build_index(root, entries, ["Walk"], cache=False)
    message = str(error.value)
    assert message.startswith("4 of 6 videos")
    assert "v_out: path leaves the dataset root: '../elsewhere/v_out.avi'" in message
    assert "v_abs: path leaves the dataset root: '/etc/v_abs.avi'" in message
    assert "v_link: folder v_link resolves outside the dataset root (symlink)" in message
    assert "v_filelink: 1 file(s) resolve outside the dataset root (symlinks), e.g. img_00003.jpg" in message
    assert "v_in:" not in message and "v_internal" not in message


def test_cache_is_reused_and_invalidated_by_folder_changes(tmp_path, monkeypatch):
    for video in ("v_a", "v_b"):
        make_video(tmp_path / video, frames=4, flow=3)
    scans = []
    real_scan = index_lib._scan_folder
    monkeypatch.setattr(index_lib, "_scan_folder", lambda *args: scans.append(args[1]) or real_scan(*args))
    entries = [entry("v_a"), entry("v_b")]
    assert [e.num_frames for e in build_index(tmp_path, entries, ["Walk"])] == [4, 4]
    assert len(scans) == 2 and (tmp_path / CACHE_FILE_NAME).exists()
    cached = json.loads((tmp_path / CACHE_FILE_NAME).read_text())
    assert sorted(next(iter(cached["scans"].values()))) == ["v_a", "v_b"]

    assert [e.num_frames for e in build_index(tmp_path, entries, ["Walk"])] == [4, 4]
    assert len(scans) == 2  # nothing scanned again

    make_video(tmp_path / "v_b", frames=6, flow=5)  # adds files
    os.utime(tmp_path / "v_b", (OLD + 60, OLD + 60))
    assert [(e.num_frames, e.num_flow) for e in build_index(tmp_path, entries, ["Walk"])] == [(4, 3), (6, 5)]
    assert [os.path.basename(p) for p in scans[2:]] == ["v_b"]
    # A folder changed just now is not cached (a file added within the same clock tick would go unseen).
    (tmp_path / "v_a" / "img_00005.jpg").touch()
    assert build_index(tmp_path, entries, ["Walk"]).entries[0].num_frames == 5
    assert build_index(tmp_path, entries, ["Walk"]).entries[0].num_frames == 5
    assert [os.path.basename(p) for p in scans[3:]] == ["v_a", "v_a"]


def test_read_only_root_caches_in_user_cache_folder(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make_video(root / "v_a", frames=3, flow=2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    root.chmod(0o555)
    try:
        build_index(root, [entry("v_a")], ["Walk"])
        assert os.listdir(root) == ["v_a"]
    finally:
        root.chmod(0o755)
    assert len(list((tmp_path / "user_cache" / "two_stream_tf").glob("index-*.json"))) == 1


def test_no_video_found_and_bad_arguments(tmp_path):
    make_video(tmp_path / "v_a", frames=3, flow=2)
    with pytest.raises(UserError, match="frames folder not found"):
        build_index(tmp_path / "nope", [entry("v_a")], ["Walk"], cache=False)
    with pytest.raises(UserError, match="unknown frame layout 'dense'"):
        build_index(tmp_path, [entry("v_a")], ["Walk"], layout="dense", cache=False)
    with pytest.raises(UserError, match=r"1 of 1 videos .*\n  v_zz: missing folder v_zz$"):
        build_index(tmp_path, [entry("v_zz")], ["Walk"], cache=False)
    assert LAYOUTS["tsn"].start == 1  # detection never changes the shared layouts


def test_index_command(synthetic_dataset, tmp_path, capsys):
    from two_stream_tf import cli

    frames, splits = str(synthetic_dataset.frames_dir), str(synthetic_dataset.split_dir)
    assert cli.main(["index", frames, "--split-dir", splits, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "layout:      tsn (frames numbered from 1)" in out
    assert "split 1 train: 64 videos, 8 of 8 classes present" in out and "split 1 test: 32 videos" in out
    assert "RGB frames:       min 31, mean 31.0, max 31, total 992" in out  # the test subset, dense_flow numbering

    subset = tmp_path / "subset.txt"
    subset.write_text("1 BlueKiteBounce\n2 RedTriangleRise\n")
    assert cli.main(["index", frames, "--split-dir", splits, "--subset", "test", "--class-subset", str(subset),
                     "--no-cache", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["test"]
    assert (summary["videos"], summary["classes"], summary["flow"]["max"]) == (8, 2, 31)

    make_video(tmp_path / "frames" / "v_Walk_g01_c01", frames=3, flow=2, skip=("flow_x_00002.jpg",))
    (tmp_path / "classInd.txt").write_text("1 Walk\n")
    (tmp_path / "trainlist01.txt").write_text("Walk/v_Walk_g01_c01.avi 1\nWalk/v_Walk_g02_c01.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("Walk/v_Walk_g03_c01.avi\n")
    assert cli.main(["index", str(tmp_path / "frames"), "--split-dir", str(tmp_path), "--subset", "train"]) == 2
    err = capsys.readouterr().err
    assert "two-stream index: error: 2 of 2 videos" in err
    assert "v_Walk_g01_c01: flow x/y mismatch: 1 flow_x_ but 2 flow_y_ images" in err
    assert "v_Walk_g02_c01: missing folder v_Walk_g02_c01" in err and "Traceback" not in err
    assert cli.main(["index", str(tmp_path / "frames"), "--split-dir", str(tmp_path), "--split", "two"]) == 2
    assert "argument --split: 'two' is not a split number" in capsys.readouterr().err


def test_cache_writers_keep_each_others_folders(tmp_path):
    # Two processes indexing the train and test subsets of one root at the same time.
    first, second = index_lib._ScanCache(str(tmp_path), True), index_lib._ScanCache(str(tmp_path), True)
    scan = index_lib._FolderScan(counts={"img_": (3, 1, 3)}, outside=[])
    first.put("key", "v_a", OLD * 10**9, scan)
    first.save()
    second.put("key", "v_b", OLD * 10**9, scan)
    second.save()
    folders = json.loads((tmp_path / CACHE_FILE_NAME).read_text())["scans"]["key"]
    assert sorted(folders) == ["v_a", "v_b"] and folders["v_b"][1] == {"img_": [3, 1, 3]}
    assert index_lib._ScanCache(str(tmp_path), True).get("key", "v_a", OLD * 10**9).counts == {"img_": (3, 1, 3)}
    assert index_lib._ScanCache(str(tmp_path), True).get("key", "v_a", OLD * 10**9 + 1) is None  # changed folder
