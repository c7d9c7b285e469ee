"""Metrics, score files, fusion of score files, the results table and the confusion-matrix PNG."""
import json
import os

import numpy as np
import pytest

from two_stream_tf.errors import UserError
from two_stream_tf.evaluation import fusion, metrics, plots
from two_stream_tf.evaluation.scores import VideoScores, load_scores, save_scores

CLASSES = ("Archery", "Biking", "Bowling")


def _scores(rows, labels, videos=None, classes=CLASSES):
    videos = videos or [f"v_{i:02d}" for i in range(len(rows))]
    return VideoScores(videos, labels, np.asarray(rows, dtype=np.float32), classes)


def test_top_k_and_class_accuracies_match_hand_counts():
    scores = np.array([[0.7, 0.2, 0.1],   # label 0: correct
                       [0.5, 0.4, 0.1],   # label 1: wrong, 2nd
                       [0.1, 0.3, 0.6],   # label 2: correct
                       [0.2, 0.3, 0.5]])  # label 0: wrong, 3rd
    labels = np.array([0, 1, 2, 0])
    assert metrics.top_k_accuracy(scores, labels, 1) == 0.5
    assert metrics.top_k_accuracy(scores, labels, 2) == 0.75
    assert metrics.top_k_accuracy(scores, labels, 5) == 1.0  # capped at K = 3
    np.testing.assert_allclose(metrics.per_class_accuracy(scores, labels), [0.5, 0.0, 1.0])
    # Mean class accuracy differs from top-1 when classes are unbalanced.
    assert metrics.mean_class_accuracy(scores, labels) == pytest.approx(0.5)
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, scores.argmax(1), 3),
                                  [[1, 0, 1], [1, 0, 0], [0, 0, 1]])


def test_class_without_videos_is_left_out_of_the_mean():
    scores = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    labels = np.array([0, 2, 2])
    per_class = metrics.per_class_accuracy(scores, labels)
    assert np.isnan(per_class[1]) and per_class[0] == 1.0 and per_class[2] == 0.5
    assert metrics.mean_class_accuracy(scores, labels) == pytest.approx(0.75)
    result = metrics.compute_metrics(_scores(scores, labels))
    assert result.per_class == {"Archery": 1.0, "Biking": None, "Bowling": 0.5}
    assert result.num_videos == 3 and result.top1 == pytest.approx(2 / 3)
    json.dumps(result.to_json())  # plain JSON


def test_ties_count_for_the_lower_class_index():
    scores = np.full((2, 3), 1 / 3)
    assert metrics.top_k_accuracy(scores, np.array([0, 1]), 1) == 0.5


def test_score_file_round_trip_is_plain_arrays(tmp_path):
    original = _scores([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], [1, 0], videos=["v_a", "v_b"])
    path = tmp_path / "spatial_scores.npz"
    save_scores(path, original)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["classes", "labels", "scores", "videos"]
        assert data["videos"].dtype.kind == "U" and data["classes"].dtype.kind == "U"
        np.testing.assert_array_equal(data["labels"], [1, 0])
    loaded = load_scores(path)
    np.testing.assert_array_equal(loaded.scores, original.scores)
    assert list(loaded.classes) == list(CLASSES) and list(loaded.videos) == ["v_a", "v_b"]
    assert not [name for name in os.listdir(tmp_path) if name != "spatial_scores.npz"]  # no temp left


def test_loading_a_bad_score_file_names_the_file(tmp_path):
    with pytest.raises(UserError, match="score file not found: .*missing.npz"):
        load_scores(tmp_path / "missing.npz")
    bad = tmp_path / "other.npz"
    np.savez(bad, videos=np.array(["v"]), scores=np.ones((1, 3)))
    with pytest.raises(UserError, match=r"other.npz: not a score file, missing array\(s\) labels, classes"):
        load_scores(bad)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(UserError, match="text.npz: cannot read"):
        load_scores(text)


