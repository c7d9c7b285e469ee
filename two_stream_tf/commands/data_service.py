"""`two-stream data-service dispatcher|worker`: run a tf.data service server until Ctrl-C (or SIGTERM).

One dispatcher per training run, and workers on as many CPU machines as decoding needs; trainers then
read their input from the service (`--tf_data_service=grpc://DISPATCHER_HOST:PORT`). Workers read the
frames themselves, so every worker must see the frames folder at the same path as the trainer.

The service has no authentication: anyone who reaches a server's port can have it run any dataset graph
(read and write files as the server's user). Servers therefore listen on 127.0.0.1 unless `--bind` names
another address of this machine — the interface of a private network — or `*` (every interface):

    two-stream data-service dispatcher                              # 127.0.0.1:5050, trainers on this machine
    two-stream data-service worker --dispatcher 127.0.0.1:5050      # a worker on this machine
    two-stream data-service dispatcher --bind 10.0.0.1 --work-dir /shared/run1/dispatcher
    two-stream data-service worker --dispatcher 10.0.0.1:5050 --bind 10.0.0.2 --port 5051

See docs/scaling.md for how many workers a GPU needs.
"""
import argparse
import faulthandler
import gc
import signal
import socket
import threading

from two_stream_tf.addresses import GRPC, parse_address
from two_stream_tf.commands._arguments import Parser, port_number, positive_number
from two_stream_tf.errors import UserError
from two_stream_tf.listen_address import LOOPBACK, parse_bind_address

HELP = "run a tf.data service dispatcher or worker (moves input decoding to other machines)"
STOP_TIMEOUT = 120.0


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
                        help="this machine's name or address as trainers reach it (default: the --bind address; "
                        "the host name with --bind '*')")
    for server in (dispatcher, worker):
        server.add_argument("--stop-timeout", type=positive_number, default=STOP_TIMEOUT, metavar="SECONDS",
                            help=f"after Ctrl-C or SIGTERM, end with status 1 if stopping takes longer than this "
                            f"(default {STOP_TIMEOUT:g})")
        server.add_argument("--bind", type=_bind_address, default=LOOPBACK, metavar="ADDRESS",
                            help="IP address of this machine to listen on (default 127.0.0.1: only this machine); "
                            "a private network's interface, or '*' for every interface. The service has no "
                            "authentication: never make it reachable from an untrusted network")
    return parser


def _bind_address(text):
    try:
        return parse_bind_address(text, "")
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error).strip()) from None


def _url_host(address):
    return f"[{address}]" if ":" in address else address


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
            server = service.start_dispatcher(args.port, work_dir=args.work_dir, job_gc_timeout=args.job_gc_timeout,
                                              bind=args.bind)
            where = socket.gethostname() if args.bind == "*" else _url_host(args.bind)
            everywhere = " (every interface)" if args.bind == "*" else ""
            state = f", state in {args.work_dir}" if args.work_dir else ""
            print(f"tf.data service dispatcher listening on {GRPC}://{where}:{service.bound_port(server)}"
                  f"{everywhere}{state} (Ctrl-C to stop)", flush=True)
        else:
            print(f"tf.data service worker: waiting for the dispatcher at {host}:{port} …", flush=True)
            if not _wait_for_port(host, port, stop):
                print("tf.data service worker: stopped before the dispatcher answered", flush=True)
                return 130
            advertised = args.host or (socket.gethostname() if args.bind == "*" else _url_host(args.bind))
            server = service.start_worker(f"{host}:{port}", args.port, host=advertised, bind=args.bind)
            where = "every interface" if args.bind == "*" else args.bind
            print(f"tf.data service worker listening on {where} port {service.bound_port(server)} as {advertised}, "
                  f"registered with the dispatcher at {host}:{port} (Ctrl-C to stop)", flush=True)
        stop.wait()
        print(f"tf.data service {args.server} stopping (Ctrl-C again to end at once)", flush=True)
    held = [server]
    del server  # only `held` refers to the server now, so that stopping can also destroy it
    _stop_within(held, args.stop_timeout)
    print(f"tf.data service {args.server} stopped", flush=True)
    return 0


def _stop_within(held, seconds):
    """Stops and destroys the server in the list `held`; past `seconds`, ends the process with status 1.

    Python's stacks then go to stderr (the server's log).

    TensorFlow stops a worker by cancelling its input pipelines and joining their threads. A pipeline
    thread that is asking the dispatcher for the next split of a DYNAMIC job does not see the
    cancellation: TensorFlow retries that request until `WorkerConfig.dispatcher_timeout_ms` (an hour)
    when the dispatcher is gone, so a worker whose dispatcher stopped first would hang that long, in
    `stop()` or in the destructors run at exit. `LocalService` stops workers before their dispatcher;
    this bound covers the other cases (a dispatcher that crashed, or SIGTERM to a whole job step). The
    watchdog is a C thread (faulthandler), so it fires even while `stop()` holds Python's lock.
    """
    # The signals' default actions from now on: a second Ctrl-C or SIGTERM ends the process at once.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    faulthandler.dump_traceback_later(seconds, exit=True)
    server = held.pop()
    server.stop()
    del server  # TensorFlow's destructors join the server's threads here, while the watchdog is armed
    gc.collect()
    faulthandler.cancel_dump_traceback_later()
