"""Backbone registry: names, metadata, and both streams built on every registered backbone."""
import keras
import numpy as np
import pytest

from two_stream_tf.errors import UserError
from two_stream_tf.models import get_backbone, list_backbones, spatial_model, temporal_model
from two_stream_tf.models.cross_modality import RGB_PREPROCESSING_LAYERS

REQUIRED = [
    "inception_v3", "xception", "resnet50", "resnet101", "resnet152", "resnet50_v2", "resnet101_v2",
    "resnet152_v2", "vgg16", "vgg19", "mobilenet", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "densenet121", "inception_resnet_v2",
]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


def test_registry_holds_the_required_backbones():
    assert set(REQUIRED) <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


@pytest.mark.parametrize("alias, name", [
    ("MobileNetV3Small", "mobilenet_v3_small"), ("mobilenetv3small", "mobilenet_v3_small"),
    ("ResNet50V2", "resnet50_v2"), ("RESNET50_V2", "resnet50_v2"), ("resnet50", "resnet50"),
    ("EfficientNetB2", "efficientnet_b2"), ("InceptionV3", "inception_v3"),
    ("inceptionresnetv2", "inception_resnet_v2"), ("DenseNet121", "densenet121"), ("VGG19", "vgg19"),
])
def test_keras_class_names_resolve_case_insensitively(alias, name):
    assert get_backbone(alias).name == name


def test_unknown_backbone_names_the_choices():
    with pytest.raises(UserError, match=r"unknown backbone 'resnet18'.*mobilenet_v3_small"):
        get_backbone("resnet18")


@pytest.mark.parametrize("name", REQUIRED)
def test_rgb_normalization_name_agrees_with_keras_preprocess_input(name):
    """The pipeline's normalisation name must do what the backbone's own preprocess_input does."""
    spec = get_backbone(name)
    rgb = np.array([[[[0.0, 0.0, 0.0], [255.0, 255.0, 255.0], [255.0, 0.0, 0.0]]]], np.float32)
    out = np.asarray(spec.preprocess_input(rgb.copy()), np.float64)[0, 0]
    if spec.rgb_normalization == "tf":
        expected = rgb[0, 0] / 127.5 - 1
    elif spec.rgb_normalization == "torch":
        expected = (rgb[0, 0] / 255 - IMAGENET_MEAN) / IMAGENET_STD
    elif spec.rgb_normalization == "caffe":
        expected = rgb[0, 0][:, ::-1] - CAFFE_MEAN_BGR
    else:
        expected = rgb[0, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_metadata_of_known_backbones():
    assert get_backbone("xception").default_input_size == 299
    assert get_backbone("xception").min_input_size == 71
    assert get_backbone("inception_v3").min_input_size == 75
    assert get_backbone("efficientnet_b3").default_input_size == 300
    assert get_backbone("resnet50").rgb_normalization == "caffe"
    assert get_backbone("resnet50_v2").rgb_normalization == "tf"
    assert get_backbone("densenet121").rgb_normalization == "torch"
    assert get_backbone("mobilenet_v3_small").rgb_normalization == "none"


def _first_conv_input_channels(stream):
    backbone = stream.get_layer("backbone")
    first = get_backbone(stream.name.split("_", 1)[1]).first_conv(backbone)
    layers = list(backbone.layers)
    before = layers[:layers.index(first)]
    return first.kernel.shape[2], before


@pytest.mark.slow
@pytest.mark.parametrize("name", REQUIRED)
def test_both_streams_build_and_run_on_every_backbone(name):
    spec = get_backbone(name)
    size = spec.min_input_size
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    try:
        spatial = spatial_model(7, backbone=name, weights=None, input_shape=(size, size))
        temporal = temporal_model(7, backbone=name, weights=None, input_shape=(size, size), stack_length=2)
        rgb = spec.preprocess_input(rng.uniform(0, 255, (2, size, size, 3)).astype(np.float32))
        flow = rng.uniform(-1, 1, (2, size, size, 4)).astype(np.float32)
        for model, x, channels in ((spatial, rgb, 3), (temporal, flow, 4)):
            probabilities = np.asarray(model(x, training=False))
            assert probabilities.shape == (2, 7)
            assert np.all(np.isfinite(probabilities))
            np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
            first_channels, before_first_conv = _first_conv_input_channels(model)
            assert first_channels == channels
        # Flow reaches the first convolution without RGB rescaling/normalisation layers.
        assert not any(isinstance(layer, RGB_PREPROCESSING_LAYERS) for layer in before_first_conv)
    finally:
        keras.backend.clear_session()
