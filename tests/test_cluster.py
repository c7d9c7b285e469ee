"""Multi-worker launch: TF_CONFIG from host lists and SLURM variables, and two real workers on 127.0.0.1."""
import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from two_stream_tf.cli import main as cli_main
from two_stream_tf.errors import UserError
from two_stream_tf.training import cluster

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- SLURM host lists ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodelist, hosts", [
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("node07", ["node07"]),
    ("node[8-11]", ["node8", "node9", "node10", "node11"]),
    ("nid[00998-01001]", ["nid00998", "nid00999", "nid01000", "nid01001"]),
    ("gpu-a[1-2],gpu-b5", ["gpu-a1", "gpu-a2", "gpu-b5"]),
    ("tiger-i19g[1-2],tiger-h26c2n[22,24]", ["tiger-i19g1", "tiger-i19g2", "tiger-h26c2n22", "tiger-h26c2n24"]),
    ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
    ("c[1,3]-gpu,login.cluster.org", ["c1-gpu", "c3-gpu", "login.cluster.org"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert cluster.expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist, message", [
    ("node[01-03", "unmatched '['"),
    ("node01-03]", "unmatched ']'"),
    ("node[03-01]", "runs backwards"),
    ("node[a-c]", "'a-c' is not a number"),
    ("node[01,,03]", "'' is not a number"),
    ("node01,,node02", "empty entry"),
    ("", "empty"),
])
def test_expand_nodelist_rejects_malformed_lists(nodelist, message):
    with pytest.raises(UserError, match=re.escape(message)):
        cluster.expand_nodelist(nodelist)


def test_expand_tasks_per_node():
    assert cluster.expand_tasks_per_node("2(x3),1", 4) == [2, 2, 2, 1]
    assert cluster.expand_tasks_per_node("4", 1) == [4]
    with pytest.raises(UserError, match="gives 3 nodes, but the node list has 2"):
        cluster.expand_tasks_per_node("1(x3)", 2)
    with pytest.raises(UserError, match="'2x' is not N or N"):
        cluster.expand_tasks_per_node("2x", 1)


# --- TF_CONFIG ----------------------------------------------------------------------------------------------

def test_tf_config_for_a_host_list():
    config = cluster.tf_config(["node01:23456", "node02:23456", "node02:23457"], 2)
    assert config == {"cluster": {"worker": ["node01:23456", "node02:23456", "node02:23457"]},
                      "task": {"type": "worker", "index": 2}}


@pytest.mark.parametrize("hosts, index, message", [
    (["node01:23456", "node02"], 0, r"worker address #1 'node02' is not HOST:PORT"),
    (["node01:23456", "node01:23456"], 0, r"'node01:23456' is listed twice \(#0 and #1\)"),
    (["node01:23456", "node02:23456"], 2, r"task index 2 is outside 0..1"),
    (["node01:70000"], 0, r"port 70000 is outside"),
    ([], 0, "at least one worker"),
])
def test_tf_config_rejects_bad_input(hosts, index, message):
    with pytest.raises(UserError, match=message):
        cluster.tf_config(hosts, index)


def test_slurm_one_task_per_node():
    env = {"SLURM_JOB_NODELIST": "node[01-03,07]", "SLURM_PROCID": "3", "SLURMD_NODENAME": "node07"}
    assert cluster.slurm_hosts(env, port=30000) == (
        ["node01:30000", "node02:30000", "node03:30000", "node07:30000"], 3)
    assert cluster.slurm_tf_config(env)["task"] == {"type": "worker", "index": 3}


def test_slurm_several_tasks_per_node_use_consecutive_ports():
    # srun's own step variables win over the job's allocation (a step may use fewer nodes).
    env = {"SLURM_JOB_NODELIST": "gpu[1-4]", "SLURM_STEP_NODELIST": "gpu[2-3]",
           "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_PROCID": "1", "SLURMD_NODENAME": "gpu2"}
    hosts, index = cluster.slurm_hosts(env, port=23456)
    assert hosts == ["gpu2:23456", "gpu2:23457", "gpu3:23456", "gpu3:23457"]
    assert index == 1


def test_slurm_errors_name_the_problem():
    with pytest.raises(UserError, match="not inside a SLURM task"):
        cluster.slurm_hosts({})
    with pytest.raises(UserError, match="SLURM_PROCID 4 is outside 0..3"):
        cluster.slurm_hosts({"SLURM_JOB_NODELIST": "n[1-4]", "SLURM_PROCID": "4"})
    # Cyclic task distribution puts task 1 on the second node; numbering node by node says otherwise.
    env = {"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_PROCID": "1",
           "SLURMD_NODENAME": "n2"}
    with pytest.raises(UserError, match="task 1 runs on n2, but .* puts it on n1.*--distribution=block"):
        cluster.slurm_hosts(env)


