"""Stream models: ImageNet weights from files, cross-modality init and its scale, partial BN, TSN
consensus, mixed precision, argument errors, and `.keras` / SavedModel round trips."""
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.errors import UserError
from two_stream_tf.models import (SegmentConsensus, export_saved_model, frame_model, get_backbone, load_model,
                                  save_model, spatial_model, temporal_model, two_stream_model)
from two_stream_tf.models.cross_modality import RGB_PREPROCESSING_LAYERS

MOBILENET_FILE = "weights/mobilenet_2_5_224_tf_no_top.h5"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.set_random_seed(1)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def mobilenet_file(shared_data):
    return shared_data / MOBILENET_FILE


def _file_weights(path):
    """{layer name: [arrays in the file's weight order]} of a Keras `.h5` weights file."""
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        return {name: [f[name][w][()] for w in f[name].attrs["weight_names"]]
                for name in names if len(f[name].attrs["weight_names"])}


def test_temporal_mobilenet_from_real_imagenet_file_gets_cross_modality_init(mobilenet_file):
    stored = _file_weights(mobilenet_file)
    model = temporal_model(10, backbone="mobilenet", alpha=0.25, weights=mobilenet_file, stack_length=10,
                           input_shape=(64, 64))
    backbone = model.get_layer("backbone")
    assert model.input_shape == (None, 64, 64, 20)
    assert len(stored) == 54  # conv1 + its BN + 13 × (depthwise, BN, pointwise, BN)
    kernel = backbone.get_layer("conv1").get_weights()[0]
    assert kernel.shape == (3, 3, 20, 8)
    # A "tf" backbone ([-1, 1] over 255 levels) against flow (q - 128) / 128: s = 2 / (255 / 128) = 256 / 255.
    expected = np.repeat(256 / 255 * stored["conv1"][0].astype(np.float64).mean(axis=2, keepdims=True), 20, axis=2)
    np.testing.assert_allclose(kernel, expected, rtol=1e-6, atol=0)
    assert np.abs(kernel).max() > 0.1  # real kernels, not zeros
    for name, arrays in stored.items():
        if name == "conv1":
            continue
        for got, want in zip(backbone.get_layer(name).get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_spatial_mobilenet_loads_every_weight_of_the_real_file(mobilenet_file):
    stored = _file_weights(mobilenet_file)
    model = spatial_model(10, backbone="mobilenet", alpha=0.25, weights=mobilenet_file, input_shape=(64, 64))
    backbone = model.get_layer("backbone")
    compared = 0
    for name, arrays in stored.items():
        for got, want in zip(backbone.get_layer(name).get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)
            compared += 1
    assert compared == len(backbone.weights) == 27 + 27 * 4  # 27 kernels, 27 BN × (gamma, beta, mean, var)


def _first_conv_response(backbone, spec, images):
    """The first convolution's output before its activation (VGG has ReLU inside) at the centre pixel."""
    first = spec.first_conv(backbone)
    out = first.convolution_op(keras.Model(backbone.input, first.input)(images), first.kernel)
    if first.use_bias:
        out = out + first.bias
    out = np.asarray(out, np.float64)
    return out[:, out.shape[1] // 2, out.shape[2] // 2, :]


def _assert_flow_drives_kernel_like_grey_rgb(rgb_backbone, flow_backbone, spec):
    """Flow x on all 2L channels acts like the grey level 128·(x + 1) on RGB, summed over 2L/3 copies.

    The cross-modality kernel is the scaled RGB kernel averaged over 3 channels, tiled 2L times, so
    relative to zero motion / mid-grey: response_flow(x) = 2L/3 · response_rgb(128·(x + 1)). The RGB
    side goes through Keras' own preprocess_input and the backbone's own normalisation layers.
    """
    size, channels = rgb_backbone.input_shape[1], flow_backbone.input_shape[-1]
    xs = np.array([-1.0, -0.5, 0.0, 0.6, 1.0])
    greys = np.broadcast_to((128 * (xs + 1))[:, None, None, None], (len(xs), size, size, 3))
    rgb = spec.preprocess_input(np.array(greys, np.float32))
    flow = np.broadcast_to(xs[:, None, None, None], (len(xs), size, size, channels)).astype(np.float32)
    rgb_response = _first_conv_response(rgb_backbone, spec, rgb)
    flow_response = _first_conv_response(flow_backbone, spec, flow)
    mid = list(xs).index(0.0)
    np.testing.assert_allclose(flow_response - flow_response[mid],
                               channels / 3 * (rgb_response - rgb_response[mid]),
                               rtol=2e-3, atol=2e-3 * np.abs(rgb_response).max())
    assert np.abs(rgb_response - rgb_response[mid]).max() > 0.5


def test_weights_file_of_a_caffe_backbone_and_its_flow_scale(tmp_path):
    """VGG16 takes BGR minus mean on the 0..255 scale: its averaged kernel is scaled by 128, TSN's scale (flow
    q - 128 against pixel - mean) for flow normalised (q - 128) / 128."""
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_random.weights.h5"
    source.save_weights(path)
    spec = get_backbone("vgg16")
    spatial = spatial_model(5, backbone="vgg16", weights=path, input_shape=(32, 32))
    temporal = temporal_model(5, backbone="VGG16", weights=str(path), input_shape=(32, 32), stack_length=2)
    flow_backbone = temporal.get_layer("backbone")
    rgb_conv, flow_conv = source.get_layer("block1_conv1"), flow_backbone.get_layer("block1_conv1")
    np.testing.assert_allclose(flow_conv.kernel.numpy(),
                               np.repeat(128 * rgb_conv.kernel.numpy().mean(axis=2, keepdims=True), 4, axis=2),
                               rtol=1e-5)
    np.testing.assert_array_equal(flow_conv.bias.numpy(), rgb_conv.bias.numpy())
    copied = 0
    for layer in source.layers:
        if layer.weights and layer is not rgb_conv:
            for got, want in zip(flow_backbone.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
                np.testing.assert_array_equal(got, want, err_msg=layer.name)
                copied += 1
    assert copied == 2 * 12  # kernel and bias of the 12 other convolutions
    for got, want in zip(spatial.get_layer("backbone").get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    _assert_flow_drives_kernel_like_grey_rgb(source, flow_backbone, spec)


def test_efficientnet_builtin_normalization_is_bypassed_and_folded_into_the_kernel(tmp_path):
    """EfficientNet normalises RGB inside the model; flow must skip that and the kernel absorb its scale."""
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3))
    normalization = next(layer for layer in source.layers if isinstance(layer, keras.layers.Normalization))
    normalization.set_weights([np.array(IMAGENET_MEAN), IMAGENET_STD ** 2, np.array(0)][:len(normalization.weights)])
    normalization.finalize_state()  # Normalization reads its mean/variance variables only then
    path = tmp_path / "efficientnetb0_random.weights.h5"
    source.save_weights(path)
    spec = get_backbone("efficientnet_b0")
    temporal = temporal_model(5, backbone="efficientnet_b0", weights=path, input_shape=(32, 32), stack_length=3)
    flow_backbone = temporal.get_layer("backbone")
    layers = list(flow_backbone.layers)
    stem = layers[:layers.index(flow_backbone.get_layer("stem_conv"))]
    assert not any(isinstance(layer, RGB_PREPROCESSING_LAYERS) for layer in stem)
    rgb_kernel = source.get_layer("stem_conv").kernel.numpy()
    scale = (128 / 255 / IMAGENET_STD).reshape(1, 1, 3, 1)  # RGB spans 1/std per channel, flow spans 255/128
    np.testing.assert_allclose(flow_backbone.get_layer("stem_conv").kernel.numpy(),
                               np.repeat((rgb_kernel * scale).mean(axis=2, keepdims=True), 6, axis=2), rtol=1e-5)
    np.testing.assert_array_equal(flow_backbone.get_layer("top_conv").kernel.numpy(),
                                  source.get_layer("top_conv").kernel.numpy())
    _assert_flow_drives_kernel_like_grey_rgb(source, flow_backbone, spec)


def test_weights_file_errors_name_the_file(mobilenet_file, tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(UserError, match="weights file not found: .*nowhere.h5"):
        spatial_model(3, backbone="mobilenet", weights=missing, input_shape=(32, 32))
    with pytest.raises(UserError,
                       match=r"mobilenet_2_5_224_tf_no_top.h5 does not fit backbone mobilenet \(alpha=1.0\)"):
        temporal_model(3, backbone="mobilenet", weights=mobilenet_file, input_shape=(32, 32), alpha=1.0)


@pytest.mark.parametrize("call, message", [
    (lambda: spatial_model(3, backbone="mobilenet", weights=None, input_shape=(16, 16)),
     r"input_shape=\(16, 16, 3\) is smaller than mobilenet's minimum 32x32"),
    (lambda: temporal_model(3, backbone="mobilenet", weights=None, input_shape=(32, 32, 3), stack_length=5),
     r"has 3 channels, but flow stacks of 5 pairs have 10"),
    (lambda: spatial_model(3, backbone="mobilenet", weights=None, input_shape=(32, 32), include_top=True),
     r"include_top are set by the model builder"),
    (lambda: spatial_model(3, backbone="mobilenet", weights="imagenet21k", input_shape=(32, 32)),
     r"weights file not found: imagenet21k"),
    (lambda: spatial_model(3, backbone="mobilenet", weights=None, input_shape=(32, 32), num_segments=3,
                           consensus="median"), r"consensus='median'"),
    (lambda: spatial_model(3, backbone="alexnet"), r"unknown backbone 'alexnet'"),
    (lambda: spatial_model(3, backbone="resnet50", weights=None, input_shape=(32, 32), alpha=0.5),
     r"backbone resnet50 takes no argument 'alpha' \(it takes none\)"),
    (lambda: spatial_model(3, backbone="mobilenet", weights=None, input_shape=(32, 32), alpha="abc"),
     r"backbone mobilenet: alpha='abc' is not a number \(default 1.0\)"),
])
def test_argument_mistakes_raise_user_errors(call, message):
    with pytest.raises(UserError, match=message):
        call()


def _batch_norms(model):
    return [layer for layer in model.get_layer("backbone").layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_partial_bn_trains_only_the_first_batch_normalization(mobilenet_file):
    # ImageNet weights: at random init the frozen layers' unit statistics saturate ReLU6 and no
    # gradient reaches the first layers.
    model = spatial_model(3, backbone="mobilenet", alpha=0.25, weights=mobilenet_file, input_shape=(32, 32),
                          partial_bn=True)
    batch_norms = _batch_norms(model)
    assert len(batch_norms) == 27
    assert [layer.trainable for layer in batch_norms] == [True] + [False] * 26
    before = [[w.copy() for w in layer.get_weights()] for layer in batch_norms[:2]]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32), np.arange(8) % 3, batch_size=8,
              epochs=1, verbose=0)
    first_after, second_after = (layer.get_weights() for layer in batch_norms[:2])
    assert not np.allclose(first_after[2], before[0][2])  # moving mean of the first BN moved
    assert not np.allclose(first_after[0], before[0][0])  # and its gamma trained
    for got, want in zip(second_after, before[1]):         # the second BN is frozen entirely
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode, pool", [("average", np.mean), ("max", np.max)])
def test_segment_consensus_pools_shared_backbone_logits_then_softmax(mode, pool, mobilenet_file):
    model = spatial_model(4, backbone="mobilenet", alpha=0.25, weights=mobilenet_file, input_shape=(32, 32),
                          num_segments=3, consensus=mode)
    assert model.input_shape == (None, 3, 32, 32, 3)
    assert isinstance(model.get_layer("logits"), SegmentConsensus)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 3, 32, 32, 3)).astype(np.float32)
    segment_logits = np.asarray(keras.Model(model.input, model.get_layer("segment_logits").output)(x))
    single = frame_model(model)
    assert single.input_shape == (None, 32, 32, 3)
    per_frame = np.stack([np.asarray(single(x[:, s])) for s in range(3)], axis=1)
    logits = segment_logits.reshape(2, 3, 4)
    # The same backbone and classifier score every segment.
    np.testing.assert_allclose(per_frame, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), rtol=1e-4)
    pooled = pool(logits, axis=1)
    expected = np.exp(pooled) / np.exp(pooled).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-4)
    assert np.abs(logits[:, 0] - logits[:, 1]).max() > 1e-3  # segments really differ


