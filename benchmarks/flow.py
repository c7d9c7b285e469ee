"""How fast is flow extraction, and what does the extractor cost on top of the optical flow itself?

On real UCF-101 / HMDB-51 clips at 340×256, for each method (TV-L1, DIS, Farneback):

  bare     a loop calling the same OpenCV flow object on the same frames, already decoded, resized and
           grayscale in memory: the floor;
  extract  `extract_video` on the same frames: decode, resize, flow, quantise, JPEG-encode, write, commit.

Both run on one core (`cv2.setNumThreads(1)`), clip by clip alternately so that load from other processes
hits both alike. Speeds are frame pairs (flow images) per second; overhead = extract time / bare time - 1,
from wall-clock time and, steadier on a shared machine, from the process's CPU time.
Then TV-L1 through `prepare_videos` with 1 worker vs 2 worker processes (one OpenCV thread each), and 1
worker using 2 OpenCV threads, to show why processes beat threads for TV-L1.

    python benchmarks/flow.py            # a table and ratios
    python benchmarks/flow.py --json     # {"tvl1": {"extract_fps", "bare_fps", "overhead"}, …, "workers_scaling": …}

The real clips are found in ../shared/data/videos beside the project, or give --videos.
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import cv2

from two_stream_tf.flow.compute import FLOW_METHODS, get_optical_flow
from two_stream_tf.preparation import extract_video, find_videos, prepare_videos, read_frames

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_VIDEOS = PROJECT_ROOT.parent / "shared" / "data" / "videos" / "ucf101"
SIZE = (340, 256)
UCF101_FRAMES = 2_500_000


def load_gray_frames(path, count):
    frames = []
    for frame in read_frames(path, decoder_threads=1):
        frame = cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if len(frames) == count:
            break
    return frames


class Timer:
    """Wall time and this process's CPU time (user + system) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bare_loop(method, frames):
    flow = get_optical_flow(method)
    with Timer() as timer:
        for first, second in zip(frames, frames[1:]):
            flow.calc(first, second, None)
    return timer


def extract(method, clip, frames, output):
    output = tempfile.mkdtemp(dir=output)  # a fresh root: no old folders to swap out
    with Timer() as timer:
        result = extract_video(clip, output, flow_method=method, size=SIZE, max_frames=frames)
    if result.status != "extracted":
        raise RuntimeError(f"{clip}: {result.error}")
    return timer


def measure_method(method, clips, frames_per_clip, output):
    """Bare loop vs whole extractor on the same frames, one core; wall-clock and CPU-time rates."""
    cv2.setNumThreads(1)
    get_optical_flow(method)  # create outside the timed loops
    bare = {"wall": 0.0, "cpu": 0.0}
    whole = {"wall": 0.0, "cpu": 0.0}
    pairs = 0
    for clip in clips:
        frames = load_gray_frames(clip, frames_per_clip)
        for totals, timer in ((bare, bare_loop(method, frames)), (whole, extract(method, clip, len(frames), output))):
            totals["wall"] += timer.wall
            totals["cpu"] += timer.cpu
        pairs += len(frames) - 1
    return {"extract_fps": pairs / whole["wall"], "bare_fps": pairs / bare["wall"],
            "overhead": whole["wall"] / bare["wall"] - 1.0,
            # CPU time hardly depends on what else the machine runs: the steadier overhead figure.
            "extract_cpu_fps": pairs / whole["cpu"], "bare_cpu_fps": pairs / bare["cpu"],
            "overhead_cpu": whole["cpu"] / bare["cpu"] - 1.0, "pairs": pairs}


def measure_workers(clips, frames_per_clip, output):
    """TV-L1 over several clips: 1 worker × 1 thread, 2 workers × 1 thread, 1 worker × 2 threads."""
    pairs = len(clips) * (frames_per_clip - 1)
    runs = {}
    for name, workers, threads in (("1_worker", 1, 1), ("2_workers", 2, 1), ("1_worker_2_threads", 1, 2)):
        with tempfile.TemporaryDirectory(dir=output) as folder:
            started = time.perf_counter()
            summary = prepare_videos(clips, folder, workers=workers, opencv_threads=threads, progress=False,
                                     flow_method="tvl1", size=SIZE, max_frames=frames_per_clip)
            seconds = time.perf_counter() - started
        if summary.failed:
            raise RuntimeError(summary.describe())
        runs[name] = pairs / seconds
    return {"method": "tvl1", "videos": len(clips), "pairs": pairs,
            "1_worker_fps": runs["1_worker"], "2_workers_fps": runs["2_workers"],
            "1_worker_2_threads_fps": runs["1_worker_2_threads"],
            "speedup_2_workers": runs["2_workers"] / runs["1_worker"],
            "speedup_2_threads": runs["1_worker_2_threads"] / runs["1_worker"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--videos", default=str(DEFAULT_VIDEOS), help="folder of real clips")
    parser.add_argument("--clips", type=int, default=3, help="clips per method")
    parser.add_argument("--tvl1-frames", type=int, default=5, help="frames per clip for TV-L1 (~1.5 s per pair)")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip for DIS and Farneback")
    parser.add_argument("--scaling-clips", type=int, default=4, help="clips for the 1 vs 2 workers run")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.videos):
        parser.error(f"--videos: {args.videos} is not a folder")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    clips = find_videos(args.videos)
    results = {"load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as output:
        for method in FLOW_METHODS:
            frames = args.tvl1_frames if method == "tvl1" else args.frames
            results[method] = measure_method(method, clips[:args.clips], frames, output)
        results["workers_scaling"] = measure_workers(clips[args.clips:args.clips + args.scaling_clips],
                                                     args.tvl1_frames, output)
    results["load_average_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"340x256, one core each; load average {results['load_average_before']:.2f} before, "
          f"{results['load_average_after']:.2f} after")
    print(f"{'method':<10} {'bare fps':>9} {'extract fps':>12} {'overhead':>9} {'CPU overhead':>13}   "
          "UCF-101 (2.5 M frames) on one core")
    for method in FLOW_METHODS:
        r = results[method]
        hours = UCF101_FRAMES / r["extract_fps"] / 3600
        print(f"{method:<10} {r['bare_fps']:>9.2f} {r['extract_fps']:>12.2f} {r['overhead']:>8.1%} "
              f"{r['overhead_cpu']:>13.1%}   {hours:,.0f} h")
    s = results["workers_scaling"]
    print(f"TV-L1 workers: 1 worker {s['1_worker_fps']:.2f} fps, 2 workers {s['2_workers_fps']:.2f} fps "
          f"(x{s['speedup_2_workers']:.2f}); 1 worker with 2 OpenCV threads {s['1_worker_2_threads_fps']:.2f} fps "
          f"(x{s['speedup_2_threads']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
