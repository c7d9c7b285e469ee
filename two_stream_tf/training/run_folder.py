"""The run folder (model_dir) of a training run: where it may be, who holds it, what run it holds.

    folder = run_folder.prepare("runs/spatial")                  # absolute; UserError when unusable
    with run_folder.RunLock(folder):                             # one run per model_dir at a time
        run_folder.check_resume(folder, new_run_config)          # UserError naming changed flags
        ...
        run_folder.mark_done(folder, {...})

A model_dir may be on any `tf.io.gfile` file system (`gs://`, `ram://`, see `two_stream_tf.storage`).
"""
import datetime
import json
import os
import socket
import tempfile
import uuid
import warnings

from two_stream_tf import storage
from two_stream_tf.errors import UserError
from two_stream_tf.training import atomic

LOCK_NAME = "train.lock"
DONE_NAME = "done.json"

# Settings that may differ when a run is resumed: how it runs, not what it trains. The data may move
# (frames_root, split_dir): the classes and the number of training videos are compared instead.
RESUMABLE = frozenset({
    "verbose", "data_threads", "tf_data_service", "index_cache", "tensorboard_images", "strategy", "tpu",
    "frames_root", "split_dir", "model_dir", "checkpoint_every", "backup_every_steps", "keep_checkpoints",
    "num_replicas", "strict", "validation_scores", "protocol_snippets", "protocol_crops", "health_checks",
    "health_every_steps", "stop_on_collapse",
})
# Values derived from the data: (name in the run config, how to name it in a message).
_DERIVED = {"num_classes": "the number of classes (--split_dir, --class_subset, --dataset)",
            "classes": "the class names (--split_dir, --class_subset, --dataset)",
            "train_videos": "the number of training videos (--split_dir, --frames_root, --split)",
            "image_size": "the input size (--image_size, --backbone)"}


def check_usable(model_dir, what="model_dir"):
    """Checks, creating nothing, that `model_dir` could hold a run; returns it absolute.

    Locally: not a file, no file on the way to it, and its nearest existing folder takes files (tried
    with a temporary file, as permissions say nothing for root or read-only mounts). Remote: the store
    answers.

    Raises:
      UserError: naming `what` and the path.
    """
    model_dir = storage.absolute(storage.check(model_dir, what))
    if storage.is_remote(model_dir):
        if storage.isfile(model_dir):
            raise UserError(f"{what}={model_dir}: is a file, not a folder")
        return model_dir
    if os.path.isfile(model_dir):
        raise UserError(f"{what}={model_dir}: is a file, not a folder")
    existing = model_dir
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{what}={model_dir}: a part of the path is a file, not a folder ({existing})")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UserError(f"{what}={model_dir}: cannot write there ({error.strerror or error})") from None
    return model_dir


