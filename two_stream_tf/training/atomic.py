"""Atomic file writes: a reader (or a rerun after a kill) sees the old file or the new one, never half.

Every result file this package writes (checkpoints, backups, score files, CSV logs, JSON, PNG) goes
through `atomic_output`: the content is written to a hidden temporary file in the destination's own
folder (same file system, so the rename cannot degrade into a copy), flushed to disk, and moved over
the destination with `os.replace`, which POSIX and Windows both perform atomically.
"""
import contextlib
import os
import tempfile


def _fsync_file(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder):
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _suffix(name):
    # Keras insists on the full suffix (".keras", ".weights.h5"), so keep everything after the
    # first dot of the file name, not only the last extension.
    stem = name.lstrip(".")
    return stem[stem.index("."):] if "." in stem else ""


@contextlib.contextmanager
def atomic_output(path):
    """Context manager giving a temporary path that replaces `path` when the block succeeds.

    The temporary file sits in the same folder, starts with a dot and keeps the destination's full
    suffix (Keras checks for `.keras` and `.weights.h5`). If the block raises, the temporary file is
    removed and `path` is untouched. Missing parent folders are created.

    Example:

    >>> with atomic_output("model_dir/best.keras") as tmp:
    ...     model.save(tmp)

    Args:
      path: the destination file.

    Yields:
      The temporary path to write to.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", suffix=_suffix(os.path.basename(path)),
                               dir=folder)
    os.close(fd)
    # Some writers (Keras, h5py) refuse to overwrite or expect a fresh file: hand them a free name.
    os.remove(tmp)
    try:
        yield tmp
        if os.path.isdir(tmp):
            raise IsADirectoryError(f"atomic_output expects a file, the writer made a folder: {tmp}")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def is_temporary(name):
    """True for the hidden temporary files `atomic_output` leaves behind only when killed mid-write."""
    return os.path.basename(name).startswith(".") and ".tmp-" in name


def remove_stale_temporaries(folder):
    """Deletes temporary files a killed writer left in `folder` (not recursive); returns their names."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if is_temporary(name) and os.path.isfile(full):
            os.remove(full)
            removed.append(name)
    return removed
