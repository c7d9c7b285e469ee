"""Input throughput through the tf.data service: 1 and 2 local workers against the local pipeline.

    python benchmarks/data_service.py [--json] [--seconds 6] [--rounds 2] [--configs …]

Frames come from real UCF-101 clips in `../shared/data/videos/ucf101` (or `--videos`), extracted by
`two_stream_tf.preparation.prepare_videos` (what `two-stream prepare` runs) at 340×256 with DIS flow into a
temporary folder deleted afterwards. The pipeline is `temporal_dataset` in training mode (multi-scale
corner crops, flips, 224×224, L = 10, batch 32 as in `benchmarks/input_pipeline.py`, `strict=True` as the
service needs), read

  local              directly in this process;
  service_1          through a dispatcher with 1 worker (`LocalService`: separate `two-stream data-service`
                     processes on 127.0.0.1) with `distribute_dataset`'s defaults: whole batches, float32,
                     Snappy compression as TensorFlow chooses;
  service_1_raw      the same without compression;
  service_1_raw_f16  and the stacks sent as float16 (`transfer_dtype="float16"`), half the bytes;
  service_1_tuned    and single stacks sent, batched again here (`batch_size=32`);
  service_2_tuned    the tuned settings with 2 workers;

(`--configs` picks; the default leaves out the two intermediate steps) in interleaved rounds, so that load
from other processes hits every figure alike; each service configuration gets fresh server processes. For
each: stacks/s delivered to this process, CPU milliseconds per stack spent in this process (the trainer's
side) and in the server processes together (medians over the rounds: what it costs on an otherwise idle
machine), the servers' peak memory, and, from a fresh start, the fraction of distinct stacks among the
first batches: a worker that duplicates another's work shows up there.

On one machine, workers share its cores with the trainer (here: the benchmark loop), so more local workers
cannot be faster than the local pipeline; the service pays off when the workers run on other machines.
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PROJECT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
DEFAULT_VIDEOS = PROJECT.parent / "shared" / "data" / "videos" / "ucf101"
IMAGE_SIZE, STACK_LENGTH, BATCH = 224, 10, 32
MAX_SERVER_MB = 6000

CONFIGS = ("local", "service_1", "service_1_tuned", "service_2_tuned")  # the default run
# distribute_dataset arguments of each configuration read through the service.
SERVICE_OPTIONS = {
    "service_1": {},
    "service_1_raw": dict(compression=None),
    "service_1_raw_f16": dict(compression=None, transfer_dtype="float16"),
    "service_1_tuned": dict(compression=None, transfer_dtype="float16", batch_size=BATCH),
    "service_2_tuned": dict(compression=None, transfer_dtype="float16", batch_size=BATCH),
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(server_pids):
    """(CPU seconds of this process, of the server processes together)."""
    return np.array([time.process_time(), sum(process_cpu_seconds(pid) for pid in server_pids)])


def measure(iterator, seconds, server_pids, warmup=3):
    """(stacks/s, CPU ms per stack in this process, CPU ms per stack in the servers) of an endless iterator."""
    for _ in range(warmup):
        next(iterator)
    count, start, cpu = 0, time.perf_counter(), cpu_seconds(server_pids)
    while time.perf_counter() - start < seconds:
        count += int(next(iterator)[1].shape[0])
    elapsed, used = time.perf_counter() - start, cpu_seconds(server_pids) - cpu
    return (count / elapsed, *(1e3 * used / count))


def memory_mb(pid, field):
    """A memory figure of a process in MB from /proc/PID/status: "VmRSS" (now) or "VmHWM" (peak)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def check_memory(server_pids):
    # The machine is shared: stop rather than let buffered jobs crowd it out.
    largest = max(memory_mb(pid, "VmRSS") for pid in server_pids)
    if largest > MAX_SERVER_MB:
        raise SystemExit(f"a server process holds {largest:,.0f} MB (limit {MAX_SERVER_MB:,} MB); stopping")


def distinct_fraction(dataset, batches):
    """Distinct stacks / stacks among the first `batches` batches of a fresh iterator."""
    prints = [x[::7, ::7].tobytes() for xs, _ in dataset.take(batches).as_numpy_iterator() for x in xs]
    return len(set(prints)) / len(prints)


def frame_index(videos_dir, root, clips, max_frames):
    """Extracts `clips` clips (340×256 frames, DIS flow, TSN layout) and indexes them as two classes."""
    from two_stream_tf.data.index import build_index
    from two_stream_tf.data.splits import SplitEntry
    from two_stream_tf.preparation import find_videos, prepare_videos

    paths = sorted(find_videos(videos_dir))[:clips]
    if not paths:
        raise SystemExit(f"no videos in {videos_dir} (pass --videos)")
    prepare_videos(paths, root, workers=os.cpu_count() or 1, progress=False, flow_method="dis",
                   max_frames=max_frames)
    entries = [SplitEntry(pathlib.Path(p).stem, i % 2, f"C{i % 2}/{pathlib.Path(p).name}") for i, p in enumerate(paths)]
    return build_index(root, entries, ("C0", "C1"), layout="tsn", cache=False)


