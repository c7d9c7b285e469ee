"""`tf.distribute` strategies by name, and which worker writes the results.

Names: "auto" (TPU if one is reachable, else all GPUs with `MirroredStrategy` when there are several,
else the one GPU or the CPU), "one_device", "mirrored" (all GPUs, or all logical CPU devices when there
is no GPU — that is how it is tested on CPU), "multi_worker" (`MultiWorkerMirroredStrategy`, cluster from
the `TF_CONFIG` environment variable) and "tpu".

With any strategy, the batch size given to training is the global batch: the input pipelines split it
across replicas through `strategy.distribute_datasets_from_function`.
"""
import ipaddress
import json
import os
import tempfile

import tensorflow as tf

from two_stream_tf.errors import UserError
from two_stream_tf.listen_address import listening_on

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` that Keras 3's `model.fit` can drive with several workers.

    Keras 3 (keras-team/keras#20585, tensorflow/tensorflow#72388, open) calls `strategy.reduce` in two ways
    TensorFlow's multi-worker reduce rejects: with a nested structure (the first data batch, reduced only to
    learn its shapes) and with `axis=0` on scalar per-replica values (the loss and metric logs). With one
    worker both go through a shortcut, so the bug shows only on a real cluster. This subclass reduces each
    element of a nest separately and reduces scalars across replicas only; everything else is unchanged.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(item):
            local = self.experimental_local_results(item)[0]
            scalar = getattr(getattr(local, "shape", None), "rank", None) == 0
            return parent.reduce(reduce_op, item, None if scalar else axis)

        return tf.nest.map_structure(reduce_one, value)


def split_cpu(num_devices):
    """Splits the host CPU into `num_devices` logical devices (e.g. to run `MirroredStrategy` on CPU).

    Must run before TensorFlow initialises its devices (before the first op or strategy).

    Raises:
      UserError: TensorFlow's devices are already initialised with another split.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(int(num_devices))])
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) != int(num_devices):
            raise UserError(f"cannot split the CPU into {num_devices} devices: TensorFlow is already "
                            f"initialised ({error})") from None


def _tf_config():
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as error:
        raise UserError(f"the TF_CONFIG environment variable is not valid JSON: {error}") from None


def _own_address(config):
    """Where this task's collective-ops server listens: the IP address its TF_CONFIG entry names
    (127.0.0.1 for localhost), or "*" (every interface, TensorFlow's default) for a host name, which peers may
    resolve differently than this machine does."""
    task = config.get("task", {})
    try:
        host = str(config["cluster"][task["type"]][int(task["index"])]).rsplit(":", 1)[0].strip("[]")
    except (KeyError, IndexError, TypeError, ValueError):
        return "*"
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "*"


def _cluster_workers(config):
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _tpu_strategy(address):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise UserError(f"strategy 'tpu': no TPU reachable{f' at {address!r}' if address else ''} ({error})") from None
    return tf.distribute.TPUStrategy(resolver)


def _tpu_available(address):
    # Only look for a TPU when something says there is one: probing the metadata server elsewhere is slow.
    return bool(address or os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
                or tf.config.list_logical_devices("TPU"))


def resolve_name(name="auto", tpu_address=None):
    """The concrete strategy name "auto" stands for on this machine (other names are returned as is)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; one of {', '.join(STRATEGIES)}")
    if name != "auto":
        return name
    if _tpu_available(tpu_address):
        return "tpu"
    if _cluster_workers(_tf_config()) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "one_device"


def create_strategy(name="auto", tpu_address=None):
    """A `tf.distribute.Strategy` by name (see the module docstring).

    Args:
      name: one of `STRATEGIES`.
      tpu_address: TPU name or grpc address for "tpu" (None: the environment's, e.g. Colab's).

    Returns:
      The strategy; `strategy.num_replicas_in_sync` tells how the global batch is split.

    Raises:
      UserError: unknown name, "multi_worker" without a TF_CONFIG cluster, "tpu" without a TPU.
    """
    name = resolve_name(name, tpu_address)
    if name == "tpu":
        return _tpu_strategy(tpu_address)
    if name == "multi_worker":
        config = _tf_config()
        if not config.get("cluster") or "task" not in config:
            raise UserError("strategy 'multi_worker' needs the TF_CONFIG environment variable with "
                            "'cluster' and 'task' (see tf.distribute.MultiWorkerMirroredStrategy)")
        # TensorFlow's collective-ops server would listen on every interface, unauthenticated.
        with listening_on(_own_address(config), required=False):
            return MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1:
            return tf.distribute.MirroredStrategy(devices)
        # Ring all-reduce needs NCCL (GPUs only); on CPU devices reduce through the host.
        cross_device_ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def task_info(strategy):
    """`(task_type, task_id)` of this process in a multi-worker cluster; `(None, None)` otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True for the process that writes results: the only one, or the chief / worker 0 of a cluster."""
    task_type, task_id = task_info(strategy)
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in strategy.cluster_resolver.cluster_spec().as_dict())


def write_dir(model_dir, strategy):
    """Where this process writes: `model_dir` on the chief, a private temporary folder on other workers.

    Every worker of `MultiWorkerMirroredStrategy` must save (saving may read variables collectively),
    but only the chief's files are kept; the other workers write to throw-away folders.
    """
    if is_chief(strategy):
        return model_dir
    task_type, task_id = task_info(strategy)
    return tempfile.mkdtemp(prefix=f"two_stream_{task_type}_{task_id}_")
