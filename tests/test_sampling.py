"""Snippet sampling: TSN's test starts, segment draws, stacks that loop back, seeds."""
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.data import sampling


def tsn_test_starts(num_items, length, num_snippets):
    """NumPy reference: TSN eval_net.py's evenly spaced offsets."""
    tick = (num_items - length + 1) / float(num_snippets)
    return [int(tick / 2.0 + tick * j) for j in range(num_snippets)]


@pytest.mark.parametrize("num_items, length, num_snippets", [(100, 10, 25), (164, 1, 25), (31, 10, 25), (7, 1, 3)])
def test_test_starts_match_tsn(num_items, length, num_snippets):
    starts = sampling.test_starts(num_items, num_snippets, length=length).numpy()
    assert starts.tolist() == tsn_test_starts(num_items, length, num_snippets)
    assert starts.max() <= num_items - length


def test_test_starts_known_values():
    # 100 pairs, L = 10: 91 starts, tick 3.64 -> floor(1.82 + 3.64 j).
    starts = sampling.test_starts(100, 25, length=10).numpy()
    assert starts[:4].tolist() == [1, 5, 9, 12]
    assert starts[-1] == 89


def test_short_video_test_starts_stay_at_zero():
    # Fewer pairs than L: one start position, so every snippet starts at 0.
    assert sampling.test_starts(6, 25, length=10).numpy().tolist() == [0] * 25


def test_stack_loops_back_past_the_end():
    indices = sampling.stack_indices(tf.constant([0, 3]), 10, 6).numpy()
    assert indices.tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3], [3, 4, 5, 0, 1, 2, 3, 4, 5, 0]]
    inside = sampling.stack_indices(tf.constant([89]), 10, 100).numpy()
    assert inside.tolist() == [list(range(89, 99))]


def test_rgb_index_is_snippet_start_clamped():
    assert sampling.rgb_indices(tf.constant([0, 5, 40]), 10).numpy().tolist() == [0, 5, 9]


def test_classic_training_start_is_uniform_over_positions():
    draws = np.array([sampling.train_starts(20, [7, k], length=10).numpy()[0] for k in range(400)])
    # 20 pairs, L = 10: starts 0..10, every one drawn, none outside.
    assert draws.min() == 0 and draws.max() == 10
    assert set(draws.tolist()) == set(range(11))


def test_segments_draw_one_start_in_each_part():
    positions = 100 - 5 + 1  # 96 starts, 3 segments of 32
    for k in range(50):
        starts = sampling.train_starts(100, [3, k], num_segments=3, length=5).numpy()
        assert starts.shape == (3,)
        for segment, start in enumerate(starts):
            assert segment * positions // 3 <= start < (segment + 1) * positions // 3


def test_segments_of_a_short_video_stay_inside():
    for k in range(20):
        starts = sampling.train_starts(4, [1, k], num_segments=8, length=1).numpy()
        assert starts.min() >= 0 and starts.max() <= 3
        assert np.all(np.diff(starts) >= 0)
    # Fewer pairs than L: one position.
    assert sampling.train_starts(3, [1, 1], num_segments=3, length=10).numpy().tolist() == [0, 0, 0]


def test_seeds_are_reproducible_and_distinct():
    keys = sampling.video_keys(tf.constant(["v_a", "v_b"])).numpy()
    assert keys[0] != keys[1]
    assert keys[0] == sampling.video_keys(tf.constant(["v_a"])).numpy()[0]
    a = sampling.sample_seed(5, 11, keys[0]).numpy()
    assert np.array_equal(a, sampling.sample_seed(5, 11, keys[0]).numpy())
    assert not np.array_equal(a, sampling.sample_seed(5, 12, keys[0]).numpy())
    assert not np.array_equal(a, sampling.sample_seed(6, 11, keys[0]).numpy())
    assert not np.array_equal(a, sampling.sample_seed(5, 11, keys[1]).numpy())
    crop, flip = sampling.sub_seed(a, sampling.CROP).numpy(), sampling.sub_seed(a, sampling.FLIP).numpy()
    assert not np.array_equal(crop, flip)


def eval_net_starts(num_items, length, num_snippets):
    """NumPy reference: TSN eval_net.py's 1-based ticks, minus one."""
    step = (num_items - length) // (num_snippets - 1)
    ticks = list(range(1, min(2 + step * (num_snippets - 1), num_items + 1), step)) if step > 0 else [1] * num_snippets
    return [tick - 1 for tick in ticks]


@pytest.mark.parametrize("num_items, length", [(100, 5), (164, 1), (29, 5), (30, 5), (24, 1), (26, 1), (6, 10), (3, 5)])
def test_tsn_test_starts_match_eval_net(num_items, length):
    starts = sampling.test_starts(num_items, 25, length=length, rule="tsn").numpy()
    assert starts.tolist() == eval_net_starts(num_items, length, 25)


def test_tsn_rule_known_values_and_clamped_stacks():
    # 100 pairs, L = 5: step (100 - 5) // 24 = 3, starts 0, 3, ..., 72 (eval_net's ticks 1, 4, ..., 73).
    assert sampling.test_starts(100, 25, length=5, rule="tsn").numpy().tolist() == list(range(0, 73, 3))
    # 7 pairs, L = 10: every start 0, the stack clamped at the last pair as eval_net's min(frame_cnt, ...).
    starts = sampling.test_starts(7, 25, length=10, rule="tsn")
    assert starts.numpy().tolist() == [0] * 25
    indices = sampling.stack_indices(starts[:1], 10, 7, overflow=sampling.test_overflow("tsn")).numpy()
    assert indices.tolist() == [[0, 1, 2, 3, 4, 5, 6, 6, 6, 6]]
    assert sampling.test_overflow("centered") == "loop"
    assert sampling.test_starts(50, 1, length=5, rule="tsn").numpy().tolist() == [0]
    with pytest.raises(ValueError, match="test_sampling must be one of"):
        sampling.test_starts(50, 25, rule="uniform")
    with pytest.raises(ValueError, match="overflow"):
        sampling.stack_indices(starts, 10, 7, overflow="wrap")
