"""Many videos: a resumable, parallel extraction run with a progress bar and a failure report."""
import concurrent.futures
import concurrent.futures.process
import dataclasses
import multiprocessing
import os
import time

import cv2
from tqdm.auto import tqdm

from two_stream_tf.errors import UserError
from two_stream_tf.flow.quantize import DEFAULT_BOUND
from two_stream_tf.preparation.discovery import check_unique_ids, video_id
from two_stream_tf.preparation.extract import EXTRACTED, FAILED, SKIPPED, VideoResult, extract_with_settings
from two_stream_tf.preparation.output import OutputFolder
from two_stream_tf.preparation.settings import DEFAULT_SIZE, ExtractionSettings
from two_stream_tf.preparation.video import quiet_opencv_warnings


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
    """The outcome of `prepare_videos`.

    Attributes:
      output_root: where the frames are.
      results: one `VideoResult` per input video, in input order.
      seconds: wall time of the run.
      report_path: the failure report (`path<TAB>reason` lines; only a header when nothing failed).
    """

    output_root: str
    results: tuple
    seconds: float
    report_path: str

    def _with_status(self, status):
        return tuple(r for r in self.results if r.status == status)

    @property
    def extracted(self):
        return self._with_status(EXTRACTED)

    @property
    def skipped(self):
        return self._with_status(SKIPPED)

    @property
    def failed(self):
        return self._with_status(FAILED)

    @property
    def frames_written(self):
        """RGB frames written in this run (skipped videos not counted)."""
        return sum(r.num_frames for r in self.extracted)

    @property
    def exit_code(self):
        """0 when every video is done, 1 when some failed."""
        return 1 if self.failed else 0

    def describe(self):
        """A few lines for people: counts, speed and each failure with its reason."""
        speed = self.frames_written / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{len(self.results)} videos into {self.output_root}: {len(self.extracted)} extracted, "
                 f"{len(self.skipped)} already done, {len(self.failed)} failed; {self.frames_written} frames "
                 f"in {self.seconds:.1f} s ({speed:.1f} frames/s)"]
        if self.failed:
            lines.append(f"failed videos (also listed in {self.report_path}):")
            lines.extend(f"  {r.source}: {r.error}" for r in self.failed)
        noted = [r for r in self.results if r.note]
        if noted:
            lines.append("notes:")
            lines.extend(f"  {r.source}: {r.note}" for r in noted)
        return "\n".join(lines)


