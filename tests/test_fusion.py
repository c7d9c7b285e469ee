"""Two-stream fusion: averaged / weighted softmax, summed logits, recurrent fusion over frozen streams."""
import keras
import numpy as np
import pytest

from two_stream_tf.errors import UserError
from two_stream_tf.models import load_model, save_model, spatial_model, temporal_model, two_stream_model

MOBILENET_FILE = "weights/mobilenet_2_5_224_tf_no_top.h5"
CLASSES = 6


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _distinct_classifier(model, seed):
    """Gives the classifier large random weights so the streams disagree clearly."""
    dense = model.get_layer("segment_logits" if "segment_logits" in [l.name for l in model.layers] else "logits")
    rng = np.random.default_rng(seed)
    dense.kernel.assign(rng.normal(0, 1, dense.kernel.shape).astype(np.float32))


@pytest.fixture(scope="module")
def streams(shared_data):
    """Single-frame MobileNet (alpha 0.25) streams with real ImageNet weights, 32×32 input, L = 2."""
    weights = shared_data / MOBILENET_FILE
    spatial = spatial_model(CLASSES, backbone="mobilenet", alpha=0.25, weights=weights, input_shape=(32, 32))
    temporal = temporal_model(CLASSES, backbone="mobilenet", alpha=0.25, weights=weights, input_shape=(32, 32),
                              stack_length=2)
    _distinct_classifier(spatial, 0)
    _distinct_classifier(temporal, 1)
    return spatial, temporal


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(5)
    return {"rgb": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
            "flow": rng.uniform(-1, 1, (4, 32, 32, 4)).astype(np.float32)}


def _input_shapes(model):
    return {tensor.name: tuple(tensor.shape) for tensor in model.inputs}


def _logits(stream, x):
    return np.asarray(keras.Model(stream.input, stream.get_layer("logits").output)(x), np.float64)


@pytest.mark.parametrize("fusion, weights, rgb_share", [
    ("average", None, 0.5), ("average", (1, 3), 0.25), ("weighted", None, 1 / 2.5), ("weighted", (2, 1), 2 / 3),
])
def test_score_fusion_is_a_weighted_mean_of_softmax_scores(streams, inputs, fusion, weights, rgb_share):
    spatial, temporal = streams
    model = two_stream_model(spatial, temporal, fusion=fusion, weights=weights)
    p_rgb, p_flow = np.asarray(spatial(inputs["rgb"])), np.asarray(temporal(inputs["flow"]))
    assert np.abs(p_rgb.argmax(1) - p_flow.argmax(1)).max() > 0 or np.abs(p_rgb - p_flow).max() > 0.05
    fused = np.asarray(model(inputs))
    np.testing.assert_allclose(fused, rgb_share * p_rgb + (1 - rgb_share) * p_flow, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fused.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("weights, w", [(None, (1, 1)), ((1, 1.5), (1, 1.5))])
def test_logit_fusion_is_the_softmax_of_summed_logits(streams, inputs, weights, w):
    spatial, temporal = streams
    model = two_stream_model(spatial, temporal, fusion="logits", weights=weights)
    expected = _softmax(w[0] * _logits(spatial, inputs["rgb"]) + w[1] * _logits(temporal, inputs["flow"]))
    np.testing.assert_allclose(np.asarray(model(inputs)), expected, rtol=1e-4, atol=1e-6)


def test_fusion_mistakes_raise_user_errors(streams):
    spatial, temporal = streams
    with pytest.raises(UserError, match=r"fusion='concat': expected one of average, weighted, logits, recurrent"):
        two_stream_model(spatial, temporal, fusion="concat")
    with pytest.raises(UserError, match=r"weights=\(1.0,\) must be two non-negative numbers"):
        two_stream_model(spatial, temporal, fusion="weighted", weights=(1.0,))
    other = spatial_model(CLASSES + 1, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32))
    with pytest.raises(UserError, match=r"spatial stream has 7 classes and the temporal stream 6"):
        two_stream_model(other, temporal)
    with pytest.raises(UserError, match=r"recurrent fusion needs one number of snippets per video"):
        two_stream_model(spatial, temporal, fusion="recurrent")


def test_recurrent_fusion_trains_only_its_head_over_frozen_streams(streams, tmp_path):
    spatial, temporal = streams
    model = two_stream_model(spatial, temporal, fusion="recurrent", num_segments=4, units=16, rnn="gru")
    assert _input_shapes(model) == {"rgb": (None, 4, 32, 32, 3), "flow": (None, 4, 32, 32, 4)}
    assert model.get_layer("snippet_features").output.shape == (None, 4, 2 * 256)
    assert sorted(w.path for w in model.trainable_weights) == sorted(
        ["gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel", "gru/gru_cell/bias", "logits/kernel", "logits/bias"])
    rng = np.random.default_rng(6)
    x = {"rgb": rng.uniform(-1, 1, (4, 4, 32, 32, 3)).astype(np.float32),
         "flow": rng.uniform(-1, 1, (4, 4, 32, 32, 4)).astype(np.float32)}
    streams_before = [w.copy() for w in spatial.get_weights() + temporal.get_weights()]
    head_before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(x, np.array([0, 1, 2, 3]), batch_size=4, epochs=1, verbose=0)
    for got, want in zip(spatial.get_weights() + temporal.get_weights(), streams_before, strict=True):
        np.testing.assert_array_equal(got, want)  # weights and BatchNormalization statistics
    assert all(not np.allclose(w.numpy(), b) for w, b in zip(model.trainable_weights, head_before))
    probabilities = np.asarray(model(x))
    assert probabilities.shape == (4, CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    restored = load_model(save_model(model, tmp_path / "recurrent.keras"))
    np.testing.assert_allclose(np.asarray(restored(x)), probabilities, rtol=1e-5, atol=1e-6)


def test_recurrent_fusion_of_tsn_segment_streams_reads_per_segment_features():
    spatial = spatial_model(CLASSES, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32),
                            num_segments=3)
    temporal = temporal_model(CLASSES, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32),
                              stack_length=2, num_segments=3)
    model = two_stream_model(spatial, temporal, fusion="recurrent", units=8)
    assert _input_shapes(model) == {"rgb": (None, 3, 32, 32, 3), "flow": (None, 3, 32, 32, 4)}
    features = keras.Model(model.inputs, model.get_layer("snippet_features").output)
    rng = np.random.default_rng(7)
    x = {"rgb": rng.uniform(-1, 1, (2, 3, 32, 32, 3)).astype(np.float32),
         "flow": rng.uniform(-1, 1, (2, 3, 32, 32, 4)).astype(np.float32)}
    sequence = np.asarray(features(x))
    # Snippet s of video b holds the backbone features of exactly that frame, RGB then flow.
    rgb_backbone = spatial.get_layer("backbone")
    np.testing.assert_allclose(sequence[1, 2, :256], np.asarray(rgb_backbone(x["rgb"][1:2, 2]))[0], rtol=1e-4,
                               atol=1e-6)
    flow_backbone = temporal.get_layer("backbone")
    np.testing.assert_allclose(sequence[0, 1, 256:], np.asarray(flow_backbone(x["flow"][0:1, 1]))[0], rtol=1e-4,
                               atol=1e-6)
    assert np.asarray(model(x)).shape == (2, CLASSES)
