"""Training building blocks: schedules, checkpoint names, atomic writes, backups that resume, CSV log, strategies."""
import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic, backup as backup_lib, callbacks, checkpoints, losses, schedules, strategy
from two_stream_tf.training import summaries


def _values(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_step_schedule_is_tsn_rgb_solver():
    # TSN RGB: lr 0.001, x0.1 every 1,500 iterations.
    schedule = schedules.build_schedule("step", 0.001, boundaries=[1500, 3000])
    np.testing.assert_allclose(_values(schedule, [0, 1499, 1500, 2999, 3000, 3499]),
                               [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-5)


def test_cosine_and_warmup():
    cosine = schedules.build_schedule("cosine", 0.1, total_steps=100)
    np.testing.assert_allclose(_values(cosine, [0, 50, 100, 150]), [0.1, 0.05, 0.0, 0.0], atol=1e-7)
    warm = schedules.build_schedule("step", 0.1, boundaries=[200], warmup_steps=10)
    np.testing.assert_allclose(_values(warm, [0, 5, 10, 199, 200]), [0.0, 0.05, 0.1, 0.1, 0.01], rtol=1e-5)
    assert schedules.build_schedule("constant", 0.01) == 0.01
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        schedules.build_schedule("linear", 0.1)


def test_schedules_survive_keras_serialization():
    warm = schedules.LinearWarmup(schedules.StepDecay(0.1, [20], 0.5), 4)
    config = keras.saving.serialize_keras_object(warm)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    np.testing.assert_allclose(_values(restored, [2, 10, 25]), _values(warm, [2, 10, 25]))


def test_label_smoothing_loss_matches_keras_categorical():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([0, 1])
    ours = losses.SparseCategoricalCrossentropy(label_smoothing=0.1)(labels, probabilities)
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(3)[labels], probabilities)
    np.testing.assert_allclose(float(ours), float(reference), rtol=1e-6)
    plain = losses.SparseCategoricalCrossentropy()(labels, probabilities)
    np.testing.assert_allclose(float(plain), -np.mean(np.log([0.7, 0.1])), rtol=1e-5)


def test_periodic_checkpoint_names():
    assert checkpoints.periodic_name(7, 0.8123, 0.799) == "007.0.8123.0.7990.keras"
    parsed = checkpoints.parse_periodic_name("runs/x/012.1.0000.0.9500.keras")
    assert (parsed.epoch, parsed.best_top1, parsed.current_top1) == (12, 1.0, 0.95)
    assert checkpoints.parse_periodic_name("best.keras") is None
    assert checkpoints.parse_periodic_name(".007.0.8123.0.7990.keras.tmp-ab.keras") is None


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "metrics.json"
    atomic.write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(path) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".json")
            with open(tmp, "w") as handle:
                handle.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]
    # A file a SIGKILL left behind is recognised and removed.
    (tmp_path / ".best.keras.tmp-x1y2.keras").write_bytes(b"PK\x03")
    assert atomic.remove_stale_temporaries(tmp_path) == [".best.keras.tmp-x1y2.keras"]


def _tiny_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(1, name="top1")])
    return model


class _Crash(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, np.argmax(x[:, :3], axis=1)


def test_backup_restore_resumes_epochs_and_logs(tmp_path):
    x, y = _data()
    backup_dir, csv_path = str(tmp_path / "backup"), str(tmp_path / "log.csv")

    def run(extra):
        model = _tiny_model()
        cbs = [callbacks.AtomicBackupAndRestore(backup_dir), callbacks.LearningRateLogger(),
               callbacks.ResumableCSVLogger(csv_path), callbacks.EpochCheckpoints(tmp_path, total_epochs=5),
               summaries.EpochScalars(str(tmp_path / "tb"))] + extra
        state = cbs[0].restore(model)
        history = model.fit(x, y, batch_size=8, epochs=5, initial_epoch=state.epoch if state else 0,
                            validation_data=(x, y), callbacks=cbs, verbose=0)
        return model, cbs[0], history

    with pytest.raises(RuntimeError, match="simulated crash"):
        run([_Crash(3)])
    state = callbacks.AtomicBackupAndRestore.read_state(backup_dir)
    assert state == {"epoch": 3, "batch": 0}
    # The optimizer step counter is part of the backup (12 = 3 epochs x 4 batches).
    assert backup_lib.read_state(backup_dir).iterations == 12
    model, backup, history = run([])
    assert backup.restored == (3, 0) and history.epoch == [3, 4]
    assert int(model.optimizer.iterations) == 20
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.1)
    backup.remove()
    assert not os.path.exists(backup_dir)
    names = sorted(os.listdir(tmp_path))
    periodic = [c.epoch for c in checkpoints.list_periodic(tmp_path)]
    assert periodic == [1, 2, 3, 4, 5] and "best.keras" in names
    # The best value carried over the restart: the name of epoch 5 holds the best of all five epochs.
    best = max(float(r["val_top1"]) for r in rows)
    assert checkpoints.latest_periodic(tmp_path).best_top1 == pytest.approx(best, abs=1e-4)
    reloaded = keras.models.load_model(checkpoints.find_model_file(str(tmp_path)))
    # TensorBoard scalars of all five epochs, the repeated ones once more after the restart.
    scalars = summaries.read_events(str(tmp_path / "tb" / "validation"))["epoch_top1"]
    assert sorted({step for step, _ in scalars}) == [0, 1, 2, 3, 4]
    assert reloaded.output_shape == (None, 3)