def test_mixed_precision_keeps_probabilities_float32(mobilenet_file):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        spatial = spatial_model(4, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32))
        temporal = temporal_model(4, backbone="mobilenet", alpha=0.25, weights=mobilenet_file, input_shape=(32, 32),
                                  stack_length=2, num_segments=2)
        assert spatial.get_layer("logits").compute_dtype == "float16"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"  # restored after the twin
        kernel = temporal.get_layer("backbone").get_layer("conv1").kernel
        assert kernel.dtype == "float32"
        stored = _file_weights(mobilenet_file)["conv1"][0]
        expected = 256 / 255 * stored.astype(np.float64).mean(axis=2, keepdims=True)  # "tf" backbone scale
        np.testing.assert_allclose(kernel.numpy(), np.repeat(expected, 4, axis=2), rtol=1e-6)
        rgb = np.zeros((2, 32, 32, 3), np.float32)
        flow = np.zeros((2, 2, 32, 32, 4), np.float32)
        for model, x in ((spatial, rgb), (temporal, flow)):
            out = model(x)
            assert out.dtype == "float32"
            np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-3)
        spatial_seg = spatial_model(4, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32),
                                    num_segments=2)
        for fusion in ("average", "logits"):
            fused = two_stream_model(spatial_seg, temporal, fusion=fusion)
            assert fused({"rgb": np.zeros((2, 2, 32, 32, 3), np.float32), "flow": flow}).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _tiny_model(kind):
    rng = np.random.default_rng(3)
    rgb = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    flow = rng.uniform(-1, 1, (2, 3, 32, 32, 4)).astype(np.float32)
    if kind == "stream":
        return spatial_model(5, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32)), rgb
    if kind == "segments":  # MobileNetV3: its hard-swish is made of keras.ops calls, which must serialise too
        return temporal_model(5, backbone="mobilenet_v3_small", weights=None, input_shape=(32, 32),
                              stack_length=2, num_segments=3, minimalistic=True), flow
    rgb_segments = spatial_model(5, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32),
                                 num_segments=3)
    flow_segments = temporal_model(5, backbone="mobilenet", alpha=0.25, weights=None, input_shape=(32, 32),
                                   stack_length=2, num_segments=3)
    rgb3 = rng.uniform(-1, 1, (2, 3, 32, 32, 3)).astype(np.float32)
    return two_stream_model(rgb_segments, flow_segments, fusion="weighted"), {"rgb": rgb3, "flow": flow}


