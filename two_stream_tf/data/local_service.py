"""A tf.data service on this machine: a dispatcher and workers as separate `two-stream data-service` processes.

For trying the service (and testing and benchmarking it) without a cluster. The servers run in their own
processes exactly as they would on other machines, so a pipeline reaches them as a graph and the
workers read the frames themselves:

    with LocalService(num_workers=2) as local:
        dataset = distribute_dataset(dataset, local.address, training=True)
        ...

Each server's TensorFlow log goes to a file in `log_dir` (a temporary folder by default).
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from two_stream_tf.errors import UserError
from two_stream_tf.listen_address import LOOPBACK, parse_bind_address


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """One `two-stream data-service …` process; its stdout is collected line by line by a thread.

    Args:
      args: the arguments after `two-stream data-service`, e.g. `["worker", "--dispatcher", "…"]`.
      log_path: file for the process's stderr (TensorFlow's log).
    """

    def __init__(self, args, log_path):
        self.args, self.log_path = list(args), log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "two_stream_tf.cli", "data-service", *args],
                                            stdout=subprocess.PIPE, stderr=log, text=True)
        self.lines = []
        # A thread, not select() on the pipe: lines already buffered by Python would never wake select().
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self):
        """Everything the process printed so far."""
        return "".join(self.lines)

    def wait_for(self, text, timeout):
        """Waits until the process printed `text`.

        Raises:
          UserError: the process ended or `timeout` seconds passed first (the message holds its output).
        """
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                with open(self.log_path, errors="replace") as log:
                    tail = log.read()[-2000:]
                raise UserError(f"`two-stream data-service {' '.join(self.args)}` did not print {text!r} "
                                f"(exit status {self.process.poll()}); output: {self.output!r}; log: {tail}")
            time.sleep(0.2)

    def interrupt(self):
        """Sends Ctrl-C (SIGINT) if it still runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def wait(self, timeout=180):
        """Waits for the process to end (killing it after `timeout` s); returns its exit status."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        return self.process.returncode


class LocalService:
    """A dispatcher and `num_workers` workers on this machine, each in its own process (a context manager).

    They listen on `bind` only (127.0.0.1 by default), never on every interface.

    Args:
      num_workers: workers started with the dispatcher (more with `add_worker`).
      work_dir: passed to the dispatcher as `--work-dir` (None: state in memory).
      job_gc_timeout: passed to the dispatcher as `--job-gc-timeout` (None: TensorFlow's default).
      log_dir: folder for the servers' logs (None: a new temporary folder).
      timeout: seconds a server may take to start.
      bind: the IPv4 address every server listens on, a loopback address such as 127.0.0.1 (default) or
        127.0.0.2.

    Attributes:
      address: the dispatcher, `grpc://BIND:PORT`.
      dispatcher, workers: the `ServerProcess`es.
      exit_codes: after `stop`, the exit status of the dispatcher and of each worker.
    """

    def __init__(self, num_workers=2, work_dir=None, job_gc_timeout=None, log_dir=None, timeout=180, bind=LOOPBACK):
        self.num_workers, self.work_dir, self.timeout = int(num_workers), work_dir, timeout
        self.job_gc_timeout = job_gc_timeout
        self.bind = parse_bind_address(bind, "bind")
        if self.bind == "*" or ":" in self.bind:
            raise UserError(f"LocalService bind {bind!r}: expected an IPv4 address such as 127.0.0.1")
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="two_stream_data_service_")
        self.port = free_port(self.bind)
        self.address = f"grpc://{self.bind}:{self.port}"
        self.dispatcher, self.workers, self.exit_codes = None, [], None

    def start(self):
        """Starts the dispatcher and the workers together (workers wait for the dispatcher); returns self."""
        args = ["dispatcher", "--port", str(self.port), "--bind", self.bind]
        if self.work_dir:
            args += ["--work-dir", str(self.work_dir)]
        if self.job_gc_timeout:
            args += ["--job-gc-timeout", str(self.job_gc_timeout)]
        self.dispatcher = ServerProcess(args, os.path.join(self.log_dir, "dispatcher.log"))
        starting = [self._spawn_worker() for _ in range(self.num_workers)]
        try:
            self.dispatcher.wait_for("listening on", self.timeout)
            for worker in starting:
                worker.wait_for("registered with the dispatcher", self.timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_worker(self):
        worker = ServerProcess(["worker", "--dispatcher", f"{self.bind}:{self.port}", "--bind", self.bind],
                               os.path.join(self.log_dir, f"worker{len(self.workers)}.log"))
        self.workers.append(worker)
        return worker

    def add_worker(self):
        """Starts one more worker and waits until the dispatcher accepted it (jobs created later use it)."""
        worker = self._spawn_worker()
        worker.wait_for("registered with the dispatcher", self.timeout)
        return worker

    def stop(self):
        """Ctrl-C to the workers, then to the dispatcher once they ended; returns the exit codes, dispatcher first.

        Workers stop first because a worker still reading a DYNAMIC job asks the dispatcher for splits, and
        TensorFlow retries that request for up to an hour when the dispatcher is gone, holding the worker's
        stop (see `two_stream_tf.commands.data_service`).
        """
        for worker in self.workers:
            worker.interrupt()
        worker_codes = [worker.wait(self.timeout) for worker in self.workers]
        dispatcher_codes = []
        if self.dispatcher is not None:
            self.dispatcher.interrupt()
            dispatcher_codes = [self.dispatcher.wait(self.timeout)]
        self.exit_codes = dispatcher_codes + worker_codes
        return self.exit_codes

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
