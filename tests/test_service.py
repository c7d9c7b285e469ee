"""tf.data service: a dispatcher and two workers started with `two-stream data-service` on 127.0.0.1.

The servers run in their own processes, as on a cluster: the pipelines travel to them as graphs, and
the workers read the synthetic dataset's frames themselves.
"""
import collections
import hashlib
import ipaddress
import logging
import re
import socket
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.cli import main as cli_main
from two_stream_tf.data import service
from two_stream_tf.data.index import open_split_index
from two_stream_tf.data.local_service import LocalService, ServerProcess, free_port
from two_stream_tf.data.pipelines import temporal_dataset
from two_stream_tf.errors import UserError
from two_stream_tf.listen_address import parse_bind_address

STACK_LENGTH, IMAGE_SIZE = 5, 64
# Seconds a server may take to start or stop: generous, a loaded machine takes minutes to import TensorFlow.
SERVER_TIMEOUT = 900


# --- servers ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_service(tmp_path_factory):
    """A dispatcher and two workers on 127.0.0.1, each its own `two-stream data-service` process."""
    logs = tmp_path_factory.mktemp("data_service_logs")
    local = LocalService(num_workers=2, work_dir=logs / "dispatcher_state", log_dir=str(logs), timeout=SERVER_TIMEOUT)
    with local:
        yield local
    # Ctrl-C stops each server cleanly: exit status 0 and a last word.
    servers = [local.dispatcher, *local.workers]
    assert local.exit_codes == [0, 0, 0], [server.output for server in servers]
    assert all(server.output.rstrip().endswith("stopped") for server in servers)
    assert (logs / "dispatcher_state").is_dir()  # --work-dir: the dispatcher journals its state there


@pytest.fixture(scope="module")
def dispatcher_address(local_service):
    return local_service.address


