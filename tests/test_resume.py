"""Training runs that survive crashes: real `two-stream train` runs on the synthetic dataset, killed and resumed.

The model is MobileNet (alpha 0.25, random weights) at 32x32 pixels; a run is 3 epochs of 4 batches of 8
with a cosine schedule, so the planned optimizer steps are 12 and the learning rate after epoch e is
cosine(4 (e + 1) / 12).
"""
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from two_stream_tf import cli, storage
from two_stream_tf.errors import UserError
from two_stream_tf.training import backup as backup_lib, callbacks, checkpoints, fit, run_folder

PROJECT = pathlib.Path(__file__).resolve().parents[1]
HELPER = PROJECT / "tests" / "train_until_killed.py"
TIMEOUT = 900  # seconds per training process: generous, the machine may be busy
EPOCHS, STEPS, BATCH, BASE_LR = 3, 4, 8, 0.05
PLANNED = EPOCHS * STEPS


def _planned_rates():
    return [BASE_LR * 0.5 * (1 + math.cos(math.pi * STEPS * (e + 1) / PLANNED)) for e in range(EPOCHS)]


def _flags(dataset, model_dir, **overrides):
    values = dict(stream="spatial", frames_root=dataset.frames_dir, split_dir=dataset.split_dir, model_dir=model_dir,
                  backbone="mobilenet", backbone_kwargs="alpha=0.25", weights="none", image_size=32,
                  batch_size=BATCH, epochs=EPOCHS, steps_per_epoch=STEPS, lr_schedule="cosine",
                  learning_rate=BASE_LR, validation_videos=8, tensorboard_images="false", verbose=0)
    values.update(overrides)
    return [f"--{key}={value}" for key, value in values.items() if value is not None]


def _config(dataset, model_dir, **overrides):
    values = dict(stream="spatial", frames_root=str(dataset.frames_dir), split_dir=str(dataset.split_dir),
                  model_dir=str(model_dir), backbone="mobilenet", backbone_kwargs={"alpha": 0.25}, weights=None,
                  image_size=32, batch_size=BATCH, epochs=EPOCHS, steps_per_epoch=STEPS, lr_schedule="cosine",
                  learning_rate=BASE_LR, validation_videos=8, tensorboard_images=False, verbose=0)
    values.update(overrides)
    return fit.TrainConfig(**values)


def _environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", TWO_STREAM_TF_NATIVE="0")
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _start(flags, log_path, **env):
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, str(HELPER)] + flags, stdout=log, stderr=subprocess.STDOUT,
                               env=_environment(**env))
    log.close()
    return process


def _finish(process, log_path):
    try:
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, pathlib.Path(log_path).read_text()


def _cli(argv, capsys):
    status = cli.main(argv)
    return status, capsys.readouterr().err.strip()


class _CrashAtEpoch(callbacks.LearningRateLogger):
    """Stands in for the run's learning-rate logger and raises when epoch `epoch` (0-based) begins."""

    epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"simulated crash at epoch {epoch}")


