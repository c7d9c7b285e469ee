"""The `two-stream` command line.

Every subcommand is a module in `two_stream_tf.commands` that defines `HELP` (one line) and
`main(argv) -> int`; modules are discovered, so adding a command means adding a module. Each command
parses its own arguments, which lets training commands use absl flags and flagfiles while data commands
use argparse.
"""
import importlib
import os
import pkgutil
import sys

# TensorFlow's C++ info and warning lines (e.g. which CPU instructions a rebuild could use) are noise on a
# command line; errors still show. Set before any command imports TensorFlow. (A few lines logged before
# absl's logging starts ignore this setting.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from two_stream_tf import commands
from two_stream_tf.errors import UserError


def available_commands():
    """Returns the sorted names of the subcommands (command modules use '-' for '_')."""
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def _usage():
    lines = ["usage: two-stream <command> [options]", "", "commands:"]
    for name in available_commands():
        module = importlib.import_module(f"two_stream_tf.commands.{name.replace('-', '_')}")
        lines.append(f"  {name:<14} {module.HELP}")
    lines.append("")
    lines.append("Run 'two-stream <command> --help' for the options of one command.")
    return "\n".join(lines)


def main(argv=None):
    """Runs `two-stream <command> …`; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in available_commands():
        print(f"two-stream: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"two_stream_tf.commands.{name.replace('-', '_')}")
    try:
        return int(module.main(argv[1:]) or 0)
    except UserError as error:
        print(f"two-stream {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"two-stream {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
