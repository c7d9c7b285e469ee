"""TF_CONFIG for multi-worker training: from a list of hosts, or from the environment SLURM gives a task.

`MultiWorkerMirroredStrategy` (strategy "multi_worker" in `two_stream_tf.training.strategy`) learns the
cluster from the `TF_CONFIG` environment variable: the address of every worker and which one this process
is. Every process of a run gets the same worker list and its own index; worker 0 is the chief (writes
checkpoints and logs).

    config = tf_config(["node01:23456", "node02:23456"], task_index=1)
    os.environ["TF_CONFIG"] = json.dumps(config)

Under SLURM, `slurm_tf_config()` builds it inside each task of `srun` from `SLURM_STEP_NODELIST` (or
`SLURM_JOB_NODELIST`), the tasks per node and `SLURM_PROCID`: one worker per task, tasks of a node on
consecutive ports. (TensorFlow's own `SlurmClusterResolver` does the same for a strategy object; this
module writes the plain TF_CONFIG that every entry point of this project, and any other TensorFlow
program, reads.)
"""
import os
import re

from two_stream_tf.addresses import parse_address
from two_stream_tf.errors import UserError

DEFAULT_PORT = 23456
TASK_TYPES = ("worker", "chief")

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_TASK_COUNT = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def tf_config(hosts, task_index, task_type="worker"):
    """The TF_CONFIG dict of one process of a cluster of workers.

    Args:
      hosts: the workers' `HOST:PORT` addresses, the same list in the same order for every process.
      task_index: this process's position in `hosts` (0-based; worker 0 is the chief).
      task_type: "worker" (the usual; `MultiWorkerMirroredStrategy` treats worker 0 as chief).

    Returns:
      `{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}` (`json.dumps` it into the
      TF_CONFIG environment variable).

    Raises:
      UserError: an address that is not HOST:PORT, the same address twice, or an index outside the list.
    """
    hosts = [str(host).strip() for host in hosts]
    if not hosts:
        raise UserError("TF_CONFIG needs at least one worker address (HOST:PORT)")
    seen = {}
    for position, host in enumerate(hosts):
        parse_address(host, f"worker address #{position}")
        if host in seen:
            raise UserError(f"worker address {host!r} is listed twice (#{seen[host]} and #{position}); "
                            "workers on one host need different ports")
        seen[host] = position
    if task_type not in TASK_TYPES:
        raise UserError(f"task type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    try:
        task_index = int(task_index)
    except (TypeError, ValueError):
        raise UserError(f"task index {task_index!r} is not a whole number") from None
    if not 0 <= task_index < len(hosts):
        raise UserError(f"task index {task_index} is outside 0..{len(hosts) - 1} ({len(hosts)} worker addresses)")
    return {"cluster": {"worker": hosts}, "task": {"type": task_type, "index": task_index}}


def _split_top_level(text):
    # Commas separate host expressions, except inside brackets: "a[1,3],b" → "a[1,3]", "b".
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return parts


def _expand_ranges(body, nodelist):
    # "01-03,07" → ["01", "02", "03", "07"], keeping each range's zero padding.
    numbers = []
    for item in body.split(","):
        match = _RANGE.match(item.strip())
        if not match:
            raise UserError(f"SLURM node list {nodelist!r}: {item!r} is not a number or a range like 01-03")
        first, last = match[1], match[2] or match[1]
        if int(last) < int(first):
            raise UserError(f"SLURM node list {nodelist!r}: the range {item!r} runs backwards")
        width = len(first) if first.startswith("0") else 0
        numbers += [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    return numbers


def _expand_host(expression, nodelist):
    # A host expression may hold several bracket groups ("rack[1-2]-node[01-02]"): expand them left to right.
    open_at = expression.find("[")
    if open_at < 0:
        if "]" in expression:
            raise UserError(f"SLURM node list {nodelist!r}: unmatched ']' in {expression!r}")
        return [expression]
    close_at = expression.find("]", open_at)
    if close_at < 0:
        raise UserError(f"SLURM node list {nodelist!r}: unmatched '[' in {expression!r}")
    head, body, tail = expression[:open_at], expression[open_at + 1:close_at], expression[close_at + 1:]
    return [head + number + rest for number in _expand_ranges(body, nodelist)
            for rest in _expand_host(tail, nodelist)]


def expand_nodelist(nodelist):
    """Expands a SLURM host list into host names, in SLURM's order.

    Args:
      nodelist: e.g. "node[01-03,07]", "gpu-a[1-2],gpu-b5", "rack[1-2]-n[01-02]" or "node07".

    Returns:
      A list of host names, e.g. ["node01", "node02", "node03", "node07"]. Zero padding of a range is kept.

    Raises:
      UserError: unmatched brackets, a range that is not numeric or runs backwards, an empty list.
    """
    text = str(nodelist or "").strip()
    if not text:
        raise UserError("the SLURM node list is empty")
    hosts = []
    for expression in _split_top_level(text):
        expression = expression.strip()
        if not expression:
            raise UserError(f"SLURM node list {nodelist!r} has an empty entry")
        hosts += _expand_host(expression, nodelist)
    return hosts


def expand_tasks_per_node(text, num_nodes):
    """Expands SLURM's tasks-per-node notation ("2(x3),1" = 2, 2, 2, 1) into one count per node.

    Args:
      text: `SLURM_STEP_TASKS_PER_NODE` / `SLURM_TASKS_PER_NODE`.
      num_nodes: how many nodes the node list has (the counts must cover exactly these).

    Raises:
      UserError: malformed text, or counts for another number of nodes.
    """
    counts = []
    for item in str(text).split(","):
        match = _TASK_COUNT.match(item.strip())
        if not match:
            raise UserError(f"SLURM tasks per node {text!r}: {item!r} is not N or N(xM)")
        counts += [int(match[1])] * int(match[2] or 1)
    if len(counts) != num_nodes:
        raise UserError(f"SLURM tasks per node {text!r} gives {len(counts)} nodes, but the node list has {num_nodes}")
    return counts


def _slurm_variable(environ, *names):
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def slurm_hosts(environ=None, port=DEFAULT_PORT):
    """The worker addresses and this task's index under SLURM (inside a task started by `srun`).

    One worker per SLURM task: the nodes of `SLURM_STEP_NODELIST` (else `SLURM_JOB_NODELIST`,
    `SLURM_NODELIST`), each with as many workers as it runs tasks (`SLURM_STEP_TASKS_PER_NODE` /
    `SLURM_TASKS_PER_NODE`; one per node if unset) on ports `port`, `port + 1`, …; this task is number
    `SLURM_PROCID`. Tasks are numbered node by node (SLURM's default block distribution); when
    `SLURMD_NODENAME` is set it is checked against the host the numbering gives.

    Args:
      environ: the environment (None: `os.environ`).
      port: port of each node's first worker.

    Returns:
      `(hosts, task_index)`: a list of `HOST:PORT` and this task's index in it.

    Raises:
      UserError: not inside a SLURM task, malformed variables, or a task numbering that is not node by node.
    """
    environ = os.environ if environ is None else environ
    nodelist = _slurm_variable(environ, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    procid = environ.get("SLURM_PROCID")
    if nodelist is None or procid is None:
        raise UserError("not inside a SLURM task: SLURM_JOB_NODELIST and SLURM_PROCID are not set "
                        "(run this under srun, or give the worker addresses explicitly)")
    nodes = expand_nodelist(nodelist)
    per_node = _slurm_variable(environ, "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    counts = expand_tasks_per_node(per_node, len(nodes)) if per_node else [1] * len(nodes)
    if port + max(counts) - 1 > 65535:
        raise UserError(f"port {port} + {max(counts)} tasks per node runs past 65535")
    hosts = [f"{node}:{port + local}" for node, count in zip(nodes, counts) for local in range(count)]
    try:
        task_index = int(procid)
    except ValueError:
        raise UserError(f"SLURM_PROCID {procid!r} is not a whole number") from None
    if not 0 <= task_index < len(hosts):
        raise UserError(f"SLURM_PROCID {task_index} is outside 0..{len(hosts) - 1}: node list {nodelist!r} with "
                        f"tasks per node {per_node or '1'} gives {len(hosts)} tasks")
    node_name = environ.get("SLURMD_NODENAME")
    expected = hosts[task_index].rsplit(":", 1)[0]
    if node_name and node_name != expected:
        raise UserError(f"SLURM task {task_index} runs on {node_name}, but numbering tasks node by node puts it on "
                        f"{expected}: start the tasks with srun --distribution=block (or one task per node)")
    return hosts, task_index


def slurm_tf_config(environ=None, port=DEFAULT_PORT):
    """The TF_CONFIG dict of this SLURM task (see `slurm_hosts` and `tf_config`)."""
    hosts, task_index = slurm_hosts(environ, port)
    return tf_config(hosts, task_index)