def _train_crashing(monkeypatch, config, epoch):
    monkeypatch.setattr(_CrashAtEpoch, "epoch", epoch)
    monkeypatch.setattr(callbacks, "LearningRateLogger", _CrashAtEpoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit.train(config)
    monkeypatch.undo()


def _final_steps(model_file):
    from two_stream_tf.models import load_model
    return int(load_model(str(model_file)).optimizer.iterations.numpy())


def test_double_sigkill_around_a_resume_reaches_the_planned_steps_and_schedule(synthetic_dataset, tmp_path, capsys):
    model_dir = tmp_path / "run"
    flags = _flags(synthetic_dataset, model_dir, backup_every_steps=1)

    # 1. Stopped after 6 steps (epoch 1, 2 batches): it holds the run folder, and a second run is refused.
    ready = tmp_path / "ready"
    first = _start(flags, tmp_path / "first.log", KILL_AT_STEP="6", KILL_MODE="wait", READY_FILE=str(ready))
    deadline = time.monotonic() + TIMEOUT
    while not ready.exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the first run never reached step 6"
        time.sleep(0.2)
    status, message = _cli(["train"] + flags, capsys)
    assert status == 2 and "\n" not in message
    assert f"is in use by another training run (pid {first.pid} on " in message and "train.lock" in message
    first.send_signal(signal.SIGKILL)
    first.wait()
    state = backup_lib.read_state(model_dir / "backup")
    assert (state.epoch, state.batch, state.iterations) == (1, 2, 6)

    # 2. Resumed (epoch 1 again from its start, step counter back at 4) and killed after its first step.
    code, output = _finish(_start(flags, tmp_path / "second.log", KILL_AT_STEP="5"), tmp_path / "second.log")
    assert code == -signal.SIGKILL, output[-3000:]
    assert f"taking over the stale lock of pid {first.pid}" in output
    assert ("continuing at epoch 2. (its first 2 batches are trained again, from optimizer step 4.)"
            in output), output[-3000:]
    state = backup_lib.read_state(model_dir / "backup")
    # The backup of the resumed epoch records that epoch (not epoch 0) and the rewound counter + 1.
    assert (state.epoch, state.batch, state.iterations) == (1, 1, 5)

    # 3. Resumed again: it ends at the planned 12 steps with the planned learning rates.
    code, output = _finish(_start(flags, tmp_path / "third.log"), tmp_path / "third.log")
    assert code == 0, output[-3000:]
    done = json.loads((model_dir / "done.json").read_text())
    assert done["optimizer_steps"] == PLANNED and done["total_steps"] == PLANNED
    assert _final_steps(model_dir / "final.keras") == PLANNED
    rows = callbacks.ResumableCSVLogger.read_rows(str(model_dir / "log.csv"))
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    np.testing.assert_allclose([row["learning_rate"] for row in rows], _planned_rates(), rtol=1e-5, atol=1e-9)
    assert not (model_dir / "backup").exists() and not (model_dir / "train.lock").exists()


def test_deterministic_resume_at_an_epoch_boundary_equals_an_uninterrupted_run(synthetic_dataset, tmp_path,
                                                                                monkeypatch):
    # Dropout on, so that the random-generator state of the backup matters too.
    common = dict(deterministic=True, dropout=0.5)
    whole = fit.train(_config(synthetic_dataset, tmp_path / "whole", **common))
    _train_crashing(monkeypatch, _config(synthetic_dataset, tmp_path / "crashed", **common), epoch=2)
    resumed = fit.train(_config(synthetic_dataset, tmp_path / "crashed", **common))
    assert resumed.resumed_from_epoch == 2 and [row["epoch"] for row in resumed.history] == [2]
    a = keras.saving.load_model(whole.final_path)
    b = keras.saving.load_model(resumed.final_path)
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == PLANNED
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)

    # A finished run whose final.keras is gone gets it back from the last epoch's checkpoint, untrained.
    log_before = (tmp_path / "whole" / "log.csv").read_text()
    os.remove(whole.final_path)
    again = fit.train(_config(synthetic_dataset, tmp_path / "whole", **common))
    assert again.history == [] and (tmp_path / "whole" / "log.csv").read_text() == log_before
    restored = keras.saving.load_model(again.final_path)
    for x, y in zip(a.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(UserError, match="already holds a finished run"):
        fit.train(_config(synthetic_dataset, tmp_path / "whole", **common))


def test_damaged_backup_history_and_log_fall_back_with_a_warning(synthetic_dataset, tmp_path, monkeypatch):
    model_dir = tmp_path / "run"
    _train_crashing(monkeypatch, _config(synthetic_dataset, model_dir), epoch=2)
    assert backup_lib.read_state(model_dir / "backup").epoch == 2
    backup_file = model_dir / "backup" / backup_lib.FILE_NAME
    backup_file.write_bytes(backup_file.read_bytes()[: backup_file.stat().st_size // 2])  # torn
    (model_dir / "checkpoints.json").write_text('{"1": 0.25, "2":')
    log = (model_dir / "log.csv").read_text()
    (model_dir / "log.csv").write_text(log[: len(log) - 7])  # last row cut off
    relative_frames = os.path.relpath(synthetic_dataset.frames_dir)
    assert not os.path.isabs(relative_frames)
    with pytest.warns(RuntimeWarning) as caught:  # verbose, data_threads and the data's path may change
        result = fit.train(_config(synthetic_dataset, model_dir, verbose=2, data_threads=2,
                                   frames_root=relative_frames))
    warned = "\n".join(str(w.message) for w in caught)
    assert f"backup {backup_file} is damaged" in warned
    assert f"checkpoint history {model_dir / 'checkpoints.json'} is damaged" in warned
    assert f"training log {model_dir / 'log.csv'} is damaged" in warned
    # The previous backup generation is the end of epoch 0: epochs 1 and 2 are trained again.
    assert result.resumed_from_epoch == 1
    rows = callbacks.ResumableCSVLogger.read_rows(str(model_dir / "log.csv"))
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    np.testing.assert_allclose([row["learning_rate"] for row in rows], _planned_rates(), rtol=1e-5, atol=1e-9)
    assert _final_steps(result.final_path) == PLANNED
    assert sorted(json.loads((model_dir / "checkpoints.json").read_text())) == ["1", "2", "3"]
    # Stored absolute, so that evaluate finds the frames from any folder.
    assert fit.load_run_config(str(model_dir))["frames_root"] == os.path.abspath(relative_frames)


@pytest.fixture(scope="module")
def interrupted_run(synthetic_dataset, tmp_path_factory):
    """A run folder whose run crashed when epoch 1 began (one epoch done, a backup left)."""
    model_dir = tmp_path_factory.mktemp("interrupted") / "run"
    monkeypatch = pytest.MonkeyPatch()
    _train_crashing(monkeypatch, _config(synthetic_dataset, model_dir), epoch=1)
    return model_dir


@pytest.mark.parametrize("changes, expected", [
    (dict(optimizer="adam", num_segments=2), ["--optimizer=adam (the run has sgd)",
                                              "--num_segments=2 (the run has null)"]),
    (dict(backbone="mobilenet_v3_small", backbone_kwargs=None), ["--backbone=mobilenet_v3_small (the run has mobilenet)",
                                                                  "--backbone_kwargs={} (the run has {\"alpha\": 0.25})"]),
    (dict(class_subset="class_a,class_b"), ["the number of classes (--split_dir, --class_subset, --dataset): 2 now, "
                                            "8 in the run"]),
])
def test_resume_with_changed_settings_is_refused_naming_them(synthetic_dataset, interrupted_run, capsys, changes,
                                                             expected):
    if "class_subset" in changes:
        changes = dict(class_subset=",".join(synthetic_dataset.classes[:2]))
        expected = [expected[0]]
    before = (interrupted_run / "train_config.json").read_text()
    status, message = _cli(["train"] + _flags(synthetic_dataset, interrupted_run, **changes), capsys)
    assert status == 2 and "\n" not in message, message
    assert message.startswith(f"two-stream train: error: model_dir {interrupted_run} holds a run trained with "
                              "other settings: ")
    for fragment in expected:
        assert fragment in message
    assert (interrupted_run / "train_config.json").read_text() == before  # not rewritten
    assert backup_lib.read_state(interrupted_run / "backup").epoch == 1  # nothing lost


def test_unusable_model_dirs_give_one_line_and_exit_2(synthetic_dataset, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    if os.geteuid() == 0:
        read_only = "/sys/kernel/two_stream_run"  # permissions do not stop root; sysfs does
    else:
        (tmp_path / "locked").mkdir(mode=0o500)
        read_only = str(tmp_path / "locked" / "run")
    cases = [
        (a_file, f"--model_dir={a_file}: is a file, not a folder"),
        (a_file / "run", f"--model_dir={a_file / 'run'}: a part of the path is a file, not a folder"),
        (read_only, f"--model_dir={read_only}: cannot write there ("),
        ("gs://two-stream-no-such-bucket/run", "--model_dir=gs://two-stream-no-such-bucket/run: cannot reach the "
                                              "gs:// store ("),
        ("nosuchfs://bucket/run", "--model_dir=nosuchfs://bucket/run: TensorFlow has no file system for "
                                  "'nosuchfs://' paths"),
    ]
    for model_dir, expected in cases:
        status, message = _cli(["train"] + _flags(synthetic_dataset, model_dir), capsys)
        assert status == 2 and "\n" not in message and "Traceback" not in message, message
        assert message.startswith("two-stream train: error: " + expected), message
    assert not pathlib.Path("gs:").exists() and not pathlib.Path("nosuchfs:").exists()


def test_a_run_on_ram_paths_trains_resumes_keeps_n_checkpoints_and_evaluates(synthetic_dataset, tmp_path,
                                                                            monkeypatch, capsys):
    model_dir = "ram://two_stream_tests/run"
    config = _config(synthetic_dataset, model_dir, keep_checkpoints=1)
    _train_crashing(monkeypatch, config, epoch=2)
    assert backup_lib.read_state(storage.join(model_dir, "backup")).epoch == 2
    result = fit.train(config)
    assert result.resumed_from_epoch == 2 and result.final_path == model_dir + "/final.keras"
    names = storage.listdir(model_dir)
    assert [c.epoch for c in checkpoints.list_periodic(model_dir)] == [3]  # only the newest one kept
    assert {"final.keras", "best.keras", "done.json", "log.csv", "train_config.json"} <= set(names)
    assert not any(name.startswith(".") for name in names) and not os.path.exists("ram:")
    # A training checkpoint (cosine schedule in its optimizer) loads through the library.
    from two_stream_tf.models import load_model
    periodic = checkpoints.latest_periodic(model_dir).path
    assert int(load_model(periodic).optimizer.iterations.numpy()) == PLANNED
    assert fit.load_run_config(model_dir)["model_dir"] == model_dir

    status = cli.main(["evaluate", f"--checkpoint={model_dir}", "--test_snippets=2", "--test_crops=1",
                       "--max_videos=8", "--eval_batch_size=4"])
    assert status == 0, capsys.readouterr().err
    output_dir = storage.join(model_dir, "evaluation_split1_test")
    metrics = json.loads(storage.read_text(storage.join(output_dir, "metrics.json")))
    from two_stream_tf.evaluation.scores import load_scores
    scores = load_scores(storage.join(output_dir, "scores.npz"))
    assert len(scores.videos) == 8 and 0.0 <= metrics["top1"] <= 1.0
    storage.rmtree("ram://two_stream_tests")


def test_run_lock_takes_over_a_dead_holder_and_refuses_a_live_one(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        lock = run_folder.RunLock(str(tmp_path))
        (tmp_path / run_folder.LOCK_NAME).write_text(json.dumps(
            {"pid": sleeper.pid, "host": lock.holder["host"], "started": "2026-01-01T00:00:00+00:00"}))
        with pytest.raises(UserError, match=f"in use by another training run \\(pid {sleeper.pid} on "):
            lock.acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.warns(RuntimeWarning, match=f"taking over the stale lock of pid {sleeper.pid}"):
        lock.acquire()
    assert json.loads((tmp_path / run_folder.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / run_folder.LOCK_NAME).exists()
