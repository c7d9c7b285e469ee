"""The synthetic recipe end to end through the real entry points, in subprocesses as a user runs them.

One test trains the spatial and temporal streams (the temporal run is killed with SIGKILL mid-epoch and
rerun: it must resume), evaluates both by the 25 x 10 protocol and fuses them. Another trains the temporal
stream on one device, with MirroredStrategy over 2 logical CPUs, and with 2 MultiWorkerMirroredStrategy
workers on 127.0.0.1, and checks that they land in the same accuracy band.

The recipe's ImageNet weights come from the real MobileNet file in ../shared/data (the file
`--weights=imagenet` would download), so these tests skip where it is absent.
"""
import csv
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from two_stream_tf import cli
from two_stream_tf.models import load_model
from two_stream_tf.training import cluster
from two_stream_tf.training.callbacks import AtomicBackupAndRestore

PROJECT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = PROJECT / "experiments" / "configs"
MOBILENET = "weights/mobilenet_2_5_224_tf_no_top.h5"
CHANCE = 1 / 8
EPOCHS = 16  # of the synthetic recipes
TIMEOUT = 600


def _recipe_flags(stream, dataset, weights, model_dir, *extra):
    return [f"--flagfile={CONFIGS / f'synthetic_{stream}.cfg'}", f"--frames_root={dataset.frames_dir}",
            f"--split_dir={dataset.split_dir}", f"--weights={weights}", f"--model_dir={model_dir}", "--verbose=2",
            *extra]


def _environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _script(name):
    return [sys.executable, str(PROJECT / "experiments" / name)]


def _run(command, log_path, env=None):
    with open(log_path, "w") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env or _environment(),
                                 timeout=TIMEOUT)
    output = pathlib.Path(log_path).read_text()
    assert process.returncode == 0, output[-3000:]
    return output


def _csv_rows(model_dir):
    with open(pathlib.Path(model_dir) / "log.csv") as handle:
        return list(csv.DictReader(handle))


def _final_val_top1(model_dir):
    return float(_csv_rows(model_dir)[-1]["val_top1"])


def _load_every_keras_file(model_dir):
    names = sorted(p.name for p in pathlib.Path(model_dir).glob("*.keras"))
    for name in names:
        load_model(pathlib.Path(model_dir) / name, compile=False)
    return names


