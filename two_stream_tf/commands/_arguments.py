"""Pieces shared by the argparse-based commands."""
import argparse

from two_stream_tf.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that raises `UserError` (the CLI prints it, exit 2) instead of exiting itself."""

    def error(self, message):
        raise UserError(message)


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