def test_epochs_without_validation_neither_rank_nor_name_checkpoints(tmp_path):
    x, y = _data()
    model = _tiny_model()
    saver = callbacks.EpochCheckpoints(tmp_path, period=1, total_epochs=4)
    model.fit(x, y, batch_size=8, epochs=4, validation_data=(x, y), validation_freq=2, callbacks=[saver], verbose=0)
    saved = checkpoints.list_periodic(tmp_path)
    assert [c.epoch for c in saved] == [1, 2, 3, 4]
    history = json.loads((tmp_path / "checkpoints.json").read_text())
    assert history["1"] is None and history["3"] is None and history["2"] is not None
    # Epoch 1 has no measurement yet; epoch 3 carries epoch 2's; the best is the best validation value.
    assert saved[0].current_top1 == 0.0 and saved[2].current_top1 == pytest.approx(history["2"], abs=1e-4)
    assert saved[3].best_top1 == pytest.approx(max(history["2"], history["4"]), abs=1e-4)


def test_mid_epoch_backup_restarts_the_interrupted_epoch(tmp_path):
    x, y = _data()
    backup_dir = str(tmp_path / "backup")

    class CrashAtBatch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 6:
                raise RuntimeError("crash mid-epoch")

    model = _tiny_model()
    with pytest.raises(RuntimeError):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[callbacks.AtomicBackupAndRestore(backup_dir, save_freq=1), CrashAtBatch()])
    # Batches 0 and 1 of epoch 1 (0-based) were done: the backup says epoch 1, 2 batches, step 6.
    assert callbacks.AtomicBackupAndRestore.read_state(backup_dir) == {"epoch": 1, "batch": 2}
    weights_before = [w.copy() for w in model.get_weights()]
    model = _tiny_model()
    backup = callbacks.AtomicBackupAndRestore(backup_dir, save_freq=1)
    state = backup.restore(model)
    assert (state.epoch, state.batch, int(model.optimizer.iterations)) == (1, 2, 6)
    np.testing.assert_array_equal(model.get_weights()[0], weights_before[0])
    # The epoch is trained again from its start: the step counter goes back to that start (4), so the run
    # ends at the planned 12 steps instead of 14.
    assert backup_lib.rewind_step_counter(model, state, steps_per_epoch=4) == 6
    history = model.fit(x, y, batch_size=8, epochs=3, initial_epoch=state.epoch, verbose=0, callbacks=[backup])
    assert history.epoch == [1, 2] and int(model.optimizer.iterations) == 12
    assert not np.allclose(weights_before[0], model.get_weights()[0])


def test_confusion_matrix_and_inputs_reach_tensorboard(tmp_path):
    x, y = _data()
    model = _tiny_model()
    images = callbacks.TensorBoardImages(tmp_path, samples=np.zeros((2, 8, 8, 4), np.float32) + 0.5,
                                         stream="temporal", classes=["a", "b", "c"], validation=(x, y))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[images])
    confusion = images.confusion()
    assert confusion.sum() == 32 and confusion.shape == (3, 3)
    events = summaries.read_events(str(tmp_path / "images"))
    assert events["inputs/flow_colour"] == [(0, 2)] and events["confusion_matrix"] == [(0, 1)]


