"""Training watches its own health: the checks, the warning on a collapsing run, --stop_on_collapse, and
silence on a healthy run; and the learning rate that scales with the batch.

The runs train MobileNet α 0.25 from the real ImageNet file in ../shared/data on the synthetic dataset.
"""
import csv
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from two_stream_tf.training import health, schedules

MOBILENET = "weights/mobilenet_2_5_224_tf_no_top.h5"


# --- the checks ------------------------------------------------------------------------------------------

def test_constant_predictions_tell_dead_features_from_a_young_healthy_classifier():
    bias = np.array([0.3, -0.1, 0.05])
    assert health.constant_predictions(np.tile(bias, (8, 1)))
    assert health.constant_predictions(np.tile(bias, (8, 1)) + 1e-7)
    # TSN's N(0, 0.001) classifier on healthy features: tiny scores, but each input has its own.
    rng = np.random.default_rng(0)
    young = rng.normal(0, 0.001, (256, 3)).T @ rng.uniform(0, 6, (256, 8))
    assert not health.constant_predictions(young.T)
    assert not health.constant_predictions(rng.normal(size=(8, 5)))
    assert not health.constant_predictions(np.ones((1, 5)))  # one input: nothing to compare


def test_dead_share_and_the_last_activation_of_real_backbones():
    assert health.dead_share(np.array([0.0, 0.0, 2.0, -1.0])) == 0.75
    from two_stream_tf.models import get_backbone
    mobilenet = get_backbone("mobilenet").build((64, 64, 3), weights=None, alpha=0.25)
    assert health.last_activation_layer(mobilenet).name == "conv_pw_13_relu"
    resnet = get_backbone("resnet50").build((64, 64, 3), weights=None)
    assert health.last_activation_layer(resnet).name == "conv5_block3_out"
    assert health.last_activation_layer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])) is None


def test_learning_rate_scales_linearly_with_the_global_batch():
    # TSN: 0.001 (RGB) for 4 GPUs x 32; a batch of 8 gets 1/16 of it, 256 twice it; 0 keeps the rate as given.
    assert schedules.scaled_learning_rate(0.001, 8, 128) == pytest.approx(6.25e-5)
    assert schedules.scaled_learning_rate(0.005, 256, 128) == pytest.approx(0.01)
    assert schedules.scaled_learning_rate(0.001, 8, 0) == 0.001
    from two_stream_tf.training import fit
    config = fit.TrainConfig(stream="spatial", frames_root="", split_dir="", model_dir="", learning_rate=0.001,
                             batch_size=32, reference_batch_size=128, lr_schedule="step", lr_boundaries=(10,))
    optimizer = fit.build_optimizer(config, total_steps=20)
    schedule = keras.saving.deserialize_keras_object(optimizer.get_config()["learning_rate"])
    np.testing.assert_allclose([float(schedule(0)), float(schedule(10))], [2.5e-4, 2.5e-5], rtol=1e-6)


def _tiny_stream(num_classes=4):
    inputs = keras.Input((5,))
    features = keras.layers.Dense(6, activation="relu", name="features")(inputs)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="predictions")(logits))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    return model


def test_non_finite_weights_and_validation_at_chance_are_reported(tmp_path, capsys):
    model = _tiny_stream()
    probe = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    watcher = health.TrainingHealth(probe, num_classes=4, chance_after=3, learning_rate=0.01, batch_size=8,
                                    log_path=str(tmp_path / "health.log"))
    watcher.set_model(model)
    assert watcher.check(step=10, loss=1.2) == []
    # Validation top-1 at chance (25 % for 4 classes) only counts from the third validation on.
    for epoch, top1 in enumerate([0.25, 0.24, 0.26]):
        watcher.on_epoch_end(epoch, {"loss": 1.3, "val_top1": top1})
    assert [f.kind for f in watcher.findings] == [health.CHANCE]
    assert "validation top-1 is 26.0 % after 3 validations, chance is 25.0 %" in watcher.findings[0].message
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.where(np.arange(24).reshape(6, 4) == 5, np.nan, kernel.numpy()))
    found = watcher.check(step=20, loss=float("nan"))
    assert [f.kind for f in found] == [health.NON_FINITE, health.NON_FINITE]
    assert "the training loss is nan" in found[0].message and "logits/kernel" in found[1].message
    log = (tmp_path / "health.log").read_text()
    assert "validation at chance at step" in log and "non-finite at step 20" in log
    assert "no gradient clipping (--clip_norm)" in log
    assert "WARNING: TRAINING HEALTH: non-finite at step 20" in capsys.readouterr().err
    assert watcher.stopped is None and not model.stop_training


# --- real runs -------------------------------------------------------------------------------------------

