"""`HOST:PORT` network addresses as users write them (flags, TF_CONFIG host lists, the tf.data service)."""
import re

from two_stream_tf.errors import UserError

GRPC = "grpc"
_ADDRESS = re.compile(r"^(?:(?P<protocol>[a-z]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d+)$")


def parse_address(address, what="address"):
    """Splits `[grpc://]HOST:PORT` into `(host, port)`.

    Args:
      address: e.g. "grpc://node07:5050", "node07:5050", "127.0.0.1:5050" or "[::1]:5050".
      what: what the address is, for the error message (e.g. "--dispatcher").

    Returns:
      `(host, port)` with `port` an int in 1..65535.

    Raises:
      UserError: the text is not HOST:PORT, names another protocol than grpc, or the port is out of range.
    """
    match = _ADDRESS.match(str(address).strip())
    if not match:
        raise UserError(f"{what} {address!r} is not HOST:PORT (e.g. node07:5050 or 127.0.0.1:5050)")
    if match["protocol"] not in (None, GRPC):
        raise UserError(f"{what} {address!r}: expected {GRPC}://HOST:PORT, not {match['protocol']}://")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise UserError(f"{what} {address!r}: port {port} is outside 1..65535")
    return match["host"], port