def prepare(model_dir, what="model_dir"):
    """Checks that `model_dir` can hold a run, creates it, and returns it absolute.

    Raises:
      UserError: naming `what` and the path: a file, a folder under a file, a folder that cannot be
        created or written, a scheme without a file system or a store that cannot be reached.
    """
    model_dir = storage.absolute(storage.check(model_dir, what))
    if storage.isfile(model_dir):
        raise UserError(f"{what}={model_dir}: is a file, not a folder")
    try:
        storage.makedirs(model_dir)
        probe = storage.join(model_dir, f".write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        atomic.write_text(probe, "")
        storage.remove(probe)
    except (NotADirectoryError, FileExistsError) as error:
        raise UserError(f"{what}={model_dir}: a part of the path is a file, not a folder "
                        f"({error.filename or model_dir})") from None
    except OSError as error:
        raise UserError(f"{what}={model_dir}: cannot write there ({error.strerror or error})") from None
    except Exception as error:  # tf.errors.OpError from a remote store
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{what}={model_dir}: cannot write there ({first})") from None
    return model_dir


# --- the lock ------------------------------------------------------------------------------------------

def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:  # a killed process its parent has not reaped yet is no holder either
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_lock(model_dir):
    """The holder `{"pid", "host", "started", "token"}` of the lock of `model_dir`, {} when unreadable, None
    when there is no lock."""
    path = storage.join(model_dir, LOCK_NAME)
    if not storage.exists(path):
        return None
    try:
        holder = json.loads(storage.read_text(path))
        return holder if isinstance(holder, dict) and "pid" in holder else {}
    except (ValueError, OSError):
        return {}
    except Exception as error:  # NotFoundError: released meanwhile
        if type(error).__name__ == "NotFoundError":
            return None
        raise


class RunLock:
    """`model_dir/train.lock`: one training run per model_dir at a time.

    The lock holds the pid, host and start time of its holder. A second run refuses to start with a
    `UserError` naming them. A lock whose holder is gone (same host, pid not running, e.g. after a
    SIGKILL or power loss) is stale and taken over with a warning. A lock of another host cannot be
    checked and must be deleted by hand if its holder is known to be dead.

    On a local file system the lock file is created with O_EXCL, so two runs starting together cannot
    both get it. Object stores have no exclusive create: there the lock is written, read back and kept
    only if it still holds this run's token, which narrows but does not close the race.
    """

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.path = storage.join(model_dir, LOCK_NAME)
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "token": uuid.uuid4().hex}
        self.held = False

    def _create(self):
        text = json.dumps(self.holder) + "\n"
        if storage.is_remote(self.path):
            atomic.write_text(self.path, text)
            return (read_lock(self.model_dir) or {}).get("token") == self.holder["token"]
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _is_stale(self, holder):
        if holder is None:
            return True
        if not holder:
            # Unreadable: a holder killed between creating and writing it, or one writing it right now.
            age = _age_seconds(self.path)
            return age is None or age > 60
        same_host = holder.get("host") == self.holder["host"]
        if same_host and int(holder["pid"]) == os.getpid():
            return True  # this process's own lock, left by a call that did not return (in-process retries)
        return same_host and not _process_alive(int(holder["pid"]))

    def acquire(self):
        """Takes the lock; raises UserError naming the holder when another live run has it."""
        for _ in range(3):
            if not storage.exists(self.path) and self._create():
                self.held = True
                return self
            holder = read_lock(self.model_dir)
            if holder is None:
                continue  # released meanwhile: try again
            if not self._is_stale(holder):
                since = f", since {holder['started']}" if holder.get("started") else ""
                who = (f"pid {holder['pid']} on {holder.get('host', '?')}{since}" if holder
                       else "a run that is writing it now")
                raise UserError(f"model_dir {self.model_dir} is in use by another training run ({who}; lock "
                                f"file {self.path}); wait for it to finish, or delete the lock file if that "
                                "process is gone")
            shown = f"pid {holder['pid']} on {holder.get('host')}" if holder else "an unreadable lock"
            warnings.warn(f"{self.path}: taking over the stale lock of {shown} (no longer running)",
                          RuntimeWarning, stacklevel=2)
            storage.remove(self.path)
        raise UserError(f"model_dir {self.model_dir}: could not take the lock {self.path} (other runs keep "
                        "taking it)")

    def release(self):
        """Removes the lock if this run still holds it."""
        if self.held and (read_lock(self.model_dir) or {}).get("token") == self.holder["token"]:
            storage.remove(self.path)
        self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _age_seconds(path):
    import time
    try:
        if storage.is_remote(path):
            import tensorflow as tf
            return time.time() - tf.io.gfile.stat(path).mtime_nsec / 1e9
        return time.time() - os.path.getmtime(path)
    except Exception:  # gone meanwhile, or a store without times
        return None


# --- the run's configuration ---------------------------------------------------------------------------

def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def config_changes(stored, current):
    """The differences that forbid resuming a run: `[(name, stored value, current value)]`.

    Keys missing from `stored` (runs written by older versions) and the `RESUMABLE` ones are not compared.
    """
    changes = []
    for name, value in current.items():
        # Resolved values follow from the compared settings and data; naming those says more.
        if name in RESUMABLE or name not in stored or name.endswith("_resolved") or name == "total_steps":
            continue
        if not _same(stored[name], value):
            changes.append((name, stored[name], value))
    return changes


def _shown(value):
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"[{len(value)} values]"
    return json.dumps(value) if not isinstance(value, str) else value


def check_resume(model_dir, stored, current):
    """Refuses to continue the run `stored` (its `train_config.json`) with the settings `current`.

    Raises:
      UserError: naming every changed flag with the run's value and the new one.
    """
    changes = config_changes(stored, current)
    if not changes:
        return
    parts = []
    for name, before, after in changes:
        if name in _DERIVED:
            parts.append(f"{_DERIVED[name]}: {_shown(after)} now, {_shown(before)} in the run")
        else:
            parts.append(f"--{name}={_shown(after)} (the run has {_shown(before)})")
    raise UserError(f"model_dir {model_dir} holds a run trained with other settings: {'; '.join(parts)}. "
                    "Resume it with its own settings, or train in another model_dir")


# --- a finished run ------------------------------------------------------------------------------------

def mark_done(model_dir, facts):
    """Writes `done.json`: the run completed and `final.keras` was written."""
    atomic.write_text(storage.join(model_dir, DONE_NAME), json.dumps(facts, indent=2) + "\n")


def is_done(model_dir):
    """True when `model_dir` has the done marker of a completed run."""
    return storage.isfile(storage.join(model_dir, DONE_NAME))