def test_tf_config_command(tmp_path, capsys, monkeypatch):
    assert cli_main(["tf-config", "--hosts", "a:1,b:2", "--index", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[01-02]")
    monkeypatch.setenv("SLURM_PROCID", "0")
    for name in ("SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURMD_NODENAME"):
        monkeypatch.delenv(name, raising=False)
    assert cli_main(["tf-config", "--slurm", "--port", "4000", "--export"]) == 0
    assert capsys.readouterr().out == (
        """export TF_CONFIG='{"cluster":{"worker":["node01:4000","node02:4000"]},"task":{"type":"worker","index":0}}'\n""")
    output = tmp_path / "tf_config.json"
    assert cli_main(["tf-config", "--slurm", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["cluster"]["worker"] == ["node01:23456", "node02:23456"]
    assert cli_main(["tf-config", "--hosts", "a:1", "--index", "3"]) == 2
    assert "task index 3 is outside 0..0" in capsys.readouterr().err
    assert cli_main(["tf-config", "--hosts", "a:1"]) == 2
    assert "--hosts needs --index" in capsys.readouterr().err


# --- two workers on 127.0.0.1 -------------------------------------------------------------------------------

# Each process trains a linear model with MultiWorkerMirroredStrategy on its own shard of data (chosen by
# its input pipeline id), so the two only end with the same weights if the gradients were all-reduced.
# A custom step, so that the expected weights follow from plain SGD arithmetic (model.fit under the
# project's strategy runs end to end in test_experiments_e2e.py).
_WORKER_PROGRAM = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras
    import numpy as np
    import tensorflow as tf
    from two_stream_tf.training.strategy import create_strategy, is_chief

    output, steps, per_worker, learning_rate, *shards = sys.argv[1:]
    STEPS, PER_WORKER, LEARNING_RATE = int(steps), int(per_worker), float(learning_rate)
    strategy = create_strategy("multi_worker")
    global_batch = PER_WORKER * strategy.num_replicas_in_sync

    def dataset_fn(input_context):
        data = np.load(shards[input_context.input_pipeline_id])
        batch = input_context.get_per_replica_batch_size(global_batch)
        return tf.data.Dataset.from_tensor_slices((data["x"], data["y"])).batch(batch)

    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
        optimizer.build(model.trainable_variables)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            squared = tf.reduce_mean(tf.square(model(x, training=True) - y), axis=-1)
            loss = tf.nn.compute_average_loss(squared, global_batch_size=global_batch)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    for _ in range(STEPS):
        strategy.run(train_step, args=next(iterator))
    kernel, bias = model.get_weights()
    from two_stream_tf.listen_address import listening_addresses
    config = json.loads(os.environ["TF_CONFIG"])
    port = int(config["cluster"]["worker"][config["task"]["index"]].rsplit(":", 1)[1])
    with open(output, "w") as f:
        json.dump({"replicas": strategy.num_replicas_in_sync, "chief": is_chief(strategy),
                   "kernel": kernel.ravel().tolist(), "bias": bias.tolist(),
                   "listening": sorted(listening_addresses(port))}, f)
""")
STEPS, PER_WORKER, LEARNING_RATE = 5, 8, 0.05


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _expected_weights(shards):
    # Plain SGD on the mean squared error over the global batch (both workers' batches of a step).
    kernel, bias = np.zeros((4, 1)), np.zeros(1)
    for step in range(STEPS):
        rows = slice(step * PER_WORKER, (step + 1) * PER_WORKER)
        x = np.concatenate([xs[rows] for xs, _ in shards]).astype(np.float64)
        y = np.concatenate([ys[rows] for _, ys in shards]).astype(np.float64)
        error = x @ kernel + bias - y
        kernel -= LEARNING_RATE * 2 * x.T @ error / len(x)
        bias -= LEARNING_RATE * 2 * error.mean(axis=0)
    return kernel.ravel(), bias


def _shard(worker):
    # A linear target with a different offset per worker.
    rng = np.random.default_rng(worker)
    x = rng.normal(size=(STEPS * PER_WORKER, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32") + 1.0 + worker).astype("float32")
    return x, y


def test_two_workers_train_in_sync_with_the_generated_tf_config(tmp_path):
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    shards = [_shard(worker) for worker in range(2)]
    shard_files = []
    for worker, (x, y) in enumerate(shards):
        shard_files.append(str(tmp_path / f"shard{worker}.npz"))
        np.savez(shard_files[-1], x=x, y=y)
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(cluster.tf_config(hosts, index)), CUDA_VISIBLE_DEVICES="")
        processes.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER_PROGRAM, str(tmp_path / f"worker{index}.json"), str(STEPS), str(PER_WORKER),
             str(LEARNING_RATE), *shard_files], cwd=PROJECT_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index} failed:\n{output[-3000:]}"
    results = [json.loads((tmp_path / f"worker{index}.json").read_text()) for index in range(2)]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    # TensorFlow's collective-ops servers listen on the address TF_CONFIG names, not on every interface.
    assert [r["listening"] for r in results] == [["127.0.0.1"], ["127.0.0.1"]]
    np.testing.assert_array_equal(results[0]["kernel"], results[1]["kernel"])
    np.testing.assert_array_equal(results[0]["bias"], results[1]["bias"])
    kernel, bias = _expected_weights(shards)
    np.testing.assert_allclose(results[0]["kernel"], kernel, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[0]["bias"], bias, rtol=1e-4, atol=1e-5)
    # Worker 0's shard alone would have led elsewhere: the second worker's gradients were used.
    alone, _ = _expected_weights(shards[:1])
    assert np.abs(alone - kernel).max() > 0.01