def available_cpus():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def prepare_videos(video_paths, output_root, *, workers=1, progress=True, opencv_threads=None, layout="tsn",
                   size=DEFAULT_SIZE, short_side=None, flow_method="tvl1", bound=DEFAULT_BOUND, jpeg_quality=95,
                   max_frames=None, rgb_frames=None, short_decode="fail"):
    """Extracts RGB frames and optical flow of many videos, in parallel and resumably.

    Videos already done with the same settings, whose folders still hold exactly the files their markers
    record, are skipped; the others are (re-)extracted. Temporary folders left by killed runs are removed
    first (never one a live process is writing). A video that cannot be read, or decodes short of its
    container's frame count, is recorded (summary and `.prepare/failures.tsv`) and the run goes on. Each
    video goes to `<output_root>/<video_id>/…` (or the layout's folders), video id = file stem. Worker
    processes die with the process that started them (Linux), so a killed run leaves no writer behind.

    Args:
      video_paths: video files (see `find_videos`); their stems must be unique.
      output_root: the dataset root to write into.
      workers: processes extracting videos side by side (1 = in this process).
      progress: show a tqdm bar with videos/s and frames/s.
      opencv_threads: OpenCV (and FFmpeg decoding) threads per worker; None = cores // workers, at least 1,
        so OpenCV's own thread pool does not fight the process pool for cores.
      layout, size, short_side, flow_method, bound, jpeg_quality, max_frames, rgb_frames, short_decode: as
        in `extract_video`.

    Returns:
      A `PrepareSummary`.

    Raises:
      UserError: bad arguments, duplicate video ids, an unwritable output, or another run on the output.
    """
    settings = ExtractionSettings(layout=layout, size=size, short_side=short_side, flow_method=flow_method,
                                  bound=bound, jpeg_quality=jpeg_quality, max_frames=max_frames,
                                  rgb_frames=rgb_frames, short_decode=short_decode)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be a whole number ≥ 1, got {workers!r}")
    if opencv_threads is not None and (not isinstance(opencv_threads, int) or opencv_threads < 1):
        raise UserError(f"opencv_threads must be a whole number ≥ 1, got {opencv_threads!r}")
    paths = [os.fspath(p) for p in video_paths]
    check_unique_ids(paths)
    output = OutputFolder(output_root)
    started = time.perf_counter()
    with output.exclusive():
        output.clean_staging()
        results = {}
        pending = []
        for path in paths:
            # Checked again (with a note when a folder disagrees with its marker) as each video starts.
            if output.is_done(video_id(path), settings):
                marker = output.read_marker(video_id(path))
                results[path] = VideoResult(video_id(path), path, SKIPPED, marker["num_frames"], marker["num_flow"])
            else:
                pending.append(path)
        with tqdm(total=len(paths), initial=len(results), unit="video", disable=not progress,
                  desc="prepare", dynamic_ncols=True) as bar:
            progress_line = _Progress(bar)
            # No more processes than videos left, and the cores shared out among the processes.
            processes = min(workers, max(1, len(pending)))
            threads = opencv_threads or max(1, available_cpus() // processes)
            for result in _run(pending, output.root, settings, processes, threads, progress_line):
                results[result.source] = result
                progress_line.video_finished(result)
        output.clean_staging()
        report = output.write_failure_report((r.source, r.error) for r in results.values() if r.status == FAILED)
    return PrepareSummary(output.root, tuple(results[p] for p in paths), time.perf_counter() - started, report)


class _Progress:
    """The bar counts videos; its postfix shows live videos/s, frames/s and failures of this run."""

    def __init__(self, bar):
        self.bar = bar
        self.started = self.shown = time.perf_counter()
        self.videos = self.frames = self.failed = 0

    def frames_written(self, frames):
        """Frames written so far in this run (also inside videos still being written)."""
        self.frames = frames
        if time.perf_counter() - self.shown > 0.5:
            self._show()

    def video_finished(self, result):
        self.videos += 1
        self.failed += result.status == FAILED
        self.bar.update(1)
        self._show()

    def _show(self):
        self.shown = time.perf_counter()
        elapsed = max(self.shown - self.started, 1e-9)
        self.bar.set_postfix_str(f"{self.videos / elapsed:.2f} videos/s, {self.frames / elapsed:.1f} frames/s, "
                                 f"{self.failed} failed")


def _run(paths, output_root, settings, workers, threads, progress):
    """Yields a `VideoResult` per path as videos finish, telling `progress` about every frame."""
    if not paths:
        return
    if workers == 1:
        frames = 0

        def on_frame():
            nonlocal frames
            frames += 1
            progress.frames_written(frames)

        previous = cv2.getNumThreads()
        cv2.setNumThreads(threads)
        try:
            for path in paths:
                yield _extract_one(path, output_root, settings, on_frame)
        finally:
            cv2.setNumThreads(previous)
        return
    # "spawn": forking a process that already runs threads (TensorFlow, a notebook kernel) can deadlock.
    context = multiprocessing.get_context("spawn")
    frames = context.Value("q", 0)  # frames written by all workers, for the progress bar
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                                initargs=(threads, frames, os.getpid())) as pool:
        running = {pool.submit(_extract_one, path, output_root, settings) for path in paths}
        try:
            while running:
                finished, running = concurrent.futures.wait(running, timeout=0.5,
                                                            return_when=concurrent.futures.FIRST_COMPLETED)
                progress.frames_written(frames.value)
                for future in finished:
                    yield future.result()
        except concurrent.futures.process.BrokenProcessPool as error:
            raise RuntimeError("a worker process died (killed, or out of memory?) while extracting; finished "
                               "videos are kept: run the same command again to resume") from error
        except BaseException:
            for future in running:
                future.cancel()
            raise


_worker_frames = None


def _init_worker(threads, frames, parent_pid):
    # First of all, before any work: a worker must never outlive the run that started it (it would write
    # without the output's lock while a rerun cleans up and extracts the same videos).
    die_with_parent(parent_pid)
    global _worker_frames
    _worker_frames = frames
    cv2.setNumThreads(threads)
    quiet_opencv_warnings()  # the failure report says which videos could not be read


def die_with_parent(parent_pid):
    """Makes this process die when `parent_pid`, the process that started it, dies.

    On Linux the kernel is asked to SIGKILL this process when its parent exits (PR_SET_PDEATHSIG); as that
    request only covers a parent still alive when it is made, the parent is checked afterwards, and this
    process exits at once if it has already been orphaned (re-parented to init or a subreaper). Elsewhere
    only that check is made, once.
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent_pid:
        os._exit(1)  # the run that started this worker is gone: no work, no clean-up of its queues


def _count_worker_frame():
    with _worker_frames.get_lock():
        _worker_frames.value += 1


def _extract_one(path, output_root, settings, on_frame=None):
    if on_frame is None and _worker_frames is not None:
        on_frame = _count_worker_frame
    try:
        return extract_with_settings(path, output_root, settings, on_frame=on_frame)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as error:  # a bad video must not stop the run; say what happened
        return VideoResult(video_id(path), path, FAILED, error=f"{type(error).__name__}: {error}")