def _perturb(model, rng):
    """Moves every weight (BatchNormalization statistics too) away from what a fresh build has."""
    model.set_weights([w + np.abs(rng.normal(0, 0.1, w.shape)).astype(w.dtype) if w.dtype.kind == "f" else w
                       for w in model.get_weights()])


@pytest.mark.parametrize("kind", ["stream", "segments", "fused"])
def test_keras_file_and_saved_model_reproduce_outputs(kind, tmp_path):
    model, x = _tiny_model(kind)
    _perturb(model, np.random.default_rng(4))
    expected = np.asarray(model(x, training=False))
    assert np.all(np.isfinite(expected)) and expected.std() > 1e-3
    restored = load_model(save_model(model, tmp_path / f"{kind}.keras"))
    assert restored.name == model.name
    np.testing.assert_allclose(np.asarray(restored(x, training=False)), expected, rtol=1e-5, atol=1e-6)
    served = tf.saved_model.load(export_saved_model(model, tmp_path / f"{kind}_savedmodel"))
    signature = served.signatures["serving_default"]
    inputs = x if isinstance(x, dict) else {model.inputs[0].name: x}
    outputs = signature(**{key: tf.constant(value) for key, value in inputs.items()})
    (probabilities,) = outputs.values()
    np.testing.assert_allclose(probabilities.numpy(), expected, rtol=1e-5, atol=1e-6)