def test_fusion_averages_aligns_order_and_weights():
    rgb = _scores([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], [1, 1], videos=["v_a", "v_b"])
    flow = _scores([[0.1, 0.7, 0.2], [0.1, 0.2, 0.7]], [1, 1], videos=["v_b", "v_a"])  # other order
    fused = fusion.fuse([rgb, flow])
    np.testing.assert_allclose(fused.scores, [[0.35, 0.25, 0.4], [0.15, 0.6, 0.25]], atol=1e-6)
    # 1:1.5 (TSN) leans towards flow: video a now votes class 2.
    tsn = fusion.fuse([rgb, flow], weights=[1, 1.5])
    np.testing.assert_allclose(tsn.scores[0], [0.3, 0.24, 0.46], atol=1e-6)
    np.testing.assert_allclose(tsn.scores.sum(axis=1), 1.0, atol=1e-6)


def test_fusion_refuses_mismatched_files():
    a = _scores([[0.5, 0.3, 0.2]], [0], videos=["v_a"])
    with pytest.raises(UserError, match=r"cover different videos: 1 video\(s\) only in a.npz \(e.g. v_a\); "
                                        r"1 video\(s\) only in b.npz \(e.g. v_z\)"):
        fusion.fuse([a, _scores([[0.5, 0.3, 0.2]], [0], videos=["v_z"])], names=["a.npz", "b.npz"])
    other_classes = _scores([[0.5, 0.3, 0.2]], [0], videos=["v_a"], classes=("Archery", "Boxing", "Bowling"))
    with pytest.raises(UserError, match="different label spaces .*label 1: 'Biking' vs 'Boxing'"):
        fusion.fuse([a, other_classes], names=["a.npz", "b.npz"])
    relabelled = _scores([[0.5, 0.3, 0.2]], [2], videos=["v_a"])
    with pytest.raises(UserError, match=r"disagree on the label of 1 video\(s\), e.g. v_a: 2 vs 0"):
        fusion.fuse([a, relabelled], names=["a.npz", "b.npz"])
    with pytest.raises(UserError, match="got 3 fusion weight"):
        fusion.fuse([a, a], weights=[1, 2, 3])


def test_weight_fitting_finds_the_stream_that_helps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    # Stream 1 is confident noise (one-hot on a random class), stream 2 puts 0.6 on the truth and 0.2
    # elsewhere: the truth wins a wrong noise vote only when w * 0.6 > 1 + w * 0.2, i.e. w > 2.5.
    noise = np.eye(3)[(labels + rng.integers(1, 3, size=60)) % 3]
    informative = np.full((60, 3), 0.2)
    informative[np.arange(60), labels] = 0.6
    weights, value = fusion.fit_weights([_scores(noise, labels), _scores(informative, labels)])
    assert weights[0] == 1.0 and weights[1] == pytest.approx(2.6) and value == 1.0
    # Two equally good identical streams: ties resolve to plain averaging.
    weights, _ = fusion.fit_weights([_scores(informative, labels), _scores(informative, labels)])
    assert weights == (1.0, 1.0)


def test_results_table_appends_rows(tmp_path):
    m = metrics.compute_metrics
    rgb = _scores([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], [0, 2])
    flow = _scores([[0.5, 0.2, 0.3], [0.1, 0.2, 0.7]], [0, 2])
    fused = fusion.fuse([rgb, flow])
    md, js = tmp_path / "results.md", tmp_path / "results.json"
    for run in ("split1", "split2"):
        fusion.append_results_row(md, js, run, ("Spatial", "Temporal"), [m(rgb), m(flow)], m(fused), (1, 1.5))
    lines = md.read_text().splitlines()
    assert "| Run | Spatial | Temporal | Fusion | Weights |" in lines
    assert lines[-1] == "| split2 | 50.00 (50.00) | 100.00 (100.00) | 100.00 (100.00) | 1:1.5 |"
    rows = json.loads(js.read_text())
    assert [row["run"] for row in rows] == ["split1", "split2"] and rows[0]["fusion"]["top1"] == 1.0
    with pytest.raises(UserError, match="table columns are"):
        fusion.append_results_row(md, js, "x", ("RGB", "Flow"), [m(rgb), m(flow)], m(fused), (1, 1))


