"""Moving an input pipeline onto tf.data service workers, so decoding runs on other machines.

A tf.data service is one dispatcher and any number of workers (`two-stream data-service dispatcher …` and
`two-stream data-service worker …`, or `start_dispatcher` / `start_worker` in a Python process). The
trainer builds its pipeline as usual and hands it to `distribute_dataset`; the pipeline's graph is sent to
the dispatcher, every worker runs it (reading the frames from its own view of the file system) and the
trainer only receives finished batches over gRPC:

    dataset = temporal_dataset(train_index, training=True, batch_size=32, seed=None, repeat=True)
    dataset = distribute_dataset(dataset, "grpc://dispatcher-host:5050", training=True)
    model.fit(dataset, steps_per_epoch=300, epochs=80)

How the work is shared (checked against the `tf.data.experimental.service.distribute` and `ShardingPolicy`
documentation of TensorFlow 2.21):

* training=True uses `ShardingPolicy.OFF` ("parallel_epochs"): every worker runs the *whole* pipeline
  independently and the trainer takes batches from whichever worker has one ready. Training samples
  random snippets, crops and flips anyway, so several workers drawing independently is what we want,
  workers may join or restart at any time, and no sharding constraint falls on the pipeline. What it
  requires: the random choices must differ between workers. Build the training pipeline with
  `seed=None` — with a fixed seed every worker produces the same batches in the same order, so N workers
  deliver each batch N times. One pass of a finite pipeline through N workers is N passes; train on a
  repeated pipeline with `steps_per_epoch`.
* training=False uses `ShardingPolicy.DYNAMIC` ("distributed_epoch"): the dispatcher hands out the
  pipeline's source elements (videos) one split at a time to whichever worker asks next, so every video
  is produced by exactly one worker. TensorFlow guarantees *at most once* — a worker that restarts
  mid-job loses the videos it held — hence exactly once when no worker fails. Pass a finite pipeline
  (`repeat=None`). Elements arrive in no fixed order and each worker batches its own share, so the last
  batch of every worker may be short: count videos, not batches. The pipeline's source must be
  splittable (`Dataset.from_tensor_slices`, `range`, `list_files`), which ours is. The static policies
  (`FILE_OR_DATA`, `DATA`) would also give exactly once, but they need the dispatcher configured with a
  fixed list of workers and each trainer reading only from a worker on its own host, which does not fit
  a pool of CPU machines serving GPU machines.

Several trainer processes (`MultiWorkerMirroredStrategy`) that should split one stream of data between
them pass the same `job_name`; without one, each trainer gets its own job (in evaluation: each trainer
would see every video). A job name must not be reused by another training run on the same service.

Workers run the pipeline's *graph* in another process: a pipeline that calls Python
(`tf.py_function`, `tf.numpy_function`) cannot run there, which `distribute_dataset` checks up front.
"""
import tensorflow as tf

from two_stream_tf.addresses import GRPC, parse_address
from two_stream_tf.errors import UserError

TRAINING_POLICY = tf.data.experimental.service.ShardingPolicy.OFF
EVALUATION_POLICY = tf.data.experimental.service.ShardingPolicy.DYNAMIC

# Ops that call back into the Python interpreter that built the graph; it does not exist on a worker.
_PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def service_target(address):
    """The dispatcher address as `distribute` takes it: `grpc://HOST:PORT` from `[grpc://]HOST:PORT`."""
    host, port = parse_address(address, "tf.data service address")
    return f"{GRPC}://{host}:{port}"


def sharding_policy(training):
    """`ShardingPolicy.OFF` for training, `ShardingPolicy.DYNAMIC` for evaluation (see the module docstring)."""
    return TRAINING_POLICY if training else EVALUATION_POLICY


def python_ops(dataset):
    """Names of the ops in a dataset's graph that call Python, as `"op in function"` strings (empty if none).

    Looks through the dataset's serialized graph, including the functions of its `map`s, `filter`s and
    `interleave`s, for `tf.py_function` / `tf.numpy_function` ops.
    """
    graph = tf.compat.v1.GraphDef()
    # Private but long-standing: the same serialization `distribute` sends to the dispatcher.
    graph.ParseFromString(dataset._as_serialized_graph().numpy())  # pylint: disable=protected-access
    found = [f"{node.op} in the dataset graph" for node in graph.node if node.op in _PYTHON_OPS]
    for function in graph.library.function:
        found += [f"{node.op} in {function.signature.name}" for node in function.node_def if node.op in _PYTHON_OPS]
    return found


