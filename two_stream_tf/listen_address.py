"""Which address TensorFlow's gRPC servers listen on: one address (loopback by default), not every interface.

TensorFlow gives its tf.data service servers no listening-address option: `DispatchServer` and
`WorkerServer` (TensorFlow 2.21, `tensorflow/core/data/service/server_lib.cc`) always hand gRPC
"0.0.0.0:PORT", which gRPC opens as one dual-stack socket on [::] — every interface, IPv4 and IPv6 — and
the service has no authentication. `listening_on(address)` makes servers started inside it listen on
`address` instead: a small C library (`listen_address.c`, compiled with the C compiler on first use and
cached like the view kernels) redirects the `bind` calls of TensorFlow's shared libraries, replacing a
wildcard address by `address` while the block runs. `check_listening` then reads /proc/net/tcp and
/proc/net/tcp6 to confirm where a port really listens, so a TensorFlow that binds some other way is
caught instead of trusted. Linux only (glibc's dynamic loader and /proc).

An IPv4 address on gRPC's dual-stack socket shows as its IPv4-mapped form (`[::ffff:127.0.0.1]:PORT` in
`ss -ltn`); it accepts IPv4 connections to that address only.
"""
import contextlib
import ctypes
import hashlib
import ipaddress
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading

from two_stream_tf.errors import UserError

LOOPBACK = "127.0.0.1"
# Spellings of "every interface": TensorFlow's own behaviour, for a private network only.
EVERY_INTERFACE = ("*", "0.0.0.0", "::")
SOURCE = pathlib.Path(__file__).with_name("listen_address.c")
CACHE_VARIABLE = "TWO_STREAM_TF_CACHE"
_LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp*

_lock = threading.Lock()
_library = {}


def parse_bind_address(value, what="--bind"):
    """Checks a listening address: an IP address of this machine, or `*` (also `0.0.0.0`, `::`) for every interface.

    Returns:
      The address as text ("127.0.0.1", "::1", …), or "*" for every interface.

    Raises:
      UserError: not an IP address (host names are refused: a name may resolve to several addresses).
    """
    text = str(value).strip()
    if text in EVERY_INTERFACE:
        return "*"
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise UserError(f"{what} {value!r} is not an IP address of this machine (e.g. 127.0.0.1, 10.0.0.5 or ::1; "
                        "'*' for every interface)") from None


def _library_path():
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), platform.machine().encode(),
                                     sys.implementation.cache_tag.encode()])).hexdigest()[:16]
    cache = pathlib.Path(os.environ.get(CACHE_VARIABLE) or pathlib.Path.home() / ".cache" / "two_stream_tf")
    return cache / "listen_address" / key / "listen_address.so"


def _build(output):
    compiler = next((path for path in ([os.environ.get("CC")] if os.environ.get("CC") else []) +
                     [shutil.which("cc"), shutil.which("gcc")] if path), None)
    if compiler is None:
        raise UserError("listening on one address needs a C compiler to build a small library (set CC or install "
                        "gcc); on a private network '--bind *' listens on every interface without it")
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".so", dir=output.parent)
    os.close(handle)
    try:
        result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", str(SOURCE), "-o", temporary, "-ldl",
                                 "-lpthread"], capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"compiling {SOURCE.name} failed:\n{(result.stderr or result.stdout)[-2000:]}")
        os.replace(temporary, output)  # atomic: concurrent processes each build their own temporary
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _load():
    if "library" not in _library:
        if not sys.platform.startswith("linux"):
            raise UserError(f"listening on one address is supported on Linux only (this is {sys.platform}); "
                            "on a private network '--bind *' listens on every interface")
        path = _library_path()
        if not path.exists():
            _build(path)
        library = ctypes.CDLL(str(path))
        library.two_stream_set_listen_address.argtypes = [ctypes.c_char_p]
        library.two_stream_redirect_bind.argtypes = [ctypes.c_char_p]
        _library["library"] = library
    return _library["library"]


@contextlib.contextmanager
def listening_on(address, required=True):
    """Within the block, TensorFlow's gRPC servers that start listen on `address` instead of every interface.

    Args:
      address: from `parse_bind_address`; "*" changes nothing (every interface).
      required: False: where the redirection is not possible, log a warning and change nothing.

    Raises:
      UserError: (`required` only) not Linux, no C compiler, or TensorFlow's libraries could not be
        redirected.
    """
    address = parse_bind_address(address, "listening address")
    if address == "*":
        yield
        return
    import tensorflow  # noqa: F401  (its libraries must be loaded to be redirected)

    with _lock:  # one listening address at a time in this process
        try:
            library = _load()
            if library.two_stream_redirect_bind(b"tensorflow") <= 0:
                raise UserError("cannot make TensorFlow's servers listen on one address: its libraries' bind "
                                "calls were not found or could not be redirected")
        except UserError as error:
            if required:
                raise
            logging.getLogger(__name__).warning("listening on every interface, not only %s: %s", address, error)
            yield
            return
        library.two_stream_set_listen_address(address.encode())
        try:
            yield
        finally:
            library.two_stream_set_listen_address(None)


def _decode(hex_address):
    """An address of /proc/net/tcp (IPv4, 8 hex digits) or tcp6 (32), as text; IPv4-mapped IPv6 as IPv4."""
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word in host byte order.
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    address = ipaddress.ip_address(ordered)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def listening_addresses(port):
    """The local addresses on which TCP port `port` listens on this machine ("0.0.0.0" / "::" for every interface)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, hex_port = local.rsplit(":", 1)
            if state == _LISTEN_STATE and int(hex_port, 16) == int(port):
                found.add(_decode(address))
    return found


def check_listening(port, address, what):
    """Raises `UserError` unless port `port` listens on `address` only (or anywhere, for "*").

    Args:
      port: the TCP port a server bound.
      address: from `parse_bind_address`.
      what: the server, for the message.
    """
    if address == "*" or not pathlib.Path("/proc/net/tcp").exists():
        return
    found = listening_addresses(port)
    if found != {address}:
        raise UserError(f"the {what} was to listen on {address} only, but port {port} listens on "
                        f"{', '.join(sorted(found)) or 'nothing'}; it was stopped")
