"""Held-out validation videos and stratified subsets, on the real UCF-101 and HMDB-51 split files."""
import collections

import pytest

from two_stream_tf.data import holdout
from two_stream_tf.data.splits import load_split
from two_stream_tf.errors import UserError


@pytest.fixture(scope="module")
def ucf101(shared_data):
    return load_split(shared_data / "ucf101_splits", 1)


def _groups(entries):
    return {(entry.label, holdout.video_group(entry.video)) for entry in entries}


def test_ucf101_holdout_is_stratified_by_whole_groups_and_deterministic(ucf101):
    kept, held = holdout.holdout_by_fraction(ucf101.train, holdout.TF_SLIM_FRACTION, seed=0, classes=ucf101.classes)
    assert len(kept) + len(held) == len(ucf101.train) == 9537
    assert not {e.video for e in kept} & {e.video for e in held}
    # Every class is in both parts, with about 1/8 of its videos held out (whole groups: never exactly).
    kept_counts = collections.Counter(e.label for e in kept)
    held_counts = collections.Counter(e.label for e in held)
    assert set(kept_counts) == set(held_counts) == set(range(101))
    for label in range(101):
        share = held_counts[label] / (held_counts[label] + kept_counts[label])
        assert 0.04 <= share <= 0.25, (ucf101.classes[label], share)
    assert 0.10 <= len(held) / 9537 <= 0.15
    # No group (clips cut from one long video) is on both sides.
    assert not _groups(kept) & _groups(held)
    # Both parts keep the training list's order.
    position = {e.video: i for i, e in enumerate(ucf101.train)}
    assert [position[e.video] for e in held] == sorted(position[e.video] for e in held)
    # The same seed gives the same videos; another seed other ones.
    assert holdout.holdout_by_fraction(ucf101.train, 0.125, seed=0)[1] == held
    other = holdout.holdout_by_fraction(ucf101.train, 0.125, seed=1)[1]
    assert {e.video for e in other} != {e.video for e in held}


def test_hmdb51_holdout_draws_single_videos_in_every_class(shared_data):
    split = load_split(shared_data / "hmdb51_splits", 1)
    kept, held = holdout.holdout_by_fraction(split.train, 0.125, seed=3, classes=split.classes)
    held_counts = collections.Counter(e.label for e in held)
    total_counts = collections.Counter(e.label for e in split.train)
    # HMDB-51 names have no groups: 70 training videos per class, 1/8 of them is 9 (8.75 rounded).
    assert set(held_counts) == set(range(51)) and set(total_counts.values()) == {70}
    assert set(held_counts.values()) == {9}
    assert len(kept) == 51 * 61 and not {e.video for e in kept} & {e.video for e in held}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_must_lie_between_0_and_1(ucf101, fraction):
    with pytest.raises(UserError, match=f"strictly between 0 and 1, got {fraction:g}"):
        holdout.holdout_by_fraction(ucf101.train, fraction)


def test_a_class_in_one_group_cannot_give_validation_videos(ucf101):
    one_group = [e for e in ucf101.train if e.label != 0 or holdout.video_group(e.video) == 8]
    with pytest.raises(UserError, match=r"class 'ApplyEyeMakeup' has 5 training video\(s\) in one group"):
        holdout.holdout_by_fraction(one_group, 0.125, classes=ucf101.classes)


def test_validation_list_holds_out_its_videos(ucf101, tmp_path):
    listed = tmp_path / "val.txt"
    listed.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n\nYoYo/v_YoYo_g25_c05.avi\n")
    kept, held = holdout.holdout_from_list(ucf101.train, listed, ucf101.classes, test_entries=ucf101.test)
    assert [e.video for e in held] == ["v_ApplyEyeMakeup_g08_c01", "v_YoYo_g25_c05"]
    assert len(kept) == 9535 and "v_YoYo_g25_c05" not in {e.video for e in kept}
    # What training writes beside the model reads back as the same list.
    (tmp_path / "again.txt").write_text(holdout.format_list(held))
    assert holdout.holdout_from_list(ucf101.train, tmp_path / "again.txt")[1] == held


@pytest.mark.parametrize("text, line, problem", [
    ("YoYo/v_YoYo_g25_c05.avi\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n", 2,
     "video not in the training list (it is a test video)"),
    ("YoYo/v_YoYo_g25_c05.avi\nYoYo/v_YoYo_g99_c01.avi\n", 2,
     "video not in the training list (validation videos come from the training list)"),
    ("YoYo/v_YoYo_g25_c05.avi 3\n", 1, "label 3 disagrees with the training list's 101 (YoYo)"),
    ("YoYo/v_YoYo_g25_c05.avi\n\nyoyo/V_YOYO_G25_C05.AVI\n", 3, "video listed twice (first at line 1)"),
    ("YoYo/v_YoYo_g25_c05.avi one\n", 1, "expected '<class>/<video>.avi'"),
])
def test_bad_validation_lists_name_file_and_line(ucf101, tmp_path, text, line, problem):
    listed = tmp_path / "val.txt"
    listed.write_text(text)
    with pytest.raises(UserError) as error:
        holdout.holdout_from_list(ucf101.train, listed, ucf101.classes, test_entries=ucf101.test)
    assert f"val.txt:{line}: {problem}" in str(error.value)
    assert repr(text.splitlines()[line - 1].strip()) in str(error.value)


def test_stratified_subset_covers_the_classes_not_the_first_ones(ucf101):
    first = ucf101.test[:64]
    assert len({e.label for e in first}) == 2  # the lists are sorted by class
    chosen = holdout.stratified_subset(ucf101.test, 64, seed=0)
    assert len(chosen) == 64 and len({e.label for e in chosen}) == 64
    # 202 videos of 101 classes: two of each; the list's order is kept.
    chosen = holdout.stratified_subset(ucf101.test, 202, seed=5)
    assert set(collections.Counter(e.label for e in chosen).values()) == {2}
    position = {e.video: i for i, e in enumerate(ucf101.test)}
    assert [position[e.video] for e in chosen] == sorted(position[e.video] for e in chosen)
    assert holdout.stratified_subset(ucf101.test, 202, seed=5) == chosen
    assert holdout.stratified_subset(ucf101.test, 202, seed=6) != chosen
    assert holdout.stratified_subset(ucf101.test, 0) == tuple(ucf101.test)
    # A class that runs out drops out of the turns: 3 classes of 1, 1 and 5 videos, 5 wanted.
    few = [e for e in ucf101.test if e.label == 0][:1] + [e for e in ucf101.test if e.label == 1][:1] + \
        [e for e in ucf101.test if e.label == 2][:5]
    assert collections.Counter(e.label for e in holdout.stratified_subset(few, 5)) == {0: 1, 1: 1, 2: 3}
