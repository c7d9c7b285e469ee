"""Paths on any file system TensorFlow reads (`tf.io.gfile`): local folders, `gs://`, `ram://`, `hdfs://`...

A path with a scheme (`SCHEME://...`) goes through `tf.io.gfile`; a plain path is a local one and keeps
Python's `os` functions (symlinks, permissions and `os.replace` mean something there). A scheme TensorFlow
has no file system for, or a remote store it cannot reach, is a `UserError` naming the path, never a local
folder with a colon in its name.

    storage.check("gs://bucket/run", "model_dir")   # UserError when gs:// cannot be reached
    storage.makedirs(storage.join("ram://runs/a", "backup"))
"""
import contextlib
import os
import shutil
import tempfile

from two_stream_tf.errors import UserError


def _gfile():
    import tensorflow as tf  # imported late: plain local paths need no TensorFlow
    return tf.io.gfile


def scheme(path):
    """The scheme of `path` ("gs" for `gs://b/x`), or "" for a local path (`file://` counts as local)."""
    path = os.fspath(path)
    head, sep, _ = path.partition("://")
    if not sep or "/" in head or not head:
        return ""
    return "" if head == "file" else head


def is_remote(path):
    """True for paths with a scheme other than `file://` (read and written through `tf.io.gfile`)."""
    return bool(scheme(path))


def _local(path):
    path = os.fspath(path)
    return path[len("file://"):] if path.startswith("file://") else path


def absolute(path):
    """`path` made absolute: local paths through `os.path.abspath`, remote ones unchanged."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(_local(path))


def join(*parts):
    """`os.path.join` for local paths; "/"-joined for remote ones."""
    first = os.fspath(parts[0])
    if not is_remote(first):
        return os.path.join(_local(first), *map(os.fspath, parts[1:]))
    return "/".join([first.rstrip("/")] + [os.fspath(p).strip("/") for p in parts[1:]])


def dirname(path):
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.dirname(_local(path))
    head, _, _ = path.rstrip("/").rpartition("/")
    return head if "://" in head and not head.endswith(":/") else path.rstrip("/")


def basename(path):
    return os.fspath(path).rstrip("/").rpartition("/")[2] if is_remote(path) else os.path.basename(path)


def check(path, what):
    """Checks that the file system of `path` exists and answers; returns `path`.

    Raises:
      UserError: naming `what` (e.g. "--model_dir") and `path`: a scheme TensorFlow has no file system for,
        or a remote store that cannot be reached (no network, no credentials).
    """
    path = os.fspath(path)
    if not is_remote(path):
        return path
    import tensorflow as tf
    try:
        _gfile().exists(path)
    except tf.errors.UnimplementedError:
        raise UserError(f"{what}={path}: TensorFlow has no file system for '{scheme(path)}://' paths "
                        "(local paths, gs://, ram:// and those of installed file-system plug-ins work)") from None
    except tf.errors.OpError as error:
        first = (error.message or str(error)).strip().splitlines()[0]
        raise UserError(f"{what}={path}: cannot reach the {scheme(path)}:// store ({first})") from None
    return path


def exists(path):
    return _gfile().exists(path) if is_remote(path) else os.path.exists(_local(path))


def isdir(path):
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(_local(path))


def isfile(path):
    if is_remote(path):
        return _gfile().exists(path) and not _gfile().isdir(path)
    return os.path.isfile(_local(path))


def listdir(path):
    """Names in a folder (no trailing slashes), [] when it does not exist."""
    if not isdir(path):
        return []
    if is_remote(path):
        return sorted(name.rstrip("/") for name in _gfile().listdir(path))
    return sorted(os.listdir(_local(path)))


def makedirs(path):
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(_local(path), exist_ok=True)


def remove(path):
    """Removes a file; a missing one is no error."""
    try:
        if is_remote(path):
            _gfile().remove(path)
        else:
            os.remove(_local(path))
    except (OSError, FileNotFoundError):
        pass
    except Exception as error:  # tf.errors.NotFoundError
        if type(error).__name__ != "NotFoundError":
            raise


def rmtree(path):
    if not isdir(path):
        return
    if is_remote(path):
        _gfile().rmtree(path)
    else:
        shutil.rmtree(_local(path), ignore_errors=True)


def rename(source, destination):
    """Moves `source` over `destination` (atomic on local file systems; see `atomic` for remote stores)."""
    if is_remote(source) or is_remote(destination):
        _gfile().rename(source, destination, overwrite=True)
    else:
        os.replace(_local(source), _local(destination))


def copy(source, destination):
    if is_remote(source) or is_remote(destination):
        _gfile().copy(source, destination, overwrite=True)
    else:
        shutil.copyfile(_local(source), _local(destination))


def read_bytes(path):
    if is_remote(path):
        with _gfile().GFile(path, "rb") as handle:
            return handle.read()
    with open(_local(path), "rb") as handle:
        return handle.read()


def read_text(path):
    return read_bytes(path).decode("utf-8")


@contextlib.contextmanager
def local_copy(path):
    """A local file path holding `path`'s bytes (the path itself when local), for readers such as h5py."""
    if not is_remote(path):
        yield _local(path)
        return
    folder = tempfile.mkdtemp(prefix="two_stream_tf-")
    try:
        local = os.path.join(folder, basename(path))
        _gfile().copy(path, local, overwrite=True)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)
