"""The output folder of an extraction and how a video is committed to it safely.

A video's frames are written into a private temporary folder under `<output>/.prepare/tmp/`, on the same file
system as the output, then its folders are renamed into place and only then a done-marker
`<output>/.prepare/done/<video_id>.json` is written. A video counts as done only when its marker exists and
was written with the same settings, so a run killed at any moment leaves nothing half-written that counts
as done: a rerun removes the stale temporary folders, re-extracts the videos without a marker (replacing
whatever partial folders they have) and skips the rest. Markers and the failure report hold no times or
process ids, so equal runs write equal bytes (the Beam pipeline and `two-stream prepare` do). This guards
against the process dying (killed, interrupted, out of memory), not against the machine losing power or
crashing before its page cache reaches the disk: files are not fsynced, which would cost more than the JPEG
encoding.

Layout of `<output>/.prepare/`:

  done/<video_id>.json   one marker per finished video: source, frame and flow counts, settings
  tmp/                   temporary folders of videos being written (removed by the next run)
  failures.tsv           `path<TAB>reason` of the videos that failed in the last run
  lock                   held while `prepare_videos` runs, so two runs never write the same output
"""
import contextlib
import json
import os
import shutil
import tempfile

from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.errors import UserError

META_DIR = ".prepare"
FAILURE_REPORT = "failures.tsv"
_WRITING_PREFIX = ".writing-"


def video_folders(layout_name, video_id):
    """The folders, relative to the output root, that hold a video's files in a layout.

    One folder for the TSN layout; three (RGB, x flow, y flow) for twostreamfusion. Taken from the layout's
    own file names, so every layout in `LAYOUTS` works.
    """
    layout = LAYOUTS[layout_name]
    names = [layout.rgb_file(video_id, 0), *layout.flow_files(video_id, 0)]
    return sorted({os.path.dirname(name) for name in names})


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

    def is_done(self, video_id, settings):
        """Whether `video_id` was completely written with `settings` (an `ExtractionSettings`)."""
        marker = self.read_marker(video_id)
        if marker is None or marker.get("settings") != settings.to_dict():
            return False
        rgb_folder = os.path.dirname(LAYOUTS[settings.layout].rgb_file(video_id, 0))
        return os.path.isdir(os.path.join(self.root, rgb_folder))

    def new_staging(self, video_id):
        """A new private temporary folder for writing one video (laid out like the output root)."""
        os.makedirs(self.tmp, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{video_id}.", dir=self.tmp)

    def commit(self, video_id, staging, layout_name, record):
        """Moves a fully written video from `staging` into place, then writes its done-marker.

        Args:
          video_id: the video.
          staging: a folder from `new_staging` holding the video's files in the layout.
          layout_name: the layout the files were written in.
          record: JSON-ready dict stored as the marker (must include "settings").
        """
        marker = self.marker_path(video_id)
        if os.path.exists(marker):
            os.remove(marker)  # the folders are about to change: not done until the new marker is written
        # Old folders are renamed away rather than deleted in place, so the swap is a pair of renames.
        trash = tempfile.mkdtemp(prefix=f"{video_id}.old-", dir=self.tmp)
        for number, folder in enumerate(video_folders(layout_name, video_id)):
            destination = os.path.join(self.root, folder)
            if os.path.lexists(destination):
                os.rename(destination, os.path.join(trash, str(number)))
            source = os.path.join(staging, folder)
            if os.path.isdir(source):
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                os.rename(source, destination)
        _write_atomically(marker, json.dumps(record, sort_keys=True, indent=1) + "\n")
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)

    def clean_staging(self):
        """Removes every temporary folder (what runs killed before committing left behind)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp, exist_ok=True)
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
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: run unguarded
            yield
            return
        self.create()
        with open(self.lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another extraction is writing to {self.root}; wait for it to finish") from None
            try:
                yield
            finally:
                os.remove(self.lock_path)


def _write_atomically(path, text):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=_WRITING_PREFIX, dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
