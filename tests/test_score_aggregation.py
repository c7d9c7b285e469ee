"""View aggregation: TSN's logit mean (softmax of the averaged logits) and the softmax mean, with the
per-video mean logits and view votes written to the score file."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.data.index import VideoEntry
from two_stream_tf.evaluation import protocol
from two_stream_tf.evaluation.scores import VideoScores, load_scores, save_scores


def tiny_stream(num_classes=3, seed=0):
    """Flatten -> Dense "logits" -> softmax "predictions", the head of the stream models."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((2, 2, 2), name="flow")
    logits = keras.layers.Dense(num_classes, name="logits")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Activation("softmax", dtype="float32", name="predictions")(logits))


def numpy_logits(model, views):
    kernel, bias = model.get_layer("logits").get_weights()
    return views.reshape(*views.shape[:2], -1).astype(np.float64) @ kernel + bias


def numpy_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def views_dataset(num_videos=5, num_views=6, seed=1):
    rng = np.random.default_rng(seed)
    views = rng.normal(scale=3.0, size=(num_videos, num_views, 2, 2, 2)).astype(np.float32)
    labels = rng.integers(0, 3, num_videos).astype(np.int32)
    entries = [VideoEntry(f"C/v_{i}", int(label), 10, 9) for i, label in enumerate(labels)]
    return views, labels, entries, tf.data.Dataset.from_tensor_slices((views, labels)).batch(2)


@pytest.mark.parametrize("aggregation", protocol.AGGREGATIONS)
def test_aggregations_match_numpy_on_a_tiny_model(aggregation):
    model = tiny_stream()
    views, labels, entries, dataset = views_dataset()
    result = protocol.score_videos(model, dataset, entries, ("a", "b", "c"), crops=1, views_per_step=4,
                                   progress=False, aggregation=aggregation)
    logits = numpy_logits(model, views)  # (videos, views, classes)
    if aggregation == "logit_mean":  # TSN's eval_net: softmax of the raw scores averaged over the views
        expected = numpy_softmax(logits.mean(axis=1))
    else:
        expected = numpy_softmax(logits).mean(axis=1)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.logits, logits.mean(axis=1), rtol=1e-5, atol=1e-5)
    assert result.logits.dtype == np.float32 and result.votes.dtype == np.int32
    expected_votes = np.stack([np.bincount(row, minlength=3) for row in logits.argmax(-1)])
    np.testing.assert_array_equal(result.votes, expected_votes)
    assert result.votes.sum(axis=1).tolist() == [6] * 5


def test_the_two_aggregations_rank_differently_when_a_view_is_confident():
    # One view very sure of class 0, three mildly for class 1: the logit mean follows the confident view's
    # size, the softmax mean caps its weight at 1 per view.
    logits = np.array([[[12.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    logit_mean, _, votes = protocol.aggregate_views(logits, "logit_mean")
    softmax_mean, mean_logits, _ = protocol.aggregate_views(logits, "softmax_mean")
    assert logit_mean.argmax() == 0 and softmax_mean.argmax() == 1
    np.testing.assert_allclose(mean_logits, [[3.0, 0.75, 0.0]])
    assert votes.tolist() == [[1, 3, 0]]
    with pytest.raises(ValueError, match="aggregation must be one of"):
        protocol.aggregate_views(logits, "max")


def test_logits_are_read_before_the_final_softmax():
    model = tiny_stream()
    logits_model = protocol.logits_model(model)
    x = np.random.default_rng(2).normal(size=(4, 2, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(logits_model(x).numpy(), numpy_logits(model, x[None])[0], rtol=1e-5, atol=1e-6)
    plain = keras.Model(model.input, model.get_layer("logits").output)  # ends without a softmax
    with pytest.raises(ValueError, match="does not end in a softmax"):
        protocol.logits_model(plain)
    views, labels, entries, dataset = views_dataset()
    with pytest.raises(ValueError, match="does not end in a softmax"):
        protocol.score_videos(plain, dataset, entries, ("a", "b", "c"), crops=1, progress=False,
                              aggregation="logit_mean")


def test_score_file_keeps_logits_and_votes(tmp_path):
    scores = VideoScores(["v_0", "v_1"], [0, 1], [[0.7, 0.3], [0.2, 0.8]], ["a", "b"],
                         logits=[[1.0, 0.2], [-0.5, 0.9]], votes=[[7, 3], [1, 9]])
    path = tmp_path / "scores.npz"
    save_scores(path, scores)
    with np.load(path, allow_pickle=False) as data:
        assert data["logits"].dtype == np.float32 and data["votes"].dtype == np.int32
        assert sorted(data.files) == ["classes", "labels", "logits", "scores", "videos", "votes"]
    loaded = load_scores(path)
    np.testing.assert_array_equal(loaded.logits, np.float32([[1.0, 0.2], [-0.5, 0.9]]))
    np.testing.assert_array_equal(loaded.reordered(["v_1", "v_0"]).votes, [[1, 9], [7, 3]])
    with pytest.raises(ValueError, match="votes must have the shape of scores"):
        VideoScores(["v_0"], [0], [[0.5, 0.5]], ["a", "b"], votes=[[1, 2, 3]])


def test_evaluate_command_with_tsn_protocol_writes_logits_and_votes(synthetic_dataset, tmp_path, capsys):
    """`two-stream evaluate --test_sampling=tsn --score_aggregation=logit_mean --test_frame_size=...` on a real
    (untrained) temporal stream: scores are the softmax of the mean logits, votes count the views."""
    import json

    from two_stream_tf import cli
    from two_stream_tf.models import save_model, temporal_model

    model = temporal_model(len(synthetic_dataset.classes), backbone="mobilenet", weights=None, input_shape=(32, 32),
                           stack_length=2, alpha=0.25)
    save_model(model, str(tmp_path / "temporal.keras"))
    output = tmp_path / "evaluation"
    flags = [f"--checkpoint={tmp_path / 'temporal.keras'}", "--stream=temporal",
             f"--frames_root={synthetic_dataset.frames_dir}", f"--split_dir={synthetic_dataset.split_dir}",
             "--stack_length=2", "--image_size=32", "--backbone=mobilenet", "--max_videos=2", "--test_snippets=3",
             "--test_crops=10", f"--output_dir={output}"]
    assert cli.main(["evaluate", *flags, "--test_frame_size=170"]) == 2
    assert "--test_frame_size: expected WIDTHxHEIGHT such as 340x256, got '170'" in capsys.readouterr().err
    assert cli.main(["evaluate", *flags, "--test_sampling=tsn", "--score_aggregation=logit_mean",
                     "--test_frame_size=170x130"]) == 0
    with np.load(output / "scores.npz", allow_pickle=False) as data:
        logits, votes, scores = data["logits"], data["votes"], data["scores"]
    assert logits.shape == votes.shape == scores.shape == (2, len(synthetic_dataset.classes))
    assert votes.dtype == np.int32 and votes.sum(axis=1).tolist() == [30, 30]  # 3 snippets x 10 crops
    np.testing.assert_allclose(scores, numpy_softmax(logits.astype(np.float64)), rtol=1e-5, atol=1e-7)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["protocol"]["test_sampling"] == "tsn"
    assert metrics["protocol"]["score_aggregation"] == "logit_mean"
    assert metrics["protocol"]["frame_size"] == [130, 170]
