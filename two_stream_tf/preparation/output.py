"""The output folder of an extraction and how a video is committed to it safely.

A video's frames are written into a private temporary folder under `<output>/.prepare/tmp/`, on the same file
system as the output, owned by the writing process (an advisory lock on `<folder>.lock`, released by the
kernel when the process dies). When all files are written they are checked against what the marker will
record, the folders are renamed into place, checked again there, and only then a done-marker
`<output>/.prepare/done/<video_id>.json` is written. The marker records the RGB and flow counts and the
total size of the files, and a video counts as done only when its marker was written with the same
settings and its folders hold exactly the files the marker names (every expected name, nothing else with
those prefixes, no empty file, the recorded total size). So a run killed at any moment leaves nothing that
counts as done unless it is complete, and a rerun re-extracts every video whose folder disagrees with its
marker, whoever changed it.

Temporary folders are only removed when no live process owns them (`clean_staging`): a run never deletes
what another live process is writing. Markers and the failure report hold no times or process ids, so
equal runs write equal bytes (the Beam pipeline and `two-stream prepare` do). This guards against processes
dying (killed, interrupted, out of memory), not against the machine losing power or crashing before its
page cache reaches the disk: files are not fsynced, which would cost more than the JPEG encoding. The locks
are `flock` locks: on NFS they need Linux 2.6.12 or later; without `fcntl` (Windows) staging folders are
not protected and a run removes all of them.

Layout of `<output>/.prepare/`:

  done/<video_id>.json       one marker per finished video: source, counts, total bytes, settings
  tmp/<video_id>.XXXX/       temporary folders of videos being written
  tmp/<video_id>.XXXX.lock   held by the process writing that folder
  failures.tsv               `path<TAB>reason` of the videos that failed in the last run
  lock                       held while `prepare_videos` runs, so two runs never write the same output
"""
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks
    fcntl = None

from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.errors import UserError

META_DIR = ".prepare"
FAILURE_REPORT = "failures.tsv"
_WRITING_PREFIX = ".writing-"
_LOCK_SUFFIX = ".lock"
# Inside a staging folder: the folders a commit replaces, until the new ones are in place.
_REPLACED = ".replaced"


class CommitError(Exception):
    """A video's files are not what its marker would record (changed or removed while being committed)."""


@dataclasses.dataclass(frozen=True)
class DoneCheck:
    """Whether a video is done, and if a marker exists but its folder disagrees, how.

    Attributes:
      done: the marker was written with these settings and the folders hold exactly its files.
      problem: why a video with a marker for these settings is not done (None when done or never done).
    """

    done: bool
    problem: str | None = None


def video_folders(layout_name, video_id):
    """The folders, relative to the output root, that hold a video's files in a layout.

    One folder for the TSN layout; three (RGB, x flow, y flow) for twostreamfusion. Taken from the layout's
    own file names, so every layout in `LAYOUTS` works.
    """
    layout = LAYOUTS[layout_name]
    names = [layout.rgb_file(video_id, 0), *layout.flow_files(video_id, 0)]
    return sorted({os.path.dirname(name) for name in names})


def expected_files(layout_name, video_id, num_frames, num_flow):
    """`{folder: {file name, …}}`, relative to the output root, of a video with these counts."""
    layout = LAYOUTS[layout_name]
    paths = [layout.rgb_file(video_id, i) for i in range(num_frames)]
    paths += [name for j in range(num_flow) for name in layout.flow_files(video_id, j)]
    files = {folder: set() for folder in video_folders(layout_name, video_id)}
    for path in paths:
        files[os.path.dirname(path)].add(os.path.basename(path))
    return files


def inspect_video_files(root, layout_name, video_id, num_frames, num_flow):
    """Compares a video's folders under `root` with the files `num_frames` RGB images and `num_flow` flow
    pairs should be.

    Each folder must hold exactly the expected names among its non-hidden files (so the count and the first
    and last number agree), and none of them may be empty.

    Returns:
      `(problem, total_bytes)`: a sentence saying what disagrees (None when all agrees), and the total size
      of the expected files found.
    """
    problems = []
    total = 0
    for folder, names in expected_files(layout_name, video_id, num_frames, num_flow).items():
        path = os.path.join(root, folder)
        try:
            with os.scandir(path) as listing:
                found = {entry.name: entry for entry in listing if not entry.name.startswith(".")}
        except FileNotFoundError:
            if names:
                problems.append(f"{folder}/ is missing ({len(names)} files expected)")
            continue
        except OSError as error:  # not a folder, no permission
            problems.append(f"{folder}/ cannot be listed ({error.strerror})")
            continue
        missing = sorted(names - found.keys())
        extra = sorted(found.keys() - names)
        empty = []
        for name in sorted(names & found.keys()):
            try:
                size = found[name].stat().st_size
            except OSError:  # a dangling link, or removed while listing
                size = 0
            total += size
            if size == 0:
                empty.append(name)
        if missing:
            problems.append(f"{folder}/ lacks {len(missing)} of its {len(names)} files (first {missing[0]})")
        if extra:
            problems.append(f"{folder}/ has {len(extra)} unexpected files (first {extra[0]})")
        if empty:
            problems.append(f"{folder}/ has {len(empty)} empty files (first {empty[0]})")
    return ("; ".join(problems) or None), total


