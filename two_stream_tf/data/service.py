"""Moving an input pipeline onto tf.data service workers, so decoding runs on other machines.

A tf.data service is one dispatcher and any number of workers (`two-stream data-service dispatcher …` and
`two-stream data-service worker …`, or `start_dispatcher` / `start_worker` in a Python process). The
trainer builds its pipeline as usual and hands it to `distribute_dataset`; the pipeline's graph is sent to
the dispatcher, every worker runs it (reading the frames from its own view of the file system) and the
trainer only receives finished batches over gRPC:

    dataset = temporal_dataset(train_index, training=True, batch_size=32, strict=True, repeat=True)
    dataset = distribute_dataset(dataset, "grpc://dispatcher-host:5050", training=True)
    model.fit(dataset, steps_per_epoch=300, epochs=80)

How the work is shared — `ShardingPolicy.DYNAMIC` ("distributed_epoch") for training and evaluation,
checked against the `tf.data.experimental.service.distribute` / `ShardingPolicy` documentation of
TensorFlow 2.21 and against what two workers on 127.0.0.1 actually return (tests/test_service.py):

* DYNAMIC: the dispatcher hands out the pipeline's *source* elements one split at a time to whichever
  worker asks next, and the worker runs the rest of the pipeline on them. Every source element is
  processed by one worker: *at most once* — a worker that restarts mid-job loses the splits it held —
  hence exactly once when no worker fails. Workers may join or leave at any time (a pool of preemptible
  CPU machines). It needs a splittable source (`Dataset.from_tensor_slices`, `range`, `list_files`).
* Evaluation (training=False): with the videos as the source, every video is scored exactly once. The
  elements arrive in no fixed order and each worker batches its own share, so the last batch of every
  worker may be short: count videos, not batches. Pass a finite pipeline (`repeat=None`).
* Training (training=True): why not `ShardingPolicy.OFF` ("parallel_epochs", every worker runs the whole
  pipeline)? OFF relies on each worker drawing its own random numbers. This project's pipelines draw
  none at run time: every random choice is a stateless function of (seed, epoch key, video), and the
  seed is fixed when the pipeline is built (`seed=None` draws one then), so under OFF every worker
  would produce the *same* batches and N workers would deliver each batch N times. Under DYNAMIC each
  split (an epoch, or a video) goes to one worker, so workers never duplicate each other and the run
  stays reproducible for a given seed. One pass of a finite training pipeline is split between the
  workers; train on a repeated pipeline (`repeat=True`) with `steps_per_epoch`.
* A source that tf.data service cannot split, such as `tf.data.Dataset.random`, is not rejected by
  TensorFlow: every worker then produces the whole dataset (verified). `distribute_dataset` checks for
  it: an error for evaluation (videos would be counted several times), a warning for training (each
  batch would arrive once per worker).

The static policies (`FILE_OR_DATA`, `DATA`) would also give exactly once, but they need the dispatcher
configured with a fixed list of workers and each trainer reading only from a worker on its own host,
which does not fit a pool of CPU machines serving GPU machines.

Several trainer processes (`MultiWorkerMirroredStrategy`) that should split one stream of data between
them pass the same `job_name`; without one, each trainer gets its own job (in evaluation: each trainer
would see every video). A job name must not be reused by another training run on the same service.

The service has no authentication: whoever reaches a server's port can have it run any dataset graph,
reading and writing files as the server's user. `start_dispatcher` and `start_worker` therefore listen
on 127.0.0.1 unless `bind` names another address of the machine (a private network's interface) or "*"
(every interface); TensorFlow itself offers no such option, see `two_stream_tf.listen_address`.

Workers run the pipeline's *graph* in another process: a pipeline that calls Python
(`tf.py_function`, `tf.numpy_function`) cannot run there, which `distribute_dataset` checks up front.
The pipelines' default handling of corrupt JPEGs (skip, count and name them) calls Python; build
pipelines for the service with `strict=True` (a corrupt JPEG then stops with an error naming the file).
Training pipelines hold the compiled view ops (`two_stream_tf.data.native`) where they build;
`start_dispatcher` and `start_worker` load them, so every service process knows them. Where a worker
cannot compile them, build the trainer's pipeline with `TWO_STREAM_TF_NATIVE=0` (TensorFlow ops only).
"""
import logging

