"""Draws docs/scaling.png from the JSON the benchmarks print.

    python benchmarks/flow.py --json > flow.json
    python benchmarks/data_service.py --json > data_service.json
    python docs/scaling_plot.py --flow flow.json --service data_service.json --output docs/scaling.png

Left: core-hours to extract frames and flow for UCF-101 and Kinetics-400 at the per-core rates that
`benchmarks/flow.py` measured (`extract_cpu_fps`: frames per CPU-second, which load from other processes
does not inflate; frame counts as in docs/scaling.md). Right: CPU milliseconds per flow stack
on the trainer's side and on the tf.data service workers' side, as `benchmarks/data_service.py` measured.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Frames to extract (docs/scaling.md): UCF-101 as benchmarks/flow.py counts it; Kinetics-400 training
# set: 240,000 clips of 10 s at 25 fps.
DATASET_FRAMES = {"UCF-101": 2.5e6, "Kinetics-400": 240_000 * 10 * 25}
METHODS = {"tvl1": "TV-L1", "dis": "DIS", "farneback": "Farnebäck"}
SERVICE_CONFIGS = {"local": "local pipeline", "service_1": "service, defaults", "service_1_tuned": "service, tuned"}


def core_hours(flow):
    """{dataset: {method: core-hours}} at each method's measured extraction rate per CPU-second."""
    return {dataset: {method: frames / flow[method]["extract_cpu_fps"] / 3600 for method in METHODS}
            for dataset, frames in DATASET_FRAMES.items()}


def draw(flow, service, output):
    hours = core_hours(flow)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    for offset, (dataset, per_method) in zip((-width / 2, width / 2), hours.items()):
        positions = [i + offset for i in range(len(METHODS))]
        bars = left.bar(positions, [per_method[m] for m in METHODS], width, label=dataset)
        left.bar_label(bars, labels=[f"{per_method[m]:,.0f}" for m in METHODS], fontsize=8)
    left.set_yscale("log")
    left.set_xticks(range(len(METHODS)), [f"{METHODS[m]}\n{flow[m]['extract_cpu_fps']:.1f} fps/core" for m in METHODS])
    left.set_ylabel("core-hours (log scale)")
    left.set_title("Frames + flow extraction at the measured per-core rates")
    left.legend()

    names = list(SERVICE_CONFIGS)
    trainer = [service[f"{name}_trainer_cpu_ms_per_stack"] for name in names]
    servers = [service[f"{name}_server_cpu_ms_per_stack"] for name in names]
    right.bar(range(len(names)), trainer, 0.6, label="trainer process")
    right.bar(range(len(names)), servers, 0.6, bottom=trainer, label="tf.data service workers")
    right.set_xticks(range(len(names)), [SERVICE_CONFIGS[name] for name in names])
    right.set_ylabel("CPU ms per flow stack (L = 10, 224×224)")
    right.set_title("Where a training stack's CPU time is spent")
    right.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", required=True, help="output of benchmarks/flow.py --json")
    parser.add_argument("--service", required=True, help="output of benchmarks/data_service.py --json")
    parser.add_argument("--output", default="docs/scaling.png", help="PNG to write (default docs/scaling.png)")
    args = parser.parse_args(argv)
    with open(args.flow) as f:
        flow = json.load(f)
    with open(args.service) as f:
        service = json.load(f)
    draw(flow, service, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
