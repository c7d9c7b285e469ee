"""Split files: the real UCF-101 / HMDB-51 lists, class subsets, and clear errors on bad files."""
import pytest

from two_stream_tf.data.splits import SplitEntry, load_hmdb51_split, load_split, load_ucf101_split, read_class_index
from two_stream_tf.errors import UserError


@pytest.mark.parametrize("split, train, test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_real_ucf101_split_counts(shared_data, split, train, test):
    result = load_ucf101_split(shared_data / "ucf101_splits", split)
    assert (len(result.train), len(result.test), len(result.classes)) == (train, test, 101)
    assert result.classes[0] == "ApplyEyeMakeup" and result.classes[100] == "YoYo"
    assert {e.label for e in result.train} == set(range(101))
    # No video is in both halves of a split.
    assert not {e.video for e in result.train} & {e.video for e in result.test}


def test_real_ucf101_entries_and_handstand_spelling(shared_data):
    result = load_ucf101_split(shared_data / "ucf101_splits", 1)
    assert result.train[0] == SplitEntry("v_ApplyEyeMakeup_g08_c01", 0, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi")
    assert result.test[0] == SplitEntry("v_ApplyEyeMakeup_g01_c01", 0, "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi")
    handstand = [e for e in result.train if e.video.startswith("v_HandStandPushups_")]
    assert handstand and {e.label for e in handstand} == {result.classes.index("HandstandPushups")} == {36}
    # The HandStand spelling of the file names also resolves when it is the class folder.
    split = load_ucf101_split(shared_data / "ucf101_splits", 1, class_subset=["HandStandPushups", "YoYo"])
    assert split.classes == ("HandstandPushups", "YoYo")


@pytest.mark.parametrize("split", [1, 2, 3])
def test_real_hmdb51_split_counts(shared_data, split):
    result = load_hmdb51_split(shared_data / "hmdb51_splits", split)
    assert (len(result.train), len(result.test), len(result.classes)) == (3570, 1530, 51)
    for label in (0, 25, 50):
        assert sum(e.label == label for e in result.train) == 70
        assert sum(e.label == label for e in result.test) == 30
    # TSN's class_list.txt order (its lines carry trailing spaces): sorted file names, kick_ball before kick.
    listed = [line.strip() for line in (shared_data / "hmdb51_splits" / "class_list.txt").read_text().splitlines()]
    assert list(result.classes) == listed
    assert result.classes.index("kick_ball") + 1 == result.classes.index("kick")


def test_real_hmdb51_entry(shared_data):
    result = load_split(shared_data / "hmdb51_splits", 1)  # auto-detected
    first = result.train[0]
    assert first.label == 0 and first.path == f"brush_hair/{first.video}.avi"
    assert "April_09_brush_hair_u_nm_np1_ba_goo_0" in {e.video for e in result.train}


def test_class_subset_file_relabels_in_its_order(shared_data, tmp_path):
    subset = tmp_path / "subset.txt"
    subset.write_bytes(b"5 BalanceBeam\r\n\r\n1 ApplyEyeMakeup  \r\n37 handstandpushups\r\n")
    result = load_ucf101_split(shared_data / "ucf101_splits", 1, class_subset=subset)
    assert result.classes == ("BalanceBeam", "ApplyEyeMakeup", "HandstandPushups")
    full = load_ucf101_split(shared_data / "ucf101_splits", 1)
    for mine, theirs in ((result.train, full.train), (result.test, full.test)):
        expected = {e.video: [4, 0, 36].index(e.label) for e in theirs if e.label in (4, 0, 36)}
        assert {e.video: e.label for e in mine} == expected


def write_ucf(tmp_path, classes="1 Walk\n2 Run\n", train="Walk/v_Walk_g01_c01.avi 1\n", test="Run/v_Run_g02_c01.avi\n"):
    for name, text in (("classInd.txt", classes), ("trainlist01.txt", train), ("testlist01.txt", test)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_lf_and_crlf_blank_lines_and_trailing_spaces(tmp_path):
    (tmp_path / "lf").mkdir()
    (tmp_path / "crlf").mkdir()
    lf = write_ucf(tmp_path / "lf", train="\nWalk/v_Walk_g01_c01.avi 1   \n\nRun/v_Run_g01_c01.avi 2\n")
    crlf = write_ucf(tmp_path / "crlf", classes="1 Walk\r\n2 Run\r\n",
                     train="Walk/v_Walk_g01_c01.avi 1 \r\n\r\nRun/v_Run_g01_c01.avi 2\r\n")
    for folder in (lf, crlf):
        result = load_split(folder)
        assert result.classes == ("Walk", "Run")
        assert [(e.video, e.label) for e in result.train] == [("v_Walk_g01_c01", 0), ("v_Run_g01_c01", 1)]
        assert [(e.video, e.label) for e in result.test] == [("v_Run_g02_c01", 1)]


@pytest.mark.parametrize("file, content, line, problem", [
    ("trainlist01.txt", "Walk/v_Walk_g01_c01.avi 1\nWalk/v_Walk_g01_c02.avi 2\n", 2, "disagrees with the folder"),
    ("trainlist01.txt", "Walk/v_Walk_g01_c01.avi 1\n\nJump/v_Jump_g01_c01.avi 1\n", 3, "unknown class 'Jump'"),
    ("trainlist01.txt", "Walk/v_Walk_g01_c01.avi one\n", 1, "expected"),
    ("trainlist01.txt", "Walk/v_Walk_g01_c01.avi 7\n", 1, "outside 1..2"),
    ("trainlist01.txt", "Walk/v_Walk_g01_c01.avi 1\nWalk/v_Walk_g01_c01.avi 1\n", 2, "listed twice"),
    ("testlist01.txt", "Run/v_Run_g02_c01.avi\nRun/v_Run_g02_c01.avi extra words\n", 2, "expected"),
    ("classInd.txt", "1 Walk\nRun\n", 2, "expected '<id> <class name>'"),
    ("classInd.txt", "1 Walk\n1 Run\n", 2, "already used"),
    ("classInd.txt", "1 Walk\n2 walk\n", 2, "already defined"),
])
def test_bad_ucf_lines_name_file_line_and_text(tmp_path, file, content, line, problem):
    write_ucf(tmp_path)
    (tmp_path / file).write_text(content)
    with pytest.raises(UserError) as error:
        load_ucf101_split(tmp_path)
    message = str(error.value)
    assert f"{file}:{line}:" in message and problem in message
    assert repr(content.splitlines()[line - 1].strip()) in message


def test_class_ids_must_cover_1_to_k(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Walk\n3 Run\n")
    with pytest.raises(UserError, match=r"class ids must be 1\.\.2; missing \[2\]"):
        read_class_index(tmp_path / "classInd.txt")


def test_unknown_class_in_subset_names_subset_file_line(tmp_path):
    write_ucf(tmp_path)
    (tmp_path / "subset.txt").write_text("1 Run\n2 Swim\n")
    with pytest.raises(UserError, match=r"subset\.txt:2: class 'Swim' of the class subset is not a class"):
        load_ucf101_split(tmp_path, class_subset=tmp_path / "subset.txt")


def test_missing_files_and_bad_split_number(tmp_path):
    write_ucf(tmp_path)
    with pytest.raises(UserError, match=r"split file not found: .*trainlist02\.txt"):
        load_ucf101_split(tmp_path, 2)
    with pytest.raises(UserError, match="split must be a positive integer, got 0"):
        load_ucf101_split(tmp_path, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no split files in"):
        load_split(tmp_path / "empty")


def test_bad_hmdb_line(tmp_path):
    (tmp_path / "walk_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \n")
    (tmp_path / "run_test_split1.txt").write_text("c.avi 1 \r\nd.avi 3 \r\n")
    with pytest.raises(UserError) as error:
        load_hmdb51_split(tmp_path)
    assert "run_test_split1.txt:2: expected '<video>.avi <0|1|2>': 'd.avi 3'" in str(error.value)
    (tmp_path / "run_test_split1.txt").write_text("c.avi 1 \r\nd.avi 0 \r\ne.avi 2\r\n")
    result = load_split(tmp_path)
    assert result.classes == ("run", "walk")  # file-name order without a class_list.txt
    assert [(e.path, e.label) for e in result.train] == [("run/c.avi", 0), ("walk/a.avi", 1)]
    assert [e.video for e in result.test] == ["e", "b"]


def test_hmdb_class_list_must_match_files(tmp_path):
    (tmp_path / "walk_test_split1.txt").write_text("a.avi 1 \n")
    (tmp_path / "run_test_split1.txt").write_text("c.avi 2 \n")
    (tmp_path / "class_list.txt").write_text("walk\nrun \n")
    assert load_hmdb51_split(tmp_path).classes == ("walk", "run")
    (tmp_path / "class_list.txt").write_text("walk\nswim\n")
    with pytest.raises(UserError, match=r"class_list\.txt:2: class has no swim_test_split<N>\.txt file: 'swim'"):
        load_hmdb51_split(tmp_path)


def test_a_video_in_both_lists_names_both_lines(tmp_path):
    write_ucf(tmp_path, train="Walk/v_Walk_g01_c01.avi 1\nRun/v_Run_g02_c01.avi 2\nRun/v_Run_g03_c01.avi 2\n",
              test="Walk/v_Walk_g04_c01.avi\n\nrun/V_RUN_G03_C01.avi\nRun/v_Run_g02_c01.avi\n")
    with pytest.raises(UserError) as error:
        load_ucf101_split(tmp_path)
    train, test = tmp_path / "trainlist01.txt", tmp_path / "testlist01.txt"
    # Matched without regard to case; the first test line that repeats a training video is named.
    assert str(error.value) == (f"video V_RUN_G03_C01 is in both the training list ({train}:3) and the test list "
                                f"({test}:3) (2 videos are in both): a video must be in one of them")


def test_hmdb_video_in_train_and_test_names_both_lines(tmp_path):
    (tmp_path / "walk_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \n")
    (tmp_path / "run_test_split1.txt").write_text("c.avi 1 \na.avi 2 \n")
    with pytest.raises(UserError) as error:
        load_hmdb51_split(tmp_path)
    assert str(error.value) == (f"video a is in both the training list ({tmp_path / 'walk_test_split1.txt'}:1) and "
                                f"the test list ({tmp_path / 'run_test_split1.txt'}:2): a video must be in one of them")