def test_confusion_png_is_a_png_of_the_right_content(tmp_path):
    path = tmp_path / "confusion.png"
    plots.save_confusion_png(path, np.array([[3, 1, 0], [0, 4, 0], [1, 0, 2]]), CLASSES, title="split 1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    array = plots.figure_to_array(plots.confusion_figure(np.eye(3, dtype=int) * 5, CLASSES))
    assert array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    # The diagonal is dark blue and the off-diagonal white: both colours appear.
    flat = array.reshape(-1, 3).astype(int)
    assert (flat.sum(axis=1) > 740).any() and ((flat[:, 2] - flat[:, 0]) > 100).any()


def test_test_views_regroup_into_interleaved_snippet_sequences():
    import tensorflow as tf
    from two_stream_tf.evaluation.protocol import to_units
    snippets, crops = 7, 2  # 7 snippets: sequences of 3 use the first 6
    values = np.array([[s * 10 + c for s in range(snippets) for c in range(crops)]], np.float32)
    views = tf.constant(values.reshape(1, snippets * crops, 1, 1, 1))
    single = to_units(views, crops).numpy().reshape(-1)
    np.testing.assert_array_equal(single, values[0])
    sequences = to_units(views, crops, segments=3).numpy().reshape(-1, 3)
    # Sequence g holds snippets g, g + 2, g + 4 (so each spans the video), one crop at a time.
    np.testing.assert_array_equal(sequences, [[0, 20, 40], [1, 21, 41], [10, 30, 50], [11, 31, 51]])


def test_video_scores_average_the_softmax_over_views():
    import keras
    import tensorflow as tf
    from two_stream_tf.data.index import VideoEntry
    from two_stream_tf.evaluation.protocol import score_videos
    inputs = keras.Input((1, 1, 2))
    logits = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    rng = np.random.default_rng(0)
    views = rng.normal(size=(3, 4, 1, 1, 2)).astype(np.float32)  # 3 videos x 4 views
    labels = np.array([1, 0, 1], np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((views, labels)).batch(2)
    entries = [VideoEntry(f"Class/v_{i}", int(label), 10, 9) for i, label in enumerate(labels)]
    result = score_videos(model, dataset, entries, ("a", "b"), crops=1, views_per_step=3, progress=False)
    expected = np.exp(views[..., 0, 0, :]) / np.exp(views[..., 0, 0, :]).sum(-1, keepdims=True)
    np.testing.assert_allclose(result.scores, expected.mean(axis=1), rtol=1e-5)
    assert list(result.videos) == ["v_0", "v_1", "v_2"] and list(result.labels) == [1, 0, 1]


def test_fuse_command_fits_weights_and_appends_the_table(tmp_path, capsys):
    from two_stream_tf import cli
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=40)
    noise = np.eye(3)[(labels + rng.integers(1, 3, size=40)) % 3]
    informative = np.full((40, 3), 0.2)
    informative[np.arange(40), labels] = 0.6
    paths = {}
    for split, rows in (("val", slice(0, 20)), ("test", slice(20, 40))):
        for name, scores in (("rgb", noise), ("flow", informative)):
            paths[split, name] = tmp_path / f"{name}_{split}.npz"
            save_scores(paths[split, name], _scores(scores[rows], labels[rows],
                                                    videos=[f"v_{i}" for i in range(40)][rows]))
    table = tmp_path / "results.md"
    assert cli.main(["fuse", f"--scores={paths['test', 'rgb']},{paths['test', 'flow']}",
                     f"--fit_on={paths['val', 'rgb']},{paths['val', 'flow']}", f"--results_table={table}",
                     "--run_name=fitted", f"--output_dir={tmp_path / 'fused'}"]) == 0
    out = capsys.readouterr().out
    assert "weights 1:2.6 fitted on 20 validation videos (top1 100.00 %)" in out
    assert "Fusion    top-1 100.00 %" in out
    assert table.read_text().splitlines()[-1].endswith("| 100.00 (100.00) | 1:2.6 |")
    assert load_scores(tmp_path / "fused" / "scores.npz").scores.shape == (20, 3)
    assert cli.main(["fuse", f"--scores={paths['test', 'rgb']},{paths['test', 'flow']}", "--weights=tsn"]) == 0
    assert "weights 1:1.5" in capsys.readouterr().out