def measure_config(config, make_dataset, args, log_dir, count_distinct):
    """(stacks/s, trainer CPU ms/stack, server CPU ms/stack, distinct fraction or None, server peak MB).

    A service configuration gets its own dispatcher and workers, stopped afterwards: a tf.data service worker
    keeps producing into its buffers for a job until the dispatcher removes it, and keeps the memory
    (gigabytes for whole batches of float stacks), so servers shared between configurations would disturb
    each other's figures and crowd the machine.
    """
    from two_stream_tf.data.local_service import LocalService

    if config == "local":
        rate, trainer, server = measure(iter(make_dataset(config, None)), args.seconds, [])
        distinct = distinct_fraction(make_dataset(config, None), args.distinct_batches) if count_distinct else None
        return rate, trainer, server, distinct, 0.0
    with LocalService(num_workers=2 if config.startswith("service_2") else 1, log_dir=log_dir) as local:
        pids = [server.process.pid for server in (local.dispatcher, *local.workers)]
        # First, from a fresh start of the workers, whether they duplicate each other.
        distinct = distinct_fraction(make_dataset(config, local.address), args.distinct_batches) if count_distinct else None
        check_memory(pids)
        rate, trainer, server = measure(iter(make_dataset(config, local.address)), args.seconds, pids)
        check_memory(pids)
        peak = max(memory_mb(pid, "VmHWM") for pid in pids)
    return rate, trainer, server, distinct, peak


def run(args):
    work = tempfile.mkdtemp(prefix="data_service_bench_")
    try:
        index = frame_index(args.videos, os.path.join(work, "frames"), args.clips, args.max_frames)
        from two_stream_tf.data import pipelines
        from two_stream_tf.data.service import distribute_dataset

        def make_dataset(config, address):
            data = pipelines.temporal_dataset(index, training=True, batch_size=BATCH, image_size=IMAGE_SIZE,
                                              stack_length=STACK_LENGTH, seed=0, strict=True, repeat=True)
            if config == "local":
                return data
            return distribute_dataset(data, address, training=True, **SERVICE_OPTIONS[config])

        results = {config: [] for config in args.configs}
        for round_number in range(args.rounds):
            for config in args.configs:
                results[config].append(measure_config(config, make_dataset, args, tempfile.mkdtemp(dir=work),
                                                       count_distinct=round_number == 0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    configs = args.configs
    rates, trainer_ms, server_ms, distinct, peaks = (
        {config: [row[i] for row in results[config]] for config in configs} for i in range(5))
    mean = {config: float(np.mean(values)) for config, values in rates.items()}
    report = {"configs": list(configs)}
    report.update({f"{config}_stacks_per_s": mean[config] for config in configs})
    report.update({f"{config}_trainer_cpu_ms_per_stack": float(np.median(trainer_ms[config])) for config in configs})
    report.update({f"{config}_server_cpu_ms_per_stack": float(np.median(server_ms[config])) for config in configs})
    report.update({f"{config}_distinct_fraction": distinct[config][0] for config in configs})
    report.update({f"{config}_server_peak_mb": max(peaks[config]) for config in configs if config != "local"})
    if "local" in mean:
        report.update({f"{config}_ratio_to_local": mean[config] / mean["local"] for config in configs if config != "local"})
    for better, base in (("service_1_tuned", "service_1"), ("service_2_tuned", "service_1_tuned")):
        if better in mean and base in mean:
            report[f"{better}_ratio_to_{base}"] = mean[better] / mean[base]
    report.update(
        megabytes_per_stack=IMAGE_SIZE * IMAGE_SIZE * 2 * STACK_LENGTH * 4 / 1e6,
        cores=os.cpu_count(), rounds=args.rounds, videos=len(index),
        load_average=[round(x, 2) for x in os.getloadavg()],
        per_round={config: [round(x, 1) for x in values] for config, values in rates.items()})
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--videos", default=str(DEFAULT_VIDEOS), help="folder of .avi clips")
    parser.add_argument("--clips", type=int, default=10, help="clips to extract (default 10)")
    parser.add_argument("--max-frames", type=int, default=100, help="frames per clip (default 100)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per measurement (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--distinct-batches", type=int, default=6, help="batches checked for duplicates (default 6)")
    parser.add_argument("--configs", nargs="+", choices=("local", *SERVICE_OPTIONS), default=list(CONFIGS),
                        help=f"what to measure (default: {' '.join(CONFIGS)})")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['videos']} clips at 340x256; temporal stacks L={STACK_LENGTH}, {IMAGE_SIZE}x{IMAGE_SIZE}, "
          f"batch {BATCH} ({report['megabytes_per_stack']:.1f} MB per float32 stack); {report['cores']} cores; "
          f"load average {report['load_average']}")
    print(f"{'':19}{'stacks/s':>10}{'CPU ms/stack: trainer':>23}{'servers':>9}{'distinct':>10}{'server MB':>11}")
    for config in report["configs"]:
        print(f"{config:19}{report[f'{config}_stacks_per_s']:10.1f}{report[f'{config}_trainer_cpu_ms_per_stack']:23.1f}"
              f"{report[f'{config}_server_cpu_ms_per_stack']:9.1f}{report[f'{config}_distinct_fraction']:10.2f}"
              f"{report.get(f'{config}_server_peak_mb', 0):11,.0f}")
    print("ratios: " + ", ".join(f"{key[:-len('_ratio_to_local')] if key.endswith('_to_local') else key} "
                                 f"{value:.2f}" for key, value in report.items() if "_ratio_to_" in key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
