"""Stream and two-stream models trained with `model.fit` on the synthetic dataset's tf.data pipelines.

The synthetic classes are looks (colours, texture, scene) doing motions: a single frame tells the look but
not the motion and the flow the motion but not the look, so each stream's ceiling is about 50 % and only
their fusion can separate all 8 classes. Both streams are MobileNet (alpha 0.25) with the real ImageNet weights; the temporal one gets
them by cross-modality init. As in Keras' transfer-learning recipe the backbones stay frozen and the
classifiers train, so a few epochs on 64 training videos suffice (chance is 1/8).
"""
import keras
import pytest

from two_stream_tf.data import pipelines
from two_stream_tf.data.index import open_split_index
from two_stream_tf.evaluation.metrics import top_k_accuracy
from two_stream_tf.evaluation.protocol import evaluate
from two_stream_tf.models import get_backbone, spatial_model, temporal_model, two_stream_model

MOBILENET_FILE = "weights/mobilenet_2_5_224_tf_no_top.h5"
IMAGE_SIZE = 96
STACK_LENGTH = 5
BATCH_SIZE = 16
EPOCHS = 8
SAMPLES_PER_VIDEO = 4  # per epoch, each a new random snippet
TEST_SNIPPETS = 5


def _train(model, dataset, num_videos):
    model.get_layer("backbone").trainable = False
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(dataset, epochs=EPOCHS, steps_per_epoch=num_videos * SAMPLES_PER_VIDEO // BATCH_SIZE,
                        verbose=0)
    return history.history["accuracy"][-1]


def _test_accuracy(model, index, stream):
    scores = evaluate(model, index, stream, image_size=IMAGE_SIZE, num_snippets=TEST_SNIPPETS, crops=1,
                      batch_size=4, stack_length=STACK_LENGTH,
                      rgb_normalization=get_backbone("mobilenet").rgb_normalization, progress=False)
    return top_k_accuracy(scores.scores, scores.labels)


@pytest.mark.slow
def test_streams_and_fusion_learn_the_synthetic_actions(synthetic_dataset, shared_data, tmp_path):
    keras.utils.set_random_seed(0)
    weights = shared_data / MOBILENET_FILE
    train = open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset="train",
                             cache=tmp_path)
    test = open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset="test",
                            cache=tmp_path)
    num_classes = len(train.classes)
    assert (num_classes, len(train), len(test)) == (8, 64, 32)
    common = dict(training=True, batch_size=BATCH_SIZE, image_size=IMAGE_SIZE, seed=0, deterministic=True,
                  repeat=True)

    spatial = spatial_model(num_classes, backbone="mobilenet", alpha=0.25, weights=weights,
                            input_shape=(IMAGE_SIZE, IMAGE_SIZE), dropout=0.2, partial_bn=True)
    spatial_train = _train(spatial, pipelines.spatial_dataset(
        train, rgb_normalization=get_backbone("mobilenet").rgb_normalization, **common), len(train))
    temporal = temporal_model(num_classes, backbone="mobilenet", alpha=0.25, weights=weights,
                              input_shape=(IMAGE_SIZE, IMAGE_SIZE), stack_length=STACK_LENGTH, dropout=0.2,
                              partial_bn=True)
    temporal_train = _train(temporal, pipelines.temporal_dataset(train, stack_length=STACK_LENGTH, **common),
                            len(train))

    accuracy = {
        "spatial": _test_accuracy(spatial, test, "spatial"),
        "temporal": _test_accuracy(temporal, test, "temporal"),
        "fused (average)": _test_accuracy(two_stream_model(spatial, temporal), test, "fusion"),
    }
    print(f"\ntraining accuracy (last epoch): spatial {spatial_train:.3f}, temporal {temporal_train:.3f}")
    print(f"test top-1 over {len(test)} videos ({TEST_SNIPPETS} snippets each), chance {1 / num_classes:.3f}: "
          + ", ".join(f"{name} {value:.3f}" for name, value in accuracy.items()))
    for name, value in accuracy.items():
        assert value >= 2 / num_classes, f"{name} stream at {value:.3f} is not clearly above chance"