def check_serializable(dataset, what="the input pipeline"):
    """Raises `UserError` if a dataset cannot run on tf.data service workers because it calls Python.

    Args:
      dataset: a `tf.data.Dataset`.
      what: how to name the dataset in the message.
    """
    found = python_ops(dataset)
    if found:
        raise UserError(
            f"{what} calls Python ({', '.join(found)}: tf.py_function or tf.numpy_function), so it cannot run "
            "on tf.data service workers: they execute the pipeline's graph in another process, where that Python "
            "code does not exist. Express those steps with TensorFlow ops, or read the data locally "
            "(no tf.data service).")


def distribute_dataset(dataset, service, *, training, job_name=None, compression="AUTO"):
    """Runs a dataset on tf.data service workers; returns the dataset that reads from them.

    Transformations applied to the returned dataset run locally in the trainer; everything before runs
    on the workers.

    Args:
      dataset: the input pipeline, e.g. from `spatial_dataset` / `temporal_dataset` / `two_stream_dataset`.
        Training pipelines should be built with `seed=None` and `repeat=True`; evaluation pipelines with
        `repeat=None` (see the module docstring).
      service: the dispatcher, `grpc://HOST:PORT` or `HOST:PORT`.
      training: True: every worker runs the whole pipeline with its own random draws
        (`ShardingPolicy.OFF`). False: the videos are split between the workers so that each is produced
        exactly once (`ShardingPolicy.DYNAMIC`; at most once if a worker fails mid-job).
      job_name: share one job (one stream of data) between the trainer processes that pass the same name,
        e.g. the workers of `MultiWorkerMirroredStrategy`. None: a job per trainer.
      compression: "AUTO" (workers compress elements with Snappy when it helps) or None (send raw
        tensors: less CPU, more network).

    Returns:
      A `tf.data.Dataset` with the same `element_spec`.

    Raises:
      UserError: a malformed service address, or a pipeline that calls Python (cannot run on workers).
    """
    target = service_target(service)
    check_serializable(dataset)
    if job_name is not None and not str(job_name).strip():
        raise UserError("job_name must be a non-empty string or None")
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=sharding_policy(training), service=target, job_name=job_name, compression=compression))


def start_dispatcher(port=0, work_dir=None):
    """Starts a tf.data service dispatcher in this process (it serves until the process ends).

    Args:
      port: port to listen on; 0 picks a free one (read it from `server.target`).
      work_dir: folder (shared storage on a cluster) where the dispatcher journals its state, so that a
        restarted dispatcher resumes its registered datasets and jobs; None keeps the state in memory.

    Returns:
      The `tf.data.experimental.service.DispatchServer`.
    """
    config = tf.data.experimental.service.DispatcherConfig(
        port=int(port), work_dir=work_dir, fault_tolerant_mode=work_dir is not None)
    return _start(tf.data.experimental.service.DispatchServer, config, f"dispatcher on port {port}")


def start_worker(dispatcher, port=0, host="localhost"):
    """Starts a tf.data service worker in this process and registers it with a dispatcher.

    Args:
      dispatcher: the dispatcher, `[grpc://]HOST:PORT`.
      port: port to serve on; 0 picks a free one.
      host: the name or address of this machine as trainers reach it; the dispatcher hands it to them.

    Returns:
      The `tf.data.experimental.service.WorkerServer`.
    """
    host_name, dispatcher_port = parse_address(dispatcher, "dispatcher address")
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=f"{host_name}:{dispatcher_port}", worker_address=f"{host}:%port%", port=int(port),
        data_transfer_address=f"{host}:%dts_port%")
    return _start(tf.data.experimental.service.WorkerServer, config, f"worker on port {port}")


def _start(server_class, config, what):
    try:
        return server_class(config)
    except (tf.errors.OpError, RuntimeError) as error:
        message = getattr(error, "message", str(error))
        raise UserError(f"cannot start the tf.data service {what}: {message}") from None