class OutputFolder:
    """An extraction's output root and its bookkeeping folder `.prepare/`.

    Args:
      root: the output folder (created if missing).
    """

    def __init__(self, root):
        self.root = os.path.abspath(os.fspath(root))
        self.meta = os.path.join(self.root, META_DIR)
        self.tmp = os.path.join(self.meta, "tmp")
        self.done = os.path.join(self.meta, "done")
        self.report_path = os.path.join(self.meta, FAILURE_REPORT)
        self.lock_path = os.path.join(self.meta, "lock")

    def create(self):
        """Creates the output and bookkeeping folders; raises `UserError` if the output is not writable."""
        try:
            for folder in (self.root, self.tmp, self.done):
                os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise UserError(f"output folder {self.root} cannot be created: {error.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise UserError(f"output folder {self.root} is not writable")

    def marker_path(self, video_id):
        return os.path.join(self.done, f"{video_id}.json")

    def read_marker(self, video_id):
        """The marker of a video as a dict, or None when it has none (or an unreadable one)."""
        try:
            with open(self.marker_path(video_id), encoding="utf-8") as file:
                return json.load(file)
        except (OSError, ValueError):
            return None

    def check_done(self, video_id, settings):
        """Whether `video_id` was completely written with `settings`, checked against the files on disk.

        Returns:
          A `DoneCheck`; its `problem` says how the folders disagree with a marker of these settings.
        """
        marker = self.read_marker(video_id)
        if marker is None or _marker_settings(marker) != settings.to_dict():
            return DoneCheck(False)
        try:
            num_frames, num_flow = int(marker["num_frames"]), int(marker["num_flow"])
            recorded_bytes = None if "bytes" not in marker else int(marker["bytes"])  # older markers: no size
        except (KeyError, TypeError, ValueError):
            return DoneCheck(False, "its done-marker is damaged")
        problem, total = inspect_video_files(self.root, settings.layout, video_id, num_frames, num_flow)
        if problem is None and recorded_bytes is not None and total != recorded_bytes:
            problem = f"its files hold {total} bytes, the marker records {recorded_bytes}"
        return DoneCheck(problem is None, problem)

    def is_done(self, video_id, settings):
        """Whether `video_id` was completely written with `settings` (an `ExtractionSettings`); see `check_done`."""
        return self.check_done(video_id, settings).done

    @contextlib.contextmanager
    def staging(self, video_id):
        """A private temporary folder for writing one video (laid out like the output root).

        The folder is owned by this process while the block runs (a lock the kernel drops if the process
        dies), so `clean_staging` in another process leaves it alone; it is removed when the block ends.
        """
        os.makedirs(self.tmp, exist_ok=True)
        lock, folder = self._claim_staging(video_id)
        try:
            yield folder
        finally:
            # The folder goes before its lock, so a folder without a lock file never belongs to anyone.
            shutil.rmtree(folder, ignore_errors=True)
            if lock is not None:
                with contextlib.suppress(OSError):
                    os.remove(folder + _LOCK_SUFFIX)
                os.close(lock)

    def _claim_staging(self, video_id):
        if fcntl is None:
            return None, tempfile.mkdtemp(prefix=f"{video_id}.", dir=self.tmp)
        while True:
            lock, lock_path = tempfile.mkstemp(prefix=f"{video_id}.", suffix=_LOCK_SUFFIX, dir=self.tmp)
            fcntl.flock(lock, fcntl.LOCK_EX)
            # A cleaner may have taken the fresh, not yet locked file for a dead writer's and removed it.
            if _same_file(lock, lock_path):
                folder = lock_path[:-len(_LOCK_SUFFIX)]
                try:
                    os.mkdir(folder)
                except FileExistsError:  # a dead writer's folder of the same name, without its lock file
                    pass
                else:
                    os.write(lock, f"{os.getpid()}\n".encode())  # for people looking; the lock decides
                    return lock, folder
                with contextlib.suppress(OSError):
                    os.remove(lock_path)
            os.close(lock)

    def commit(self, video_id, staging, layout_name, record):
        """Checks a fully written video in `staging`, moves it into place, checks it there, writes its marker.

        Args:
          video_id: the video.
          staging: a folder from `staging` holding the video's files in the layout.
          layout_name: the layout the files were written in.
          record: JSON-ready dict stored as the marker; must include "settings", "num_frames" (RGB images)
            and "num_flow" (flow pairs). "bytes", the files' total size, is added.

        Raises:
          CommitError: the files differ from the counts, before or after the move (no marker is written;
            whatever is in place is left for the next run to redo).
        """
        counts = (int(record["num_frames"]), int(record["num_flow"]))
        problem, total = inspect_video_files(staging, layout_name, video_id, *counts)
        if problem is not None:
            raise CommitError(f"the files written for {video_id} are incomplete: {problem}")
        record = dict(record, bytes=total)
        marker = self.marker_path(video_id)
        if os.path.exists(marker):
            os.remove(marker)  # the folders are about to change: not done until the new marker is written
        # Old folders are renamed away rather than deleted in place, so the swap is a pair of renames.
        replaced = os.path.join(staging, _REPLACED)
        os.makedirs(replaced, exist_ok=True)
        for number, folder in enumerate(video_folders(layout_name, video_id)):
            destination = os.path.join(self.root, folder)
            if os.path.lexists(destination):
                os.rename(destination, os.path.join(replaced, str(number)))
            source = os.path.join(staging, folder)
            if os.path.isdir(source):
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                os.rename(source, destination)
        problem, moved = inspect_video_files(self.root, layout_name, video_id, *counts)
        if problem is None and moved != total:
            problem = f"{moved} bytes in place, {total} written"
        if problem is not None:
            raise CommitError(f"the files of {video_id} changed while being moved into place: {problem}")
        _write_atomically(marker, json.dumps(record, sort_keys=True, indent=1) + "\n", scratch=staging)
        shutil.rmtree(replaced, ignore_errors=True)

    def clean_staging(self):
        """Removes the temporary folders whose writers are gone (killed runs); never a live writer's."""
        os.makedirs(self.tmp, exist_ok=True)
        for name in os.listdir(self.tmp):
            path = os.path.join(self.tmp, name)
            if fcntl is None:
                _remove(path)
            elif name.endswith(_LOCK_SUFFIX):
                _remove_if_abandoned(path)
            elif not os.path.lexists(path + _LOCK_SUFFIX):
                # Writers create the lock file before the folder and remove it after: a folder without one
                # has no writer (or is an older version's).
                _remove(path)
        for folder in (self.done, self.meta):
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith(_WRITING_PREFIX):
                        os.remove(os.path.join(folder, name))

    def write_failure_report(self, failures):
        """Writes `failures.tsv`: a header, then `path<TAB>reason` per failed video, sorted by path.

        Args:
          failures: iterable of `(path, reason)`.

        Returns:
          The report's path.
        """
        lines = ["path\treason\n"]
        for path, reason in sorted(failures):
            lines.append(f"{path}\t{' '.join(str(reason).split())}\n")
        _write_atomically(self.report_path, "".join(lines))
        return self.report_path

    @contextlib.contextmanager
    def exclusive(self):
        """Holds the output's lock; raises `UserError` if another run holds it."""
        if fcntl is None:  # no advisory locks on this platform: run unguarded
            yield
            return
        self.create()
        with open(self.lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not _same_file(lock.fileno(), self.lock_path):
                    raise BlockingIOError  # the holder removed it as we opened it, and another run may follow
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip()
                raise UserError(f"another extraction{f' (process {holder})' if holder.isdigit() else ''} is "
                                f"writing to {self.root}; wait for it to finish") from None
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            try:
                yield
            finally:
                os.remove(self.lock_path)


def _marker_settings(marker):
    """The settings a marker was written with; markers from before the RGB numbering choice wrote every
    frame, so they count as `rgb_frames="all"` (a rerun with that keeps their videos)."""
    settings = marker.get("settings")
    if isinstance(settings, dict) and "rgb_frames" not in settings:
        settings = dict(settings, rgb_frames="all")
    return settings


def _same_file(descriptor, path):
    """Whether `path` still names the open file `descriptor` (not removed or replaced meanwhile)."""
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _remove_if_abandoned(lock_path):
    """Removes a staging folder and its lock file if no live process holds the lock."""
    try:
        lock = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its writer is alive
        if _same_file(lock, lock_path):
            shutil.rmtree(lock_path[:-len(_LOCK_SUFFIX)], ignore_errors=True)
            os.remove(lock_path)
    finally:
        os.close(lock)


def _write_atomically(path, text, scratch=None):
    """Writes `path` whole or not at all, through a temporary file in `scratch` (default: its folder)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=_WRITING_PREFIX, dir=scratch or folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