def _config(synthetic_dataset, weights, model_dir, learning_rate, **extra):
    from two_stream_tf.training import fit
    return fit.TrainConfig(
        stream="spatial", frames_root=synthetic_dataset.frames_dir, split_dir=synthetic_dataset.split_dir,
        model_dir=str(model_dir), backbone="mobilenet", backbone_kwargs={"alpha": 0.25}, weights=weights,
        image_size=64, num_segments=2, partial_bn=True, dropout=0.8, batch_size=8, learning_rate=learning_rate,
        lr_schedule="constant", steps_per_epoch=4, tensorboard_images=False, verbose=0, health_every_steps=2,
        index_cache=False, **extra)


def _log_rows(model_dir):
    with open(os.path.join(model_dir, "log.csv")) as handle:
        return list(csv.DictReader(handle))


def test_a_collapsing_run_warns_and_a_healthy_run_does_not(synthetic_dataset, shared_data, tmp_path, capsys):
    from two_stream_tf.training import fit
    weights = str(shared_data / MOBILENET)
    # A learning rate 5,000 times the recipe's, no clipping: the weights blow up within two steps.
    broken = fit.train(_config(synthetic_dataset, weights, tmp_path / "broken", 5.0, epochs=2, validation=False))
    err = capsys.readouterr().err
    log = (tmp_path / "broken" / "health.log").read_text()
    first = log.splitlines()[0]
    assert first.startswith("TRAINING HEALTH: ") and " at step 2: " in first
    assert any(kind in first for kind in (health.CONSTANT, health.DEAD_BACKBONE, health.NON_FINITE))
    assert "likely cause: the learning rate 5 is too high for a global batch of 8, 80000x TSN's RGB" in first
    assert "partial BN" in first
    assert f"WARNING: {first}" in err
    # Without --stop_on_collapse the run goes on to its end and keeps its outputs.
    assert len(broken.history) == 2 and os.path.isfile(broken.final_path)

    healthy = fit.train(_config(synthetic_dataset, weights, tmp_path / "healthy", 0.001, epochs=2,
                                validation=False))
    assert not os.path.exists(tmp_path / "healthy" / "health.log")
    assert "TRAINING HEALTH" not in capsys.readouterr().err
    assert len(healthy.history) == 2 and np.isfinite(healthy.history[-1]["loss"])


def test_stop_on_collapse_stops_the_cli_run_with_one_line(synthetic_dataset, shared_data, tmp_path):
    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "two_stream_tf.cli", "train", "--stream=spatial",
               f"--frames_root={synthetic_dataset.frames_dir}", f"--split_dir={synthetic_dataset.split_dir}",
               f"--model_dir={model_dir}", "--backbone=mobilenet", "--backbone_kwargs=alpha=0.25",
               f"--weights={shared_data / MOBILENET}", "--image_size=64", "--num_segments=2", "--partial_bn",
               "--batch_size=8", "--learning_rate=5", "--lr_schedule=constant", "--epochs=3",
               "--steps_per_epoch=4",
               "--novalidation", "--notensorboard_images", "--verbose=0", "--health_every_steps=2",
               "--stop_on_collapse"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert process.returncode == 2, process.stderr[-3000:]
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("two-stream train: error: training stopped at step 2 (--stop_on_collapse): ")
    assert "likely cause: the learning rate 5 is too high for a global batch of 8" in last
    assert "Traceback" not in process.stderr
    # Stopped in the first epoch: one row in the log, no final model, the warning in health.log.
    assert len(_log_rows(model_dir)) == 1
    assert not (model_dir / "final.keras").exists()
    assert "TRAINING HEALTH" in (model_dir / "health.log").read_text()


def test_batch_norm_averages_that_lag_behind_the_weights_are_not_a_collapse():
    # A young model whose BN moving mean lags far behind: in inference mode every unit is off and every
    # input gets the bias; a training step (batch statistics) sees a healthy model, and so do the checks.
    inputs = keras.Input((5,))
    x = keras.layers.Dense(6)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.5)(x)
    logits = keras.layers.Dense(4, name="logits", bias_initializer="ones")(x)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    batch_norm = model.layers[2]
    batch_norm.moving_mean.assign(np.full(6, 1e6, "float32"))
    probe = np.random.default_rng(1).normal(size=(8, 5)).astype("float32")
    inference = keras.Model(inputs, logits)(probe, training=False)
    assert health.constant_predictions(keras.ops.convert_to_numpy(inference))
    watcher = health.TrainingHealth(probe, num_classes=4, echo=False)
    watcher.set_model(model)
    assert watcher.check(step=5, loss=1.0) == []
    # Nothing a training step would change was left changed.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(batch_norm.moving_mean), np.full(6, 1e6))
    assert model.layers[4].rate == 0.5
