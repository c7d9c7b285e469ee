"""Atomic file writes: a reader (or a rerun after a kill) sees the old file or the new one, never half.

Every result file this package writes (checkpoints, backups, score files, CSV logs, JSON, PNG) goes
through `atomic_output`: the content is written to a hidden temporary file in the destination's own
folder (same file system, so the rename cannot degrade into a copy), flushed to disk, and moved over
the destination with `os.replace`, which POSIX and Windows both perform atomically.

Remote destinations (`gs://`, `ram://`..., see `two_stream_tf.storage`) are written to a local temporary
file first, copied with `tf.io.gfile` to a hidden temporary name beside the destination and renamed over
it. What that rename guarantees is the store's: on GCS an object appears whole or not at all (an upload
is committed in one step), but `rename` is a copy then a delete, so a kill between the two leaves the
new file in place plus a stale temporary (removed by `remove_stale_temporaries`), never a torn
destination. Object stores do not order two renames either, which is why readers of generations (see
`read_generations`) accept either the current or the previous file.
"""
import contextlib
import os
import shutil
import tempfile
import uuid
import warnings

from two_stream_tf import storage


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
    if storage.is_remote(path):
        with _remote_output(path) as tmp:
            yield tmp
        return
    path = storage.absolute(path)
    folder = os.path.dirname(path)
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


@contextlib.contextmanager
def _remote_output(path):
    # Written locally (Keras and h5py need a real file), copied beside the destination, renamed over it.
    local_folder = tempfile.mkdtemp(prefix="two_stream_tf-")
    name = storage.basename(path)
    local = os.path.join(local_folder, name)
    remote_tmp = storage.join(storage.dirname(path), f".{name}.tmp-{uuid.uuid4().hex[:8]}{_suffix(name)}")
    try:
        yield local
        if os.path.isdir(local):
            raise IsADirectoryError(f"atomic_output expects a file, the writer made a folder: {local}")
        storage.makedirs(storage.dirname(path))
        storage.copy(local, remote_tmp)
        storage.rename(remote_tmp, path)
    finally:
        shutil.rmtree(local_folder, ignore_errors=True)
        if storage.exists(remote_tmp):
            storage.remove(remote_tmp)


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def _tagged(path, tag):
    # The full suffix stays last, as Keras wants: backup.weights.h5 -> backup.prev.weights.h5.
    path = os.fspath(path)
    name = storage.basename(path)
    suffix = _suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else name
    return storage.join(storage.dirname(path), f"{stem}.{tag}{suffix}")


def previous_path(path):
    """The previous generation `generation_output` keeps: `log.csv` -> `log.prev.csv`."""
    return _tagged(path, "prev")


def staged_path(path):
    """Where `generation_output` puts a finished new generation before the renames: `log.next.csv`."""
    return _tagged(path, "next")


@contextlib.contextmanager
def generation_output(path):
    """Like `atomic_output`, but the file it replaces is kept as `previous_path(path)`.

    Order: the new content is complete in a temporary file, then the current file becomes the previous
    generation, then the temporary file becomes the current one. A kill between the two renames leaves
    only the previous generation (plus the stale temporary), which `read_generations` falls back to.
    """
    path = os.fspath(path)
    staged = staged_path(path)
    with atomic_output(staged) as tmp:
        yield tmp
    if storage.exists(path):
        storage.rename(path, previous_path(path))
    storage.rename(staged, path)


def write_generation_text(path, text):
    """Writes `text` to `path` atomically, keeping the file it replaces as the previous generation."""
    with generation_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(text.encode("utf-8"))


def read_generations(path, parse, what):
    """`parse(path)` of the newest readable generation of `path` (current, previous, or one left staged).

    Returns:
      `(value, used_path)`, or `(None, None)` when no generation exists.

    A generation that exists but fails to parse (truncated, corrupt) is skipped with a warning naming the
    file and the error; if every generation fails, the last error is raised as a warning and
    `(None, None)` returned, so a rerun starts that state afresh rather than stopping.
    """
    path = os.fspath(path)
    staged = staged_path(path)
    candidates = [path, previous_path(path)]
    if not storage.exists(path) and storage.exists(staged):
        # Killed between the two renames of `generation_output`: the staged file is whole and newest.
        candidates.insert(0, staged)
    for candidate in candidates:
        if not storage.exists(candidate):
            continue
        try:
            return parse(candidate), candidate
        except Exception as error:  # any parser's error: the file is damaged, try the previous one
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            warnings.warn(f"{what} {candidate} is damaged ({type(error).__name__}: {first}); "
                          "falling back to the previous generation", RuntimeWarning, stacklevel=2)
    return None, None


def is_temporary(name):
    """True for the hidden temporary files `atomic_output` leaves behind only when killed mid-write."""
    return os.path.basename(name).startswith(".") and ".tmp-" in name


def remove_stale_temporaries(folder):
    """Deletes temporary files a killed writer left in `folder` (not recursive); returns their names."""
    removed = []
    for name in storage.listdir(folder):
        full = storage.join(folder, name)
        if is_temporary(name) and storage.isfile(full):
            storage.remove(full)
            removed.append(name)
    return removed