def _kill_mid_epoch(command, log_path, backup_dir, min_epoch=2):
    """Starts a training run and SIGKILLs it once a mid-epoch backup of epoch >= min_epoch exists."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_environment())
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            state = AtomicBackupAndRestore.read_state(backup_dir)
            if state and state["epoch"] >= min_epoch and state["batch"] > 0:
                process.send_signal(signal.SIGKILL)
                break
            assert process.poll() is None, "training ended before it could be killed:\n" + \
                pathlib.Path(log_path).read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("no mid-epoch backup appeared in time")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return AtomicBackupAndRestore.read_state(backup_dir)


@pytest.fixture(scope="module")
def weights(shared_data):
    return shared_data / MOBILENET


@pytest.mark.slow
def test_synthetic_recipe_trains_resumes_after_sigkill_evaluates_and_fuses(synthetic_dataset, weights, tmp_path,
                                                                           capsys):
    spatial_dir, temporal_dir = tmp_path / "spatial", tmp_path / "temporal"
    _run(_script("train_spatial.py") + _recipe_flags("spatial", synthetic_dataset, weights, spatial_dir),
         tmp_path / "spatial.log")

    # The temporal run backs up every 3 steps, saves a checkpoint every epoch, and is killed in the middle
    # of its third epoch or later.
    temporal = _script("train_temporal.py") + _recipe_flags("temporal", synthetic_dataset, weights, temporal_dir,
                                                            "--backup_every_steps=3", "--checkpoint_every=1")
    killed = _kill_mid_epoch(temporal, tmp_path / "killed.log", temporal_dir / "backup")
    assert killed["epoch"] >= 2 and killed["batch"] > 0
    rows_before = _csv_rows(temporal_dir)
    # Whatever the instant of the kill, every checkpoint on disk loads.
    assert _load_every_keras_file(temporal_dir)

    output = _run(temporal, tmp_path / "resumed.log")
    match = re.search(r"Resuming from the backup in .*: continuing at epoch (\d+)\.", output)
    assert match and int(match.group(1)) == killed["epoch"] + 1, output[-2000:]
    rows = _csv_rows(temporal_dir)
    # The epoch counter continued: every epoch once, the rows written before the kill kept as they were.
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for before, after in zip(rows_before[:killed["epoch"]], rows[:killed["epoch"]]):
        assert before.items() <= after.items()  # (later rows may add empty validation columns)
    assert f"Epoch {killed['epoch'] + 1}/{EPOCHS}" in output and "Epoch 1/" not in output
    assert not (temporal_dir / "backup").exists()  # removed when training completed
    names = _load_every_keras_file(temporal_dir)
    assert "final.keras" in names and f"{EPOCHS:03d}." in " ".join(names)
    saved_flags = (temporal_dir / "flags.cfg").read_text()
    assert "--stream=temporal" in saved_flags and "--num_segments=3" in saved_flags

    # The published protocol: 25 snippets x 10 crops per test video (from the recipe), then fusion.
    for stream, model_dir in (("spatial", spatial_dir), ("temporal", temporal_dir)):
        flags = _recipe_flags(stream, synthetic_dataset, weights, model_dir)
        assert cli.main(["evaluate", *flags]) == 0
    results = tmp_path / "results.md"
    scores = [d / "evaluation_split1_test" / "scores.npz" for d in (spatial_dir, temporal_dir)]
    assert cli.main(["fuse", f"--scores={scores[0]},{scores[1]}", f"--results_table={results}",
                     "--run_name=synthetic", f"--output_dir={tmp_path / 'fused'}"]) == 0
    printed = capsys.readouterr().out
    metrics = {}
    for stream, model_dir in (("spatial", spatial_dir), ("temporal", temporal_dir)):
        metrics[stream] = json.loads((model_dir / "evaluation_split1_test" / "metrics.json").read_text())
        assert metrics[stream]["protocol"]["snippets"] == 25 and metrics[stream]["protocol"]["crops"] == 10
        assert metrics[stream]["num_videos"] == 32
        with np.load(model_dir / "evaluation_split1_test" / "scores.npz", allow_pickle=False) as data:
            np.testing.assert_allclose(data["scores"].sum(axis=1), 1.0, atol=1e-4)
    fused = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    # Training scored each final.keras on the same 16 held-out training videos; fusion weights fitted on them
    # are applied to the test scores.
    validation = [d / "evaluation_split1_validation" / "scores.npz" for d in (spatial_dir, temporal_dir)]
    assert cli.main(["fuse", f"--scores={scores[0]},{scores[1]}", f"--fit_on={validation[0]},{validation[1]}",
                     f"--output_dir={tmp_path / 'fitted'}"]) == 0
    assert "fitted on 16 validation videos" in capsys.readouterr().out
    fitted = json.loads((tmp_path / "fitted" / "metrics.json").read_text())
    assert fitted["num_videos"] == 32 and fitted["top1"] >= 2 * CHANCE
    with capsys.disabled():
        print(f"\nsynthetic recipe, 25 x 10 test protocol, chance {CHANCE:.3f}:")
        print("\n".join(line for line in printed.splitlines() if "top-1" in line))
    assert metrics["temporal"]["top1"] >= 2 * CHANCE, "the temporal stream is not well above chance"
    assert fused["top1"] >= max(metrics["spatial"]["top1"], metrics["temporal"]["top1"])
    assert results.read_text().splitlines()[-1].startswith("| synthetic | ")
    assert (tmp_path / "fused" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    # Recurrent fusion on the frozen streams (train_fusion.py), shortened to 2 epochs, and its evaluation on
    # sequences of the recipe's 3 snippets (6 test snippets = 2 interleaved sequences per video).
    fusion_dir = tmp_path / "fusion"
    fusion_flags = [f"--flagfile={CONFIGS / 'synthetic_fusion.cfg'}", f"--frames_root={synthetic_dataset.frames_dir}",
                    f"--split_dir={synthetic_dataset.split_dir}", f"--spatial_model={spatial_dir}",
                    f"--temporal_model={temporal_dir}", f"--model_dir={fusion_dir}", "--verbose=2", "--epochs=2",
                    "--validation_freq=2"]
    _run(_script("train_fusion.py") + fusion_flags, tmp_path / "fusion.log")
    assert cli.main(["evaluate", *fusion_flags, "--test_snippets=6", "--test_crops=1"]) == 0
    fusion_metrics = json.loads((fusion_dir / "evaluation_split1_test" / "metrics.json").read_text())
    assert fusion_metrics["num_videos"] == 32 and fusion_metrics["protocol"]["stream"] == "fusion"
    fused_model = load_model(fusion_dir / "final.keras", compile=False)
    assert fused_model.get_layer("lstm") is not None and set(fused_model.input) == {"rgb", "flow"}
    # The streams stayed frozen: every backbone weight of each stream is in the fused model unchanged.
    fused_weights = [w.numpy() for w in fused_model.weights]
    for stream_dir in (spatial_dir, temporal_dir):
        stream = load_model(stream_dir / "final.keras", compile=False)  # what a run folder means
        for weight in stream.get_layer("backbone").weights:
            value = weight.numpy()
            assert any(w.shape == value.shape and np.array_equal(w, value) for w in fused_weights), weight.path


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_mirrored_and_multi_worker_runs_reach_the_one_device_band(synthetic_dataset, weights, tmp_path):
    runs = {name: tmp_path / name for name in ("one_device", "mirrored", "multi_worker")}
    outputs = {}
    command = _script("train_temporal.py")
    # The recipe as it is, but validated only after the last epoch and without TensorBoard images: the
    # comparison needs the final validation accuracy only.
    quick = ("--validation_freq=16", "--notensorboard_images")
    outputs["one_device"] = _run(command + _recipe_flags("temporal", synthetic_dataset, weights,
                                                         runs["one_device"], "--strategy=one_device", *quick),
                                 tmp_path / "one_device.log")
    outputs["mirrored"] = _run(command + _recipe_flags("temporal", synthetic_dataset, weights, runs["mirrored"],
                                                       "--strategy=mirrored", "--cpu_devices=2", *quick),
                               tmp_path / "mirrored.log")

    # Two worker processes on 127.0.0.1; worker 0 is the chief and the only one whose files stay.
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    scratch = tmp_path / "worker_tmp"
    scratch.mkdir()
    processes = []
    for task in range(2):
        env = _environment(TF_CONFIG=json.dumps(cluster.tf_config(hosts, task)), TMPDIR=str(scratch))
        log = open(tmp_path / f"worker{task}.log", "w")
        flags = _recipe_flags("temporal", synthetic_dataset, weights, runs["multi_worker"], "--strategy=multi_worker",
                              *quick)
        processes.append((subprocess.Popen(command + flags, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    try:
        for process, _ in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process, log in processes:
            if process.poll() is None:  # one worker failed and the other waits on the all-reduce
                process.kill()
                process.wait()
            log.close()
    for task, (process, _) in enumerate(processes):
        output = (tmp_path / f"worker{task}.log").read_text()
        assert process.returncode == 0, output[-3000:]
        outputs[f"worker{task}"] = output
    assert "2 replica(s) (MirroredStrategy)" in outputs["mirrored"]
    assert "2 replica(s) (MultiWorkerMirroredStrategy)" in outputs["worker0"]
    assert "1 replica(s) (OneDeviceStrategy)" in outputs["one_device"]
    assert not list(scratch.iterdir())  # worker 1 wrote to a private folder and removed it

    accuracy = {name: _final_val_top1(path) for name, path in runs.items()}
    print(f"\nfinal validation top-1 of the synthetic temporal recipe: {accuracy}")
    for name, path in runs.items():
        assert [int(r["epoch"]) for r in _csv_rows(path)] == list(range(EPOCHS)), name
        assert (path / "final.keras").is_file()
    for name in ("mirrored", "multi_worker"):
        assert accuracy[name] >= 2 * CHANCE and abs(accuracy[name] - accuracy["one_device"]) <= 0.2, accuracy