import tensorflow as tf

from two_stream_tf.addresses import GRPC, parse_address
from two_stream_tf.data import native
from two_stream_tf.errors import UserError
from two_stream_tf.listen_address import LOOPBACK, check_listening, listening_on, parse_bind_address

POLICY = tf.data.experimental.service.ShardingPolicy.DYNAMIC

# Ops that call back into the Python interpreter that built the graph; it does not exist on a worker.
_PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# Sources tf.data service cannot split: under DYNAMIC every worker produces all of their elements.
_UNSPLITTABLE_SOURCES = {"RandomDataset": "tf.data.Dataset.random", "RandomDatasetV2": "tf.data.Dataset.random"}


def service_target(address):
    """The dispatcher address as `distribute` takes it: `grpc://HOST:PORT` from `[grpc://]HOST:PORT`."""
    host, port = parse_address(address, "tf.data service address")
    return f"{GRPC}://{host}:{port}"


class _Graph:
    """The ops of a dataset's serialized graph (what `distribute` sends to the dispatcher), by function."""

    def __init__(self, dataset):
        graph = tf.compat.v1.GraphDef()
        # Private but long-standing: the same serialization `distribute` itself uses.
        graph.ParseFromString(dataset._as_serialized_graph().numpy())  # pylint: disable=protected-access
        self.nodes = [("the dataset graph", node.op) for node in graph.node]
        self.nodes += [(function.signature.name, node.op) for function in graph.library.function
                       for node in function.node_def]

    def find(self, ops):
        return sorted({f"{op} in {where}" for where, op in self.nodes if op in ops})


def python_ops(dataset):
    """The ops of a dataset that call Python (`tf.py_function` / `tf.numpy_function`), as "op in function"."""
    return _Graph(dataset).find(_PYTHON_OPS)


def unsplittable_sources(dataset):
    """The API names of the dataset's sources that tf.data service cannot split between workers."""
    graph = _Graph(dataset)
    return sorted({_UNSPLITTABLE_SOURCES[op] for _, op in graph.nodes if op in _UNSPLITTABLE_SOURCES})


def check_serializable(dataset, what="the input pipeline"):
    """Raises `UserError` if a dataset cannot run on tf.data service workers because it calls Python.

    Args:
      dataset: a `tf.data.Dataset`.
      what: how to name the dataset in the message.
    """
    found = python_ops(dataset)
    if found:
        raise UserError(
            f"{what} calls Python ({'; '.join(found)}: tf.py_function or tf.numpy_function), so it cannot run "
            "on tf.data service workers: they execute the pipeline's graph in another process, where that Python "
            "code does not exist. For this project's pipelines pass strict=True (skipping and counting corrupt "
            "JPEGs is what calls Python); otherwise express those steps with TensorFlow ops, or read the data "
            "locally (no tf.data service).")


TRANSFER_DTYPES = (None, "float16", "bfloat16")


def _cast_floats(element, dtypes):
    """Casts the floating tensors of an element (any structure) to the dtypes in `dtypes` (same structure)."""
    return tf.nest.map_structure(lambda tensor, dtype: tf.cast(tensor, dtype) if tensor.dtype.is_floating else tensor,
                                 element, dtypes)


