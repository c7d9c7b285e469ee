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


# --- logits, votes and the fusion methods -------------------------------------------------------------------

def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _with_logits(logits, labels, videos=None):
    logits = np.asarray(logits, dtype=np.float32)
    videos = videos or [f"v_{i:02d}" for i in range(len(logits))]
    return VideoScores(videos, labels, _softmax(logits), CLASSES, logits=logits)


def test_logits_and_votes_round_trip_and_old_files_still_load(tmp_path):
    votes = np.array([[7, 2, 1], [0, 0, 10]], np.int32)
    original = VideoScores(["v_a", "v_b"], [0, 2], [[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], CLASSES,
                           logits=[[2.0, 1.3, 0.2], [-1.0, -1.0, 1.1]], votes=votes)
    save_scores(tmp_path / "new.npz", original)
    with np.load(tmp_path / "new.npz", allow_pickle=False) as data:
        assert data["logits"].dtype == np.float32 and data["votes"].dtype == np.int32
    loaded = load_scores(tmp_path / "new.npz")
    np.testing.assert_array_equal(loaded.votes, votes)
    np.testing.assert_allclose(loaded.logits, [[2.0, 1.3, 0.2], [-1.0, -1.0, 1.1]])
    # Reordering carries them along.
    np.testing.assert_array_equal(loaded.reordered(["v_b", "v_a"]).votes, votes[::-1])
    np.savez(tmp_path / "old.npz", videos=np.array(["v_a"]), labels=np.array([1]),
             scores=np.array([[0.2, 0.5, 0.3]], np.float32), classes=np.array(CLASSES))
    old = load_scores(tmp_path / "old.npz")
    assert old.logits is None and old.votes is None
    with pytest.raises(ValueError, match=r"votes must have the shape of scores \(2, 3\), got \(2, 2\)"):
        VideoScores(["v_a", "v_b"], [0, 2], np.ones((2, 3)) / 3, CLASSES, votes=np.ones((2, 2)))


def test_logit_sum_is_the_softmax_of_the_weighted_logit_sum():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, size=12)
    rgb_logits, flow_logits = rng.normal(scale=3.0, size=(2, 12, 3))
    rgb, flow = _with_logits(rgb_logits, labels), _with_logits(flow_logits, labels)
    fused = fusion.fuse([rgb, flow], weights=[1.0, 2.0], method="logit_sum")
    expected = rgb.logits.astype(np.float64) + 2.0 * flow.logits
    np.testing.assert_allclose(fused.logits, expected, rtol=1e-6)
    np.testing.assert_allclose(fused.scores, _softmax(expected), rtol=1e-5, atol=1e-7)
    # It is not the average of the softmax, which saturates: softmax (0.007, 0.987, 0.007) and
    # (0.952, 0.0003, 0.047) average to class 1, while the logits sum to (3, 0, 0).
    one = _with_logits([[0.0, 5.0, 0.0]], [1], videos=["v_x"])
    other = _with_logits([[3.0, -5.0, 0.0]], [1], videos=["v_x"])
    assert fusion.fuse([one, other], method="average").predictions.tolist() == [1]
    assert fusion.fuse([one, other], method="logit_sum").predictions.tolist() == [0]
    with pytest.raises(UserError, match="b.npz: has no per-video logits, which fusion by logit_sum needs"):
        fusion.fuse([rgb, _scores(flow.scores, labels)], method="logit_sum", names=["a.npz", "b.npz"])