def _listening_sockets(port):
    """The local addresses on which TCP `port` listens, read from /proc/net/tcp and tcp6 (no traffic sent)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            hex_address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(hex_address)  # 32-bit words in the machine's (little-endian) byte order
                address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                found.add(str(getattr(address, "ipv4_mapped", None) or address))
    return found


def _worker_port(worker):
    return int(re.search(r"listening on \S+ port (\d+)", worker.output).group(1))


needs_proc_net = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net (Linux)")


# --- data ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def indices(synthetic_dataset):
    """(train, test) indices of the synthetic dataset (64 / 32 videos of 8 classes)."""
    return tuple(open_split_index(synthetic_dataset.frames_dir, synthetic_dataset.split_dir, subset=subset)
                 for subset in ("train", "test"))


def _train_pipeline(index, batch_size=16, repeat=True, **kwargs):
    return temporal_dataset(index, training=True, batch_size=batch_size, stack_length=STACK_LENGTH,
                            image_size=IMAGE_SIZE, seed=0, strict=True, repeat=repeat, **kwargs)


def _test_pipeline(index, **kwargs):
    return temporal_dataset(index, training=False, batch_size=4, stack_length=STACK_LENGTH, image_size=IMAGE_SIZE,
                            num_snippets=3, strict=True, **kwargs)


def _fingerprint(array):
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


# --- checks before anything is sent ---------------------------------------------------------------------------

def test_service_addresses():
    assert service.service_target("node07:5050") == "grpc://node07:5050"
    assert service.service_target("grpc://10.0.0.7:5050") == "grpc://10.0.0.7:5050"
    assert service.service_target("[::1]:5050") == "grpc://[::1]:5050"
    for bad, message in [("node07", "is not HOST:PORT"), ("http://node07:5050", "not http://"),
                         ("node07:0", "outside 1..65535"), ("node 07:5050", "is not HOST:PORT")]:
        with pytest.raises(UserError, match=message):
            service.distribute_dataset(tf.data.Dataset.range(3), bad, training=True)


def test_pipelines_that_call_python_are_refused(indices):
    train, _ = indices
    # The default pipelines skip and count corrupt JPEGs in Python; strict ones are pure graphs.
    lenient = temporal_dataset(train, training=True, batch_size=4, stack_length=STACK_LENGTH, image_size=IMAGE_SIZE)
    assert any(found.startswith("EagerPyFunc in ") for found in service.python_ops(lenient))
    with pytest.raises(UserError, match=r"calls Python \(EagerPyFunc in .*pass strict=True"):
        service.distribute_dataset(lenient, "127.0.0.1:5050", training=True)
    assert service.python_ops(_train_pipeline(train)) == []
    numpy_step = tf.data.Dataset.range(3).map(lambda i: tf.numpy_function(lambda v: v + 1, [i], tf.int64))
    with pytest.raises(UserError, match="PyFunc in "):
        service.check_serializable(numpy_step)


def test_transfer_dtype_must_be_a_half_float():
    with pytest.raises(UserError, match="transfer_dtype 'int8' is not one of"):
        service.distribute_dataset(tf.data.Dataset.range(3), "127.0.0.1:5050", training=True, transfer_dtype="int8")


def test_evaluation_pipelines_must_end():
    with pytest.raises(UserError, match="repeats forever; build it with repeat=None"):
        service.distribute_dataset(tf.data.Dataset.range(4).repeat(), "127.0.0.1:5050", training=False)


def test_sources_the_service_cannot_split_are_named():
    randoms = tf.data.Dataset.random(seed=1).take(4)
    assert service.unsplittable_sources(randoms) == ["tf.data.Dataset.random"]
    assert service.unsplittable_sources(tf.data.Dataset.from_tensor_slices([1, 2]).map(lambda v: v * 2)) == []
    with pytest.raises(UserError, match="starts from tf.data.Dataset.random, which tf.data service cannot split"):
        service.distribute_dataset(randoms, "127.0.0.1:5050", training=False)


@pytest.mark.parametrize("argv, message", [
    (["data-service"], "required"),
    (["data-service", "worker"], "--dispatcher"),
    (["data-service", "worker", "--dispatcher", "node07"], "--dispatcher 'node07' is not HOST:PORT"),
    (["data-service", "dispatcher", "--port", "70000"], "port 70000 is outside 0..65535"),
    (["data-service", "dispatcher", "--job-gc-timeout", "0"], "argument --job-gc-timeout: '0' must be positive"),
    (["data-service", "dispatcher", "--bind", "node07"],
     "argument --bind: 'node07' is not an IP address of this machine"),
    (["data-service", "worker", "--dispatcher", "127.0.0.1:5050", "--bind", "127.0.0.300"],
     "argument --bind: '127.0.0.300' is not an IP address"),
    (["data-service", "worker", "--dispatcher", "127.0.0.1:5050", "--stop-timeout", "-1"],
     "argument --stop-timeout: '-1' must be positive"),
])
def test_data_service_command_rejects_bad_arguments(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


# --- where the servers listen ---------------------------------------------------------------------------------

def test_bind_addresses_are_ip_addresses_or_every_interface():
    assert parse_bind_address("127.0.0.2") == "127.0.0.2"
    assert parse_bind_address("[::1]") == "::1"
    assert parse_bind_address("*") == parse_bind_address("0.0.0.0") == parse_bind_address("::") == "*"
    with pytest.raises(UserError, match="--bind 'localhost' is not an IP address"):
        parse_bind_address("localhost")


@needs_proc_net
def test_servers_in_this_process_listen_on_loopback_unless_bound_elsewhere():
    dispatcher = service.start_dispatcher()
    port = service.bound_port(dispatcher)
    assert _listening_sockets(port) == {"127.0.0.1"}
    dispatcher.stop()
    dispatcher = service.start_dispatcher(bind="127.0.0.2")
    worker = service.start_worker(f"127.0.0.2:{service.bound_port(dispatcher)}", bind="127.0.0.2")
    assert _listening_sockets(service.bound_port(dispatcher)) == {"127.0.0.2"}
    assert _listening_sockets(service.bound_port(worker)) == {"127.0.0.2"}
    worker.stop()
    dispatcher.stop()


def test_a_server_that_cannot_listen_names_the_address_and_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"cannot start the tf.data service dispatcher on 127.0.0.1, port {port}: "
                           r".*\(is 127.0.0.1 an address of this machine, and the port free\?\)"):
            service.start_dispatcher(port)


@needs_proc_net
def test_the_dispatcher_and_workers_listen_on_127_0_0_1_only_by_default(local_service):
    assert local_service.address.startswith("grpc://127.0.0.1:")
    assert _listening_sockets(local_service.port) == {"127.0.0.1"}
    for worker in local_service.workers:
        assert "listening on 127.0.0.1 port" in worker.output
        assert _listening_sockets(_worker_port(worker)) == {"127.0.0.1"}


def _endless_job(address):
    """A job reading an endless range through the service, left open: its workers keep asking for splits."""
    dataset = tf.data.Dataset.range(10 ** 9).map(lambda i: 2 * i)
    iterator = iter(dataset.apply(tf.data.experimental.service.distribute(service.POLICY, address)))
    assert [int(next(iterator)) for _ in range(5)] == [0, 2, 4, 6, 8]
    return iterator


@needs_proc_net
def test_bind_puts_the_service_on_that_address_and_it_stops_cleanly_mid_job(tmp_path):
    local = LocalService(num_workers=1, bind="127.0.0.2", log_dir=str(tmp_path), timeout=SERVER_TIMEOUT)
    with local:
        worker_port = _worker_port(local.workers[0])
        assert local.address == f"grpc://127.0.0.2:{local.port}"
        assert _listening_sockets(local.port) == {"127.0.0.2"}
        assert _listening_sockets(worker_port) == {"127.0.0.2"}
        with pytest.raises(ConnectionRefusedError):  # not on 127.0.0.1, the default
            socket.create_connection(("127.0.0.1", local.port), timeout=30).close()
        iterator = _endless_job(local.address)
    # Stopped while the job was still being read: workers first, then the dispatcher, each cleanly.
    assert local.exit_codes == [0, 0], [local.dispatcher.output, local.workers[0].output]
    assert local.workers[0].output.rstrip().endswith("tf.data service worker stopped")
    del iterator


@needs_proc_net
def test_a_worker_whose_dispatcher_is_gone_ends_within_its_stop_timeout(tmp_path):
    # TensorFlow retries a split request to a vanished dispatcher for an hour and waits for it when
    # stopping; --stop-timeout bounds that, and says so in the worker's log.
    port = free_port("127.0.0.3")
    dispatcher = ServerProcess(["dispatcher", "--port", str(port), "--bind", "127.0.0.3"], str(tmp_path / "d.log"))
    worker = ServerProcess(["worker", "--dispatcher", f"127.0.0.3:{port}", "--bind", "127.0.0.3",
                            "--stop-timeout", "5"], str(tmp_path / "w.log"))
    try:
        dispatcher.wait_for("listening on", SERVER_TIMEOUT)
        worker.wait_for("registered with the dispatcher", SERVER_TIMEOUT)
        iterator = _endless_job(f"grpc://127.0.0.3:{port}")
        dispatcher.interrupt()
        assert dispatcher.wait(SERVER_TIMEOUT) == 0
        time.sleep(2)  # the worker's pipeline now asks the stopped dispatcher for splits
        worker.interrupt()
        assert worker.wait(SERVER_TIMEOUT) == 1, worker.output
    finally:
        worker.interrupt()
        dispatcher.interrupt()
        worker.wait(SERVER_TIMEOUT)
        dispatcher.wait(SERVER_TIMEOUT)
    assert "tf.data service worker stopping" in worker.output and "stopped" not in worker.output
    assert "Timeout (0:00:05)!" in (tmp_path / "w.log").read_text()
    del iterator


# --- through two workers --------------------------------------------------------------------------------------

def test_evaluation_through_two_workers_produces_every_video_once(dispatcher_address, indices):
    # A splittable evaluation dataset over the real frames: each video's first flow-x image, decoded.
    _, test = indices
    videos = [entry.video for entry in test]
    table = {"video": videos, "label": [entry.label for entry in test],
             "path": [test.flow_paths(entry, 0)[0] for entry in test]}

    def load(video):
        pixels = tf.io.decode_jpeg(tf.io.read_file(video["path"]), channels=1)
        return video["video"], video["label"], tf.reduce_sum(tf.cast(pixels, tf.int64))

    dataset = tf.data.Dataset.from_tensor_slices(table).map(load).batch(4)
    served = service.distribute_dataset(dataset, dispatcher_address, training=False).unbatch()
    received = [(video.decode(), int(label), int(total)) for video, label, total in served.as_numpy_iterator()]
    expected = [(video.decode(), int(label), int(total)) for video, label, total in dataset.unbatch().as_numpy_iterator()]
    assert collections.Counter(video for video, _, _ in received) == collections.Counter(videos)
    assert sorted(received) == sorted(expected)


@pytest.mark.parametrize("transfer_dtype, tolerance", [("float16", 1e-3), ("bfloat16", 8e-3)])
def test_samples_travel_at_half_width_and_come_back_as_float32_batches(dispatcher_address, transfer_dtype, tolerance):
    values = np.linspace(-1, 1, 255, dtype=np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((values, np.arange(255, dtype=np.int32))).batch(16)
    served = service.distribute_dataset(dataset, dispatcher_address, training=False, transfer_dtype=transfer_dtype,
                                        batch_size=10)
    assert served.element_spec[0].dtype == tf.float32
    batches = list(served.as_numpy_iterator())
    # Single samples travelled; the trainer batched them again: 25 full batches of 10, one of 5.
    assert sorted(len(i) for _, i in batches) == [5] + [10] * 25
    received = sorted((int(i), float(v)) for vs, ids in batches for v, i in zip(vs, ids))
    assert [i for i, _ in received] == list(range(255))
    np.testing.assert_allclose([v for _, v in received], values, rtol=0, atol=tolerance)
    assert any(v != values[i] for i, v in received)  # really narrowed on the way


def test_real_evaluation_pipeline_through_two_workers_produces_every_video_once(dispatcher_address, indices):
    _, test = indices
    local = [(_fingerprint(views), int(label)) for views, label in _test_pipeline(test).unbatch().as_numpy_iterator()]
    served = service.distribute_dataset(_test_pipeline(test), dispatcher_address, training=False).unbatch()
    received = [(_fingerprint(views), int(label)) for views, label in served.as_numpy_iterator()]
    assert len(local) == len(test)
    assert sorted(received) == sorted(local)


def test_training_workers_share_the_epochs_without_duplicating_them(dispatcher_address, indices, caplog):
    # Two epochs, one per worker: together they deliver exactly the stacks of the local pipeline's two epochs
    # (a stack may legitimately repeat between epochs, so multisets are compared, not uniqueness).
    train, _ = indices
    local = collections.Counter(_fingerprint(x) for x, _ in _train_pipeline(train, batch_size=8, repeat=2)
                                .unbatch().as_numpy_iterator())
    with caplog.at_level(logging.WARNING):
        served = service.distribute_dataset(_train_pipeline(train, batch_size=8, repeat=2), dispatcher_address,
                                            training=True)
    received = collections.Counter(_fingerprint(x) for x, _ in served.unbatch().as_numpy_iterator())
    assert sum(local.values()) == 2 * len(train)
    assert received == local
    assert "each batch arrives N times" not in caplog.text


def test_a_source_the_service_cannot_split_is_produced_by_every_worker(dispatcher_address, caplog):
    # What the check in distribute_dataset is for: TensorFlow does not refuse such a source under DYNAMIC.
    with caplog.at_level(logging.WARNING):
        served = service.distribute_dataset(tf.data.Dataset.random(seed=7).take(3), dispatcher_address, training=True)
    assert "starts from tf.data.Dataset.random" in caplog.text and "each batch arrives N times" in caplog.text
    values = collections.Counter(int(v) for v in served.as_numpy_iterator())
    assert sorted(values.values()) == [2, 2, 2]  # two workers, each with the whole dataset


def _flow_classifier():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 2 * STACK_LENGTH)),
        keras.layers.Conv2D(16, 5, strides=2, activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(8, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _video_accuracy(model, index):
    # The test protocol: softmax averaged over each video's 3 snippets, read locally.
    views, labels = zip(*_test_pipeline(index).as_numpy_iterator())
    views, labels = np.concatenate(views), np.concatenate(labels)
    scores = model.predict(views.reshape(-1, *views.shape[2:]), verbose=0).reshape(*views.shape[:2], -1)
    return float(np.mean(scores.mean(axis=1).argmax(axis=-1) == labels))


def test_training_through_the_service_reaches_the_local_accuracy(dispatcher_address, indices):
    train, test = indices
    accuracy = {}
    for where in ("local", "service"):
        data = _train_pipeline(train)
        if where == "service":
            data = service.distribute_dataset(data, dispatcher_address, training=True)
        model = _flow_classifier()
        model.fit(data, steps_per_epoch=40, epochs=6, verbose=0)
        accuracy[where] = _video_accuracy(model, test)
    # 8 classes: chance is 0.125; both runs learn the motions (about 0.4 here), within a band of each other.
    assert accuracy["local"] >= 0.25 and accuracy["service"] >= 0.25, accuracy
    assert abs(accuracy["local"] - accuracy["service"]) <= 0.25, accuracy