def _map_element(dataset, function):
    # Elements may be tuples (x, label): map passes them as separate arguments. Plain TensorFlow code,
    # no AutoGraph needed.
    @tf.autograph.experimental.do_not_convert
    def apply(*parts):
        return function(parts if len(parts) > 1 else parts[0])

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def distribute_dataset(dataset, service, *, training, job_name=None, batch_size=None, transfer_dtype=None,
                       compression="AUTO"):
    """Runs a dataset on tf.data service workers; returns the dataset that reads from them.

    Uses `ShardingPolicy.DYNAMIC` (see the module docstring for why, and what it guarantees).
    Transformations applied to the returned dataset run locally in the trainer; everything before runs
    on the workers.

    Args:
      dataset: the input pipeline, e.g. from `spatial_dataset` / `temporal_dataset` /
        `two_stream_dataset` built with `strict=True`; for training with `repeat=True`, for evaluation
        with `repeat=None`.
      service: the dispatcher, `grpc://HOST:PORT` or `HOST:PORT`.
      training: True: a training pipeline (endless or not; a source it cannot split draws a warning).
        False: an evaluation pipeline, which must be finite and splittable, so that every video is
        produced exactly once (at most once if a worker fails mid-job).
      job_name: share one job (one stream of data) between the trainer processes that pass the same name,
        e.g. the workers of `MultiWorkerMirroredStrategy`. None: a job per trainer.
      batch_size: None: send the pipeline's elements (batches) as they are. The pipeline's batch size:
        workers send single samples and the trainer batches them again — messages of a few MB instead of
        a whole batch of float stacks (128 MB for 32 flow stacks of 224×224×20), which tf.data service
        moves far faster (see benchmarks/README.md). Evaluation batches then fill up across workers, so
        only the last one is short.
      transfer_dtype: None (send float tensors as they are), or "float16" / "bfloat16": workers send
        floating tensors at half the bytes and the trainer casts them back to their dtype. The inputs come
        from 8-bit JPEGs, so float16's 11-bit precision loses nothing that matters.
      compression: "AUTO" (TensorFlow's default: workers compress elements with Snappy) or None (send
        raw tensors).

    Returns:
      A `tf.data.Dataset` with the same `element_spec`.

    Raises:
      UserError: a malformed service address or job name; a pipeline that calls Python; an evaluation
        pipeline whose source tf.data service cannot split, or that repeats forever (when TensorFlow can
        tell: `cardinality()` is infinite).
    """
    target = service_target(service)
    if job_name is not None and not str(job_name).strip():
        raise UserError("job_name must be a non-empty string or None")
    if transfer_dtype not in TRANSFER_DTYPES:
        raise UserError(f"transfer_dtype {transfer_dtype!r} is not one of {TRANSFER_DTYPES}")
    if batch_size is not None and int(batch_size) < 1:
        raise UserError(f"batch_size must be a positive number of samples or None, not {batch_size!r}")
    check_serializable(dataset)
    unsplittable = unsplittable_sources(dataset)
    if not training:
        if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise UserError("the evaluation pipeline repeats forever; build it with repeat=None so that "
                            "the tf.data service job ends after every video was produced once")
        if unsplittable:
            raise UserError(
                f"the evaluation pipeline starts from {', '.join(unsplittable)}, which tf.data service cannot split "
                "between workers: every worker would produce every video, so each would be scored once per "
                "worker. Its source must be the videos (e.g. Dataset.from_tensor_slices); evaluate locally "
                "(no tf.data service) meanwhile.")
    elif unsplittable:
        logging.warning(
            "the training pipeline starts from %s, which tf.data service cannot split between workers: every "
            "worker produces the same batches, so with N workers each batch arrives N times.",
            ", ".join(unsplittable))
    dtypes = tf.nest.map_structure(lambda spec: spec.dtype, dataset.element_spec)
    if transfer_dtype:
        narrow = tf.nest.map_structure(lambda dtype: tf.as_dtype(transfer_dtype) if dtype.is_floating else dtype, dtypes)
        dataset = _map_element(dataset, lambda element: _cast_floats(element, narrow))
    if batch_size:
        dataset = dataset.unbatch()
    distributed = dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=POLICY, service=target, job_name=job_name, compression=compression))
    if batch_size:
        distributed = distributed.batch(int(batch_size))
    if transfer_dtype:
        distributed = _map_element(distributed, lambda element: _cast_floats(element, dtypes))
    if batch_size or transfer_dtype:
        distributed = distributed.prefetch(tf.data.AUTOTUNE)  # the trainer-side steps overlap with training
    return distributed


