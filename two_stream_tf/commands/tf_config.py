"""`two-stream tf-config`: the TF_CONFIG of one worker of a multi-worker run, for a host list or SLURM.

Prints (or writes) the JSON that `MultiWorkerMirroredStrategy` reads from the TF_CONFIG environment
variable: every worker's HOST:PORT and this process's index (worker 0 is the chief).

    two-stream tf-config --hosts node01:23456,node02:23456 --index 1
    export TF_CONFIG=$(two-stream tf-config --slurm)            # inside each task of srun
    eval "$(two-stream tf-config --slurm --port 23456 --export)"
    two-stream tf-config --hosts a:1,b:1 --index 0 --output tf_config.json

Under SLURM the nodes come from SLURM_STEP_NODELIST / SLURM_JOB_NODELIST (e.g. node[01-03,07]), the task
index from SLURM_PROCID, one worker per task (see docs/scaling.md for an sbatch script).
"""
import argparse
import json
import shlex

from two_stream_tf.commands._arguments import Parser, port_number
from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic, cluster

HELP = "print/write TF_CONFIG for worker i of a host list, or for this SLURM task"


def _index(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a worker index (0, 1, 2, …)")
    return value


def build_parser():
    parser = Parser(prog="two-stream tf-config", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hosts", metavar="HOST:PORT,…", help="every worker's address, in the same order for all")
    source.add_argument("--slurm", action="store_true", help="build the list from SLURM's environment variables")
    parser.add_argument("--index", type=_index, help="with --hosts: this worker's 0-based position in the list")
    parser.add_argument("--port", type=port_number(), default=cluster.DEFAULT_PORT,
                        help=f"with --slurm: port of each node's first worker (default {cluster.DEFAULT_PORT})")
    parser.add_argument("--export", action="store_true", help="print a shell line 'export TF_CONFIG=…' instead")
    parser.add_argument("--output", metavar="FILE", help="write the JSON to FILE instead of printing it")
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    if args.slurm:
        if args.index is not None:
            raise UserError("--index goes with --hosts; under --slurm the index is SLURM_PROCID")
        config = cluster.slurm_tf_config(port=args.port)
    else:
        if args.index is None:
            raise UserError("--hosts needs --index (this worker's 0-based position in the list)")
        config = cluster.tf_config(args.hosts.split(","), args.index)
    text = json.dumps(config, separators=(",", ":"))
    if args.export:
        text = f"export TF_CONFIG={shlex.quote(text)}"
    if args.output:
        atomic.write_text(args.output, text + "\n")
    else:
        print(text)
    return 0
