"""Pieces shared by the argparse-based commands."""
import argparse

from two_stream_tf.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that raises `UserError` (the CLI prints it, exit 2) instead of exiting itself, and that
    takes every option in both spellings: `--split-dir` and `--split_dir` (as the absl commands do).

    Options are declared with dashes; an underscore spelling is rewritten to the declared one before
    parsing (also in subcommands, whose parsers are this class too).
    """

    def error(self, message):
        raise UserError(message)

    def parse_known_args(self, args=None, namespace=None):
        import sys
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._declared_spelling(args), namespace)

    def _declared_spelling(self, args):
        known = self._option_string_actions
        result = []
        for position, arg in enumerate(args):
            if arg == "--":
                result.extend(args[position:])
                break
            if arg.startswith("--") and arg not in known:
                name, equals, value = arg.partition("=")
                for other in (name.replace("_", "-"), name[:2] + name[2:].replace("-", "_")):
                    if other != name and other in known:
                        arg = f"{other}{equals}{value}"
                        break
            result.append(arg)
        return result


def port_number(allow_zero=False):
    """An argparse type for a TCP port: 1..65535, or also 0 ("any free port") with `allow_zero`."""
    low = 0 if allow_zero else 1

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port {value} is outside {low}..65535")
        return value

    return parse


def whole_number(low, high=None):
    """An argparse type for an integer in low..high (no upper limit when `high` is None)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            limits = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({limits})")
        return value

    return parse


def positive_number(text):
    """An argparse type for a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def frame_size(minimum=1, allow_original=False, example="340x256"):
    """An argparse type for WIDTHxHEIGHT, each at least `minimum`; with `allow_original`, also 'original'
    (returned as None: keep the video's size)."""
    original = " or 'original'" if allow_original else ""

    def parse(text):
        if allow_original and text == "original":
            return None
        width, _, height = text.lower().partition("x")
        try:
            size = int(width), int(height)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. {example}){original}") from None
        if min(size) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: width and height must be at least {minimum}")
        return size

    return parse
