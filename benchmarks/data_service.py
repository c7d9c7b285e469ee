"""Input throughput through the tf.data service: 1 and 2 local workers against the local pipeline.

    python benchmarks/data_service.py [--json] [--seconds 6] [--rounds 3]

Frames are made as in `benchmarks/input_pipeline.py` (its extraction is reused): real UCF-101 clips from
`../shared/data/videos/ucf101` (or `--videos`) at 340×256 with DIS flow, in a temporary folder deleted
afterwards. The pipeline is `temporal_dataset` in training mode (multi-scale corner crops, flips, 224×224,
L = 10, batch 32, `strict=True` as the service needs), read

  local              directly in this process;
  service_1          through a dispatcher with 1 worker (`LocalService`: separate `two-stream data-service`
                     processes on 127.0.0.1) with `distribute_dataset`'s defaults: whole batches, float32,
                     Snappy compression as TensorFlow chooses;
  service_1_raw      the same without compression;
  service_1_raw_f16  and the stacks sent as float16 (`transfer_dtype="float16"`), half the bytes;
  service_1_tuned    and single stacks sent, batched again here (`batch_size=32`);
  service_2_tuned    the tuned settings through another dispatcher with 2 workers;

in interleaved rounds, so that load from other processes hits every figure alike. For each: stacks/s
delivered to this process, and CPU milliseconds per stack spent in this process (the trainer's side) and
in the server processes together (medians over the rounds: what it costs on an otherwise idle machine).
Then, from a fresh start of each, the fraction of distinct stacks among the first batches: a worker that
duplicates another's work shows up there.

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

from input_pipeline import BATCH, DEFAULT_VIDEOS, IMAGE_SIZE, STACK_LENGTH, extract_frames, frame_index  # noqa: E402

CONFIGS = ("local", "service_1", "service_1_raw", "service_1_raw_f16", "service_1_tuned", "service_2_tuned")
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


def distinct_fraction(dataset, batches):
    """Distinct stacks / stacks among the first `batches` batches of a fresh iterator."""
    prints = [x[::7, ::7].tobytes() for xs, _ in dataset.take(batches).as_numpy_iterator() for x in xs]
    return len(set(prints)) / len(prints)


def run(args):
    from two_stream_tf.data.local_service import LocalService

    work = tempfile.mkdtemp(prefix="data_service_bench_")
    services = []
    try:
        videos = extract_frames(args.videos, work, args.clips, args.max_frames, os.cpu_count() or 1)
        index = frame_index(work, videos)
        # Both dispatchers and their workers start while the frames are ready: before TensorFlow is imported here.
        services = [LocalService(num_workers=1, log_dir=tempfile.mkdtemp(dir=work)).start(),
                    LocalService(num_workers=2, log_dir=tempfile.mkdtemp(dir=work)).start()]
        server_pids = [s.process.pid for service in services for s in (service.dispatcher, *service.workers)]
        from two_stream_tf.data import pipelines
        from two_stream_tf.data.service import distribute_dataset

        def dataset(config):
            data = pipelines.temporal_dataset(index, training=True, batch_size=BATCH, image_size=IMAGE_SIZE,
                                              stack_length=STACK_LENGTH, seed=0, strict=True, repeat=True)
            if config == "local":
                return data
            local = services[1] if config.startswith("service_2") else services[0]
            return distribute_dataset(data, local.address, training=True, **SERVICE_OPTIONS[config])

        rates = {config: [] for config in CONFIGS}
        trainer_ms, server_ms = ({config: [] for config in CONFIGS} for _ in range(2))
        for _ in range(args.rounds):
            for config in CONFIGS:
                # A fresh iterator (a new job) each time, dropped after: no server keeps filling buffers for a
                # configuration while another one is measured.
                iterator = iter(dataset(config))
                rate, trainer, server = measure(iterator, args.seconds, server_pids)
                del iterator
                rates[config].append(rate)
                trainer_ms[config].append(trainer)
                server_ms[config].append(server)
        distinct = {config: distinct_fraction(dataset(config), args.distinct_batches) for config in CONFIGS}
    finally:
        exit_codes = [service.stop() for service in services]
        shutil.rmtree(work, ignore_errors=True)
    mean = {config: float(np.mean(values)) for config, values in rates.items()}
    report = {f"{config}_stacks_per_s": mean[config] for config in CONFIGS}
    report.update({f"{config}_trainer_cpu_ms_per_stack": float(np.median(trainer_ms[config])) for config in CONFIGS})
    report.update({f"{config}_server_cpu_ms_per_stack": float(np.median(server_ms[config])) for config in CONFIGS})
    report.update({f"{config}_distinct_fraction": distinct[config] for config in CONFIGS})
    report.update({f"{config}_ratio_to_local": mean[config] / mean["local"] for config in CONFIGS[1:]})
    report.update(
        service_2_tuned_ratio_to_service_1_tuned=mean["service_2_tuned"] / mean["service_1_tuned"],
        service_1_tuned_ratio_to_service_1=mean["service_1_tuned"] / mean["service_1"],
        megabytes_per_stack=IMAGE_SIZE * IMAGE_SIZE * 2 * STACK_LENGTH * 4 / 1e6,
        cores=os.cpu_count(), rounds=args.rounds, videos=len(index), server_exit_codes=exit_codes,
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--distinct-batches", type=int, default=6, help="batches checked for duplicates (default 6)")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['videos']} clips at 340x256; temporal stacks L={STACK_LENGTH}, {IMAGE_SIZE}x{IMAGE_SIZE}, "
          f"batch {BATCH} ({report['megabytes_per_stack']:.1f} MB per float32 stack); {report['cores']} cores; "
          f"load average {report['load_average']}")
    print(f"{'':19}{'stacks/s':>10}{'CPU ms/stack: trainer':>23}{'servers':>9}{'distinct':>10}")
    for config in CONFIGS:
        print(f"{config:19}{report[f'{config}_stacks_per_s']:10.1f}{report[f'{config}_trainer_cpu_ms_per_stack']:23.1f}"
              f"{report[f'{config}_server_cpu_ms_per_stack']:9.1f}{report[f'{config}_distinct_fraction']:10.2f}")
    print("ratios to local: " + ", ".join(f"{config} {report[f'{config}_ratio_to_local']:.2f}" for config in CONFIGS[1:]))
    print(f"service_1_tuned / service_1 {report['service_1_tuned_ratio_to_service_1']:.2f}, "
          f"service_2_tuned / service_1_tuned {report['service_2_tuned_ratio_to_service_1_tuned']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
