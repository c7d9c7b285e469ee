"""`two-stream data-service dispatcher|worker`: run a tf.data service server until Ctrl-C (or SIGTERM).

One dispatcher per training run, and workers on as many CPU machines as decoding needs; trainers then
read their input from the service (`--tf_data_service=grpc://DISPATCHER_HOST:PORT`). Workers read the
frames themselves, so every worker must see the frames folder at the same path as the trainer.

    two-stream data-service dispatcher --port 5050 --work-dir /shared/run1/dispatcher
    two-stream data-service worker --dispatcher node01:5050 --port 5051
    two-stream data-service worker --dispatcher 127.0.0.1:5050 --host 127.0.0.1   # a worker on this machine

See docs/scaling.md for how many workers a GPU needs.
"""
import signal
import socket
import threading

from two_stream_tf.addresses import GRPC, parse_address
from two_stream_tf.commands._arguments import Parser, port_number, positive_number

HELP = "run a tf.data service dispatcher or worker (moves input decoding to other machines)"


def build_parser():
    parser = Parser(prog="two-stream data-service", description=__doc__.split("\n\n")[0])
    servers = parser.add_subparsers(dest="server", required=True, metavar="{dispatcher,worker}",
                                    parser_class=Parser)
    dispatcher = servers.add_parser("dispatcher", help="start the dispatcher (one per training run)")
    dispatcher.add_argument("--port", type=port_number(allow_zero=True), default=5050,
                            help="port to listen on (default 5050; 0: any free port)")
    dispatcher.add_argument("--work-dir", help="folder where the dispatcher journals its state, so that a restarted "
                            "dispatcher resumes the run's datasets and jobs (fault tolerance)")
    dispatcher.add_argument("--job-gc-timeout", type=positive_number, metavar="SECONDS",
                            help="remove a job this long after its last reader left (default: TensorFlow's, minutes); "
                            "workers buffer data for a job until it is removed")
    worker = servers.add_parser("worker", help="start a worker that runs input pipelines")
    worker.add_argument("--dispatcher", required=True, metavar="HOST:PORT", help="the dispatcher's address")
    worker.add_argument("--port", type=port_number(allow_zero=True), default=0,
                        help="port to serve on (default 0: any free port; the dispatcher tells trainers which)")
    worker.add_argument("--host", default=None,
                        help="this machine's name or address as trainers reach it (default: the host name)")
    return parser


class _StopSignal:
    """Turns SIGINT (Ctrl-C) and SIGTERM (how SLURM ends a job step) into an event the main thread waits on.

    Servers run on TensorFlow's threads; the main thread waits in Python, so a signal is seen at once (a
    C++ `join()` would not return on Ctrl-C).
    """

    def __enter__(self):
        self.event = threading.Event()
        self._previous = {sig: signal.signal(sig, lambda *_: self.event.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def wait(self):
        while not self.event.wait(1.0):
            pass


def _wait_for_port(host, port, stop):
    """Waits until HOST:PORT accepts TCP connections; False if a stop signal came first.

    A worker's start registers with the dispatcher and, while it retries, holds Python's lock so that
    nothing (not even Ctrl-C) gets through; waiting here first keeps a worker started before its
    dispatcher interruptible.
    """
    while not stop.event.is_set():
        try:
            with socket.create_connection((host.strip("[]"), port), timeout=2.0):
                return True
        except OSError:
            stop.event.wait(1.0)
    return False


def main(argv):
    args = build_parser().parse_args(argv)
    if args.server == "worker":
        host, port = parse_address(args.dispatcher, "--dispatcher")
    from two_stream_tf.data import service  # imports TensorFlow: after the arguments are known to be valid

    with _StopSignal() as stop:
        if args.server == "dispatcher":
            server = service.start_dispatcher(args.port, work_dir=args.work_dir, job_gc_timeout=args.job_gc_timeout)
            bound_port = server.target.rsplit(":", 1)[1]
            state = f", state in {args.work_dir}" if args.work_dir else ""
            print(f"tf.data service dispatcher listening on {GRPC}://{socket.gethostname()}:{bound_port}"
                  f"{state} (Ctrl-C to stop)", flush=True)
        else:
            print(f"tf.data service worker: waiting for the dispatcher at {host}:{port} …", flush=True)
            if not _wait_for_port(host, port, stop):
                print("tf.data service worker: stopped before the dispatcher answered", flush=True)
                return 130
            server = service.start_worker(f"{host}:{port}", args.port, host=args.host or socket.gethostname())
            where = f"port {args.port}" if args.port else "a free port"
            print(f"tf.data service worker on {where}, registered with the dispatcher at {host}:{port} "
                  "(Ctrl-C to stop)", flush=True)
        stop.wait()
        server.stop()
    print(f"tf.data service {args.server} stopped", flush=True)
    return 0