def start_dispatcher(port=0, work_dir=None, job_gc_timeout=None, bind=LOOPBACK):
    """Starts a tf.data service dispatcher in this process (it serves until the process ends).

    Args:
      port: port to listen on; 0 picks a free one (read it from `server.target`).
      work_dir: folder (shared storage on a cluster) where the dispatcher journals its state, so that a
        restarted dispatcher resumes its registered datasets and jobs; None keeps the state in memory.
      job_gc_timeout: seconds after its last reader left that a job is removed (None: TensorFlow's
        default, minutes). Until then its workers keep producing into their buffers — whole batches of
        float stacks add up to gigabytes when many short-lived jobs come and go, as in a benchmark.
      bind: the IP address to listen on: "127.0.0.1" (default: this machine only), an address of a
        private interface, or "*" for every interface. The service has no authentication: whoever
        reaches the port can run any dataset graph on the servers (see docs/scaling.md).

    Returns:
      The `tf.data.experimental.service.DispatchServer`.

    Raises:
      UserError: a bad `bind` address, or the server could not start (or listen there).
    """
    bind = parse_bind_address(bind, "bind address")
    gc = {}
    if job_gc_timeout is not None:
        timeout_ms = max(1, int(1000 * job_gc_timeout))
        gc = dict(job_gc_timeout_ms=timeout_ms, job_gc_check_interval_ms=max(1, timeout_ms // 2))
    native.load()  # the pipelines' custom ops, which the graphs it receives may hold
    config = tf.data.experimental.service.DispatcherConfig(
        port=int(port), work_dir=work_dir, fault_tolerant_mode=work_dir is not None, **gc)
    return _start(tf.data.experimental.service.DispatchServer, config, "dispatcher", bind, port)


def start_worker(dispatcher, port=0, host=None, bind=LOOPBACK):
    """Starts a tf.data service worker in this process and registers it with a dispatcher.

    Args:
      dispatcher: the dispatcher, `[grpc://]HOST:PORT`.
      port: port to serve on; 0 picks a free one.
      host: the name or address of this machine as trainers reach it; the dispatcher hands it to them.
        None: the `bind` address, or "localhost" when `bind` is "*".
      bind: the IP address to listen on, as for `start_dispatcher` (default "127.0.0.1").

    Returns:
      The `tf.data.experimental.service.WorkerServer`.

    Raises:
      UserError: a bad dispatcher or `bind` address, or the server could not start (or listen there).
    """
    host_name, dispatcher_port = parse_address(dispatcher, "dispatcher address")
    bind = parse_bind_address(bind, "bind address")
    if host is None:
        host = "localhost" if bind == "*" else (f"[{bind}]" if ":" in bind else bind)
    native.load()  # the pipelines' custom ops, which the graphs it runs may hold
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=f"{host_name}:{dispatcher_port}", worker_address=f"{host}:%port%", port=int(port),
        data_transfer_address=f"{host}:%dts_port%")
    return _start(tf.data.experimental.service.WorkerServer, config, "worker", bind, port)


def bound_port(server):
    """The port a `DispatchServer` or `WorkerServer` listens on."""
    if isinstance(server, tf.data.experimental.service.DispatchServer):
        address = server.target
    else:  # a WorkerServer publishes its port only as its private `_address` ("localhost:PORT")
        address = server._address  # pylint: disable=protected-access
    return int(address.rsplit(":", 1)[1])


def _start(server_class, config, what, bind, port):
    try:
        with listening_on(bind):
            server = server_class(config)
    except (tf.errors.OpError, RuntimeError) as error:
        message = getattr(error, "message", str(error))
        where = "every interface" if bind == "*" else bind
        hint = "is the port free?" if bind == "*" else f"is {bind} an address of this machine, and the port free?"
        raise UserError(f"cannot start the tf.data service {what} on {where}, port {port}: {message} ({hint})") from None
    try:
        check_listening(bound_port(server), bind, f"tf.data service {what}")
    except UserError:
        server.stop()
        raise
    return server
