"""`two-stream prepare` killed with SIGKILL: no orphaned workers, no live writer's files deleted, and nothing
counted as done that differs from an uninterrupted run. Real processes, real signals; no timing is asserted
beyond generous deadlines for processes to go away."""
import hashlib
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

from two_stream_tf import cli
from two_stream_tf.data.synthetic import write_synthetic_dataset
from two_stream_tf.preparation import ExtractionSettings, OutputFolder, prepare_videos

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
GONE_DEADLINE = 180  # seconds for killed processes to disappear, even with every core busy


def start_prepare(videos, output, *flags):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "two_stream_tf.cli", "prepare", str(videos), str(output), *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def process_table():
    """{pid: (parent pid, start time)} of every process, from /proc."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(name)] = (int(fields[1]), int(fields[19]))
    return found


def descendants(pid):
    """The processes started, directly or not, by `pid`, as `(pid, start time)` (a pid may be reused)."""
    table = process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - {p for p, _ in found}
        found |= {(child, table[child][1]) for child in frontier}
    return found


def running(process):
    """Whether `(pid, start time)` is still a live process (not gone, not a zombie waiting to be reaped)."""
    pid, start = process
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == start and fields[0] != "Z"


def wait_until_gone(processes):
    deadline = time.monotonic() + GONE_DEADLINE
    while time.monotonic() < deadline and any(running(process) for process in processes):
        time.sleep(0.1)
    return {process for process in processes if running(process)}


def is_pool_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"spawn_main" in cmdline.read()
    except OSError:
        return False


def tree_hashes(root):
    """{relative path: sha256} of the files under root."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory):
    """Six small synthetic AVIs (40 frames, 64×48): a run of them takes a few seconds."""
    dataset = write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_classes=2, videos_per_class=3,
                                      num_frames=40, frame_size=(64, 48), write_frames=False, progress=False)
    return pathlib.Path(dataset.videos_dir)


FLAGS = ["--flow", "dis", "--size", "64x48", "--workers", "2", "--no-progress"]
SETTINGS = ExtractionSettings(flow_method="dis", size=(64, 48))


def video_files(hashes, video):
    """The entries of `tree_hashes` that belong to one video: its frames and its done-marker."""
    return {k: v for k, v in hashes.items() if k.startswith(f"{video}/") or k == f".prepare/done/{video}.json"}


def test_kill_9_at_random_moments_never_leaves_a_done_video_unlike_an_uninterrupted_run(small_videos, tmp_path):
    # The reference is written by one process: what a video's files hold must not depend on which worker
    # wrote it after which other videos.
    reference = tmp_path / "reference"
    assert cli.main(["prepare", str(small_videos), str(reference), *FLAGS[:-3], "--workers", "1", "--no-progress"]) == 0
    expected = tree_hashes(reference)
    output = tmp_path / "killed"
    folder = OutputFolder(output)
    moments = [random.Random(seed).uniform(0.3, 4.0) for seed in range(5)]
    started = set()
    for moment in moments:
        # Each run starts right after the previous one was killed, as a crash loop would restart it.
        process = start_prepare(small_videos, output, *FLAGS)
        deadline = time.monotonic() + moment
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        started |= descendants(process.pid)
        process.send_signal(signal.SIGKILL)  # the parent only, as the OOM killer or `kill -9 PID` would
        process.wait()
        # Whatever counts as done now is exactly what the uninterrupted run wrote.
        done = [name[:-len(".json")] for name in os.listdir(folder.done)] if os.path.isdir(folder.done) else []
        written = tree_hashes(output)
        for video in done:
            assert folder.is_done(video, SETTINGS), video
            assert video_files(written, video) == video_files(expected, video), video
    # No worker outlived the run that started it.
    assert not wait_until_gone(started)
    assert cli.main(["prepare", str(small_videos), str(output), *FLAGS]) == 0
    assert tree_hashes(output) == expected
    assert os.listdir(folder.tmp) == []


@pytest.mark.parametrize("moment", ["workers starting", "workers extracting"])
def test_workers_do_not_outlive_a_killed_parent(shared_data, tmp_path, moment):
    # TV-L1 at 340×256 on two long clips: minutes of work, so a surviving worker would still be busy (and a
    # pool worker that has run out of work waits for more forever rather than exit).
    clips = [shared_data / "videos/ucf101/v_Billiards_g15_c01.avi", shared_data / "videos/ucf101/v_FrontCrawl_g23_c04.avi"]
    listing = tmp_path / "videos.txt"
    listing.write_text("".join(f"{clip}\n" for clip in clips))
    output = tmp_path / "out"
    folder = OutputFolder(output)
    process = start_prepare(listing, output, "--flow", "tvl1", "--workers", "2", "--no-progress")
    workers = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            workers = [pid for pid, _ in descendants(process.pid) if is_pool_worker(pid)]
            if moment == "workers starting" and len(workers) == 2:
                break  # spawned, most likely still importing: before they could ask to die with the parent
            if moment == "workers extracting" and os.path.isdir(folder.tmp) and any(
                    name.endswith(".jpg") for _, _, names in os.walk(folder.tmp) for name in names):
                break
            time.sleep(0.01)
        started = descendants(process.pid)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before the moment to kill it"
    assert len(workers) == 2, "no two pool workers seen before the kill"
    assert {pid for pid, _ in started} >= set(workers)
    assert not wait_until_gone(started), "workers outlived their parent"
    assert not os.path.isdir(folder.done) or os.listdir(folder.done) == []


def test_a_run_never_removes_a_live_writers_staging_folder(shared_data, tmp_path):
    output = tmp_path / "out"
    # Another process writing a video (a Beam worker, or a second tool) holds its staging folder.
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from two_stream_tf.preparation import OutputFolder\n"
         "with OutputFolder(sys.argv[1]).staging('v_Live') as folder:\n"
         "    open(folder + '/half.jpg', 'wb').write(b'written so far')\n"
         "    print(folder, flush=True)\n"
         "    time.sleep(600)\n", str(output)],
        stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])))
    try:
        live = pathlib.Path(writer.stdout.readline().strip())
        assert (live / "half.jpg").read_bytes() == b"written so far"
        summary = prepare_videos([shared_data / "videos/ucf101/v_PushUps_g02_c03.avi"], output, flow_method="dis",
                                 short_side=32, max_frames=4, progress=False)  # cleans up before and after
        assert summary.exit_code == 0
        assert (live / "half.jpg").read_bytes() == b"written so far"
    finally:
        writer.kill()
        writer.wait()
    # Its writer is gone: the next clean-up removes it.
    OutputFolder(output).clean_staging()
    assert not live.exists() and os.listdir(OutputFolder(output).tmp) == []