def test_majority_vote_counts_the_snippets_top1_and_breaks_ties_by_softmax():
    def voted(votes, scores):
        return VideoScores(["v_a", "v_b", "v_c"], [0, 1, 2], scores, CLASSES, votes=votes)

    rgb = voted([[6, 4, 0], [5, 0, 5], [0, 0, 10]], [[0.5, 0.4, 0.1], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    flow = voted([[0, 5, 5], [0, 10, 0], [4, 0, 6]], [[0.1, 0.5, 0.4], [0.2, 0.5, 0.3], [0.4, 0.1, 0.5]])
    fused = fusion.fuse([rgb, flow], method="vote")
    np.testing.assert_array_equal(fused.votes, [[6, 9, 5], [5, 10, 5], [4, 0, 16]])
    assert fused.predictions.tolist() == [1, 1, 2]
    np.testing.assert_allclose(fused.scores, np.array(fused.votes) / 20, atol=1e-6)
    # The average of the softmax disagrees on the first video (0.3, 0.45, 0.25 -> also 1) and the second
    # (0.4, 0.3, 0.3 -> 0): votes count snippets, not confidence.
    assert fusion.fuse([rgb, flow], method="average").predictions.tolist() == [1, 0, 2]
    # Weights scale each stream's votes; a tie (rgb 10:0 vs flow 0:10 at 1:1) goes to the higher mean softmax.
    tie_rgb = VideoScores(["v_a"], [0], [[0.9, 0.1, 0.0]], CLASSES, votes=[[10, 0, 0]])
    tie_flow = VideoScores(["v_a"], [0], [[0.4, 0.6, 0.0]], CLASSES, votes=[[0, 10, 0]])
    assert fusion.fuse([tie_rgb, tie_flow], method="vote").predictions.tolist() == [0]
    weighted = fusion.fuse([tie_rgb, tie_flow], weights=[1, 1.5], method="vote")
    assert weighted.predictions.tolist() == [1] and weighted.votes is None
    np.testing.assert_allclose(weighted.scores, [[0.4, 0.6, 0.0]], atol=1e-6)


def test_non_finite_scores_are_refused_naming_the_file():
    good = _scores([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]], [0, 1])
    nan = _scores(np.full((2, 3), np.nan), [0, 1])
    with pytest.raises(UserError, match=r"nan.npz: scores of 2 of 2 video\(s\) are not finite \(NaN or infinite\), "
                                        r"e.g. v_00"):
        fusion.fuse([good, nan], names=["good.npz", "nan.npz"])
    inf_logits = VideoScores(good.videos, good.labels, good.scores, CLASSES, logits=[[1.0, 0.0, 0.0], [np.inf, 0, 0]])
    with pytest.raises(UserError, match=r"b.npz: logits of 1 of 2 video\(s\) are not finite"):
        fusion.fuse([good, inf_logits], names=["a.npz", "b.npz"])


def _fuse_files(tmp_path, name, scores):
    path = tmp_path / f"{name}.npz"
    save_scores(path, scores)
    return str(path)


def test_fuse_fits_logit_sum_weights_on_validation_and_applies_them_to_test(tmp_path, capsys):
    from two_stream_tf import cli
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=80)
    # rgb's logits point at a wrong class with margin 2; flow's at the truth with margin 1: logit summing
    # is right when w_flow > 2.
    wrong = (labels + rng.integers(1, 3, size=80)) % 3
    rgb_logits = 2.0 * np.eye(3)[wrong] + rng.normal(scale=0.01, size=(80, 3))
    flow_logits = 1.0 * np.eye(3)[labels] + rng.normal(scale=0.01, size=(80, 3))
    videos = [f"v_{i:02d}" for i in range(80)]
    files = {}
    for subset, rows in (("val", slice(0, 40)), ("test", slice(40, 80))):
        for name, logits in (("rgb", rgb_logits), ("flow", flow_logits)):
            files[subset, name] = _fuse_files(tmp_path, f"{name}_{subset}",
                                              _with_logits(logits[rows], labels[rows], videos[rows]))
    fitted = tmp_path / "fitted"
    assert cli.main(["fuse", f"--scores={files['test', 'rgb']},{files['test', 'flow']}", "--method=logit_sum",
                     f"--fit_weights_on={files['val', 'rgb']},{files['val', 'flow']}",
                     f"--output_dir={fitted}"]) == 0
    out = capsys.readouterr().out
    match = [line for line in out.splitlines() if "fitted on 40 validation videos" in line]
    assert match and "logit_sum fusion weights 1:2.1 " in match[0] and "applied to 40 videos" in match[0]
    # The test scores fused with the fitted weights, as NumPy computes them.
    fused = load_scores(fitted / "scores.npz")
    expected = rgb_logits[40:] + 2.1 * flow_logits[40:]
    np.testing.assert_allclose(fused.logits, expected, rtol=1e-5)
    assert (fused.predictions == labels[40:]).all()
    saved = json.loads((fitted / "metrics.json").read_text())["protocol"]
    assert saved["method"] == "logit_sum" and saved["weights"] == [1.0, 2.1]
    assert saved["fitted_on"] == [files["val", "rgb"], files["val", "flow"]]


@pytest.mark.parametrize("extra, message", [
    (["--fit_on={test_rgb},{test_flow}"], "--fit_on: 40 of the 40 videos of {test_rgb} are also in {test_rgb}"),
    (["--method=logit_sum"], "--scores: {test_nologits}: has no per-video logits, which fusion by logit_sum needs"),
    (["--method=average", "--weights=1,2"], "--method=average weighs the files equally; --weights=1,2 needs"),
    (["--results_table={folder}"], "--results_table: {folder} is a folder; give a markdown file"),
    (["--output_dir={test_rgb}"], "--output_dir: {test_rgb} is a file; give a folder"),
    (["--results_table={folder}/missing/results.md"], "--results_table: folder not found: {folder}/missing"),
])
def test_fuse_mistakes_are_one_line_errors(tmp_path, capsys, extra, message):
    from two_stream_tf import cli
    labels = np.arange(40) % 3
    logits = np.eye(3)[labels] + np.linspace(0, 1, 120).reshape(40, 3)
    paths = {"test_rgb": _fuse_files(tmp_path, "rgb", _with_logits(logits, labels)),
             "test_flow": _fuse_files(tmp_path, "flow", _with_logits(logits[:, ::-1], labels)),
             "test_nologits": _fuse_files(tmp_path, "plain", _scores(_softmax(logits), labels)),
             "folder": str(tmp_path)}
    scores = f"{paths['test_rgb']},{paths['test_nologits'] if 'logit_sum' in extra[0] else paths['test_flow']}"
    assert cli.main(["fuse", f"--scores={scores}", *[e.format(**paths) for e in extra]]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("two-stream fuse: error: ")
    assert message.format(**paths) in error


def test_fuse_refuses_an_all_nan_file(tmp_path, capsys):
    from two_stream_tf import cli
    good = _fuse_files(tmp_path, "good", _scores([[0.5, 0.3, 0.2]], [0]))
    nan = _fuse_files(tmp_path, "nan", _scores([[np.nan] * 3], [0]))
    assert cli.main(["fuse", f"--scores={good},{nan}"]) == 2
    assert capsys.readouterr().err == (f"two-stream fuse: error: --scores: {nan}: scores of 1 of 1 video(s) are "
                                       "not finite (NaN or infinite), e.g. v_00: the model diverged or the file is "
                                       "damaged\n")