def test_display_rgb_inverts_the_normalisations():
    pixels = np.array([[0.0, 128.0, 255.0]], dtype=np.float32)
    np.testing.assert_array_equal(callbacks.display_rgb(pixels / 127.5 - 1, "tf"), [[0, 128, 255]])
    caffe = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_array_equal(callbacks.display_rgb(caffe, "caffe"), [[0, 128, 255]])
    torch = (pixels / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_array_equal(callbacks.display_rgb(torch, "torch"), [[0, 128, 255]])


def test_strategy_names():
    assert strategy.resolve_name("auto") == "one_device"  # this machine: no TPU, no GPU, no TF_CONFIG
    assert isinstance(strategy.create_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(UserError, match="unknown strategy 'gpus'; one of auto, one_device"):
        strategy.create_strategy("gpus")
    assert strategy.is_chief(strategy.create_strategy("one_device"))


def test_multi_worker_without_tf_config_is_a_user_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="strategy 'multi_worker' needs the TF_CONFIG environment variable"):
        strategy.create_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG environment variable is not valid JSON"):
        strategy.create_strategy("multi_worker")


def test_optimizer_carries_the_recipe_settings():
    from two_stream_tf.training import fit
    config = fit.TrainConfig(stream="spatial", frames_root="", split_dir="", model_dir="", learning_rate=0.001,
                             lr_boundaries=(1500, 3000), weight_decay=5e-4, clip_norm=40, momentum=0.9)
    optimizer = fit.build_optimizer(config, total_steps=3500)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert (optimizer.momentum, optimizer.weight_decay, optimizer.global_clipnorm) == (0.9, 5e-4, 40)
    schedule = keras.saving.deserialize_keras_object(optimizer.get_config()["learning_rate"])
    np.testing.assert_allclose(_values(schedule, [0, 1500, 3000]), [1e-3, 1e-4, 1e-5], rtol=1e-5)
    kernel = keras.Variable(np.ones((2, 2), np.float32), name="kernel")
    bias = keras.Variable(np.ones(2, np.float32), name="bias")
    optimizer.apply_gradients([(np.zeros((2, 2), np.float32), kernel), (np.zeros(2, np.float32), bias)])
    # Zero gradients: only weight decay moves the kernel (w -= lr * wd * w); biases and BN parameters are
    # not decayed (Caffe's decay_mult 0 in TSN's prototxts).
    np.testing.assert_allclose(kernel.numpy(), 1 - 1e-3 * 5e-4, rtol=1e-7)
    np.testing.assert_array_equal(bias.numpy(), 1.0)


def test_compiled_model_trains_with_xla_label_smoothing_and_clipping():
    from two_stream_tf.training import fit
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    config = fit.TrainConfig(stream="spatial", frames_root="", split_dir="", model_dir="", optimizer="adam",
                             learning_rate=0.05, lr_schedule="cosine", warmup_steps=2, label_smoothing=0.1,
                             clip_norm=1.0, jit_compile=True, weight_decay=0)
    fit.compile_model(model, config, total_steps=40, num_classes=3)
    assert model.jit_compile
    history = model.fit(x, y, batch_size=8, epochs=10, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["top1"][-1] > 0.6 and set(history.history) >= {"top1", "top5", "loss"}


def test_mixed_precision_policy_for_the_device():
    from two_stream_tf.training import fit
    assert fit._mixed_precision_policy(strategy.create_strategy("one_device")) == "mixed_bfloat16"  # CPU


def test_training_input_from_a_tf_data_service(synthetic_dataset):
    from two_stream_tf.data.service import start_dispatcher, start_worker
    from two_stream_tf.training import fit
    dispatcher = start_dispatcher()
    worker = start_worker(dispatcher.target, host="localhost")
    config = fit.TrainConfig(stream="temporal", frames_root=synthetic_dataset.frames_dir,
                             split_dir=synthetic_dataset.split_dir, model_dir="", stack_length=2, num_segments=3,
                             batch_size=4, seed=3, index_cache=False, tf_data_service=dispatcher.target)
    train_index, _ = fit.open_indices(config)
    make = fit.dataset_fn(config, train_index, training=True, rgb_normalization="tf", image_size=32, repeat=True)
    for x, labels in make(None).take(2):
        assert x.shape == (4, 3, 32, 32, 4) and labels.shape == (4,)
        assert float(tf.reduce_max(tf.abs(x))) <= 1.0 and set(labels.numpy()) <= set(range(8))
    del worker, dispatcher


@pytest.mark.parametrize("stream", ["spatial", "temporal"])
def test_frozen_backbone_trains_only_the_classifier_and_a_temporal_first_conv(stream, shared_data):
    from two_stream_tf.models import get_backbone
    from two_stream_tf.training import fit

    keras.utils.set_random_seed(0)
    config = fit.TrainConfig(stream=stream, frames_root="", split_dir="", model_dir="", backbone="mobilenet",
                             backbone_kwargs={"alpha": 0.25},
                             weights=str(shared_data / "weights" / "mobilenet_2_5_224_tf_no_top.h5"),
                             freeze_backbone=True, stack_length=2, num_segments=0, batch_size=2,
                             optimizer="sgd", learning_rate=0.5)
    model = fit.build_model(config, num_classes=3, image_size=64)
    backbone = model.get_layer("backbone")
    first = get_backbone("mobilenet").first_conv(backbone)
    before = {v.path: np.array(v) for v in model.weights}
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(-1, 1, (4, *model.input_shape[1:])).astype("float32")
    model.fit(x, np.array([0, 1, 2, 0]), epochs=2, verbose=0)
    changed = {v.path for v in backbone.weights if not np.array_equal(before[v.path], np.array(v))}
    # Frozen BatchNormalization layers run in inference mode: not even their moving statistics move.
    assert changed == ({first.kernel.path} if stream == "temporal" else set())
    logits = model.get_layer("logits").kernel
    assert not np.array_equal(before[logits.path], np.array(logits))
