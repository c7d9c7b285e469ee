"""Input pipeline throughput: our tf.data pipelines against the JPEG decode bound and a plain Keras loader.

    python benchmarks/input_pipeline.py [--json] [--seconds 4] [--rounds 5]

Frames come from the real UCF-101 clips in `../shared/data/videos/ucf101` (or `--videos`): decoded with
OpenCV, resized to 340×256, written as RGB JPEGs and as grayscale flow JPEGs in the TSN layout in a
temporary folder, which is deleted afterwards. Flow JPEGs are DIS flow quantised like dense_flow (about the
size of real TV-L1 flow JPEGs), or with `--flow-images gray` grayscale frames (larger, slower to decode).

Measured in one run, in interleaved rounds (every other one in reverse order) so that a change in machine
load hits every figure alike, each measurement starting once the last one's background work (an
iterator filling its prefetch buffers) has stopped; each ratio is the median over rounds of the ratio
within a round, between figures measured back to back:

- temporal stacks/s and spatial frames/s of `temporal_dataset` / `spatial_dataset` in training mode
  (multi-scale corner crops, flips, 224×224, L = 10, batch 32), iterated directly;
- the decode bound: the same JPEG bytes decoded from memory by `cv2.imdecode` in one process per core,
  no framework (flow images / 20 = stacks/s);
- the straightforward version for comparison: decode whole frames, `tf.concat` them on the channel axis,
  crop, resize, flip, normalise (`naive_temporal_dataset`);
- a plain loader in the style of the older Keras implementations: a `keras.utils.PyDataset` reading the
  files with OpenCV, cropping, resizing and flipping with NumPy/OpenCV, `workers` = cores with
  multiprocessing, fed to `model.fit` of a tiny model; our temporal dataset is fed to the same model the
  same way for `temporal_ratio_to_plain_loader` (these two in rounds of their own after the others: the
  plain loader forks worker processes, which costs whatever runs next copy-on-write faults).

`--json` prints one JSON object with the keys listed in `KEYS` (and a few more).

`--compare-dct` measures instead what the JPEG inverse DCT costs the training pipelines: temporal and
spatial training datasets decoding with libjpeg's accurate IDCT ("INTEGER_ACCURATE", OpenCV's, the
pipelines' default) and with the fast one ("INTEGER_FAST", TensorFlow's default), in interleaved rounds;
it reports each rate, CPU ms per item and the accurate/fast ratio of CPU time per item (median of rounds).
"""
import argparse
import json
import multiprocessing
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

PROJECT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
DEFAULT_VIDEOS = PROJECT.parent / "shared" / "data" / "videos" / "ucf101"

KEYS = ("temporal_stacks_per_s", "spatial_frames_per_s", "temporal_decode_bound_stacks_per_s",
        "spatial_decode_bound_frames_per_s", "plain_loader_stacks_per_s", "temporal_ratio_to_bound",
        "spatial_ratio_to_bound", "temporal_ratio_to_plain_loader")
WIDTH, HEIGHT = 340, 256
IMAGE_SIZE, STACK_LENGTH, BATCH = 224, 10, 32


# --- Frames -------------------------------------------------------------------------------------------------

def _extract_clip(job):
    """Writes one clip's frames (340×256) and its flow images in the TSN layout; returns its frame count.

    Flow images are DIS flow quantised like dense_flow ("dis"), or grayscale copies of the frames ("gray").
    """
    video_path, root, max_frames, flow_images = job
    from two_stream_tf.data.layouts import LAYOUTS
    from two_stream_tf.flow.compute import compute_flow
    from two_stream_tf.flow.quantize import quantize_flow

    cv2.setNumThreads(1)
    layout = LAYOUTS["tsn"]
    video = pathlib.Path(video_path).stem
    os.makedirs(os.path.join(root, video), exist_ok=True)
    capture = cv2.VideoCapture(video_path)
    previous, count = None, 0
    while count < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(root, layout.rgb_file(video, count)), frame)
        if previous is not None:
            if flow_images == "dis":
                q = quantize_flow(compute_flow(previous, frame, method="dis", channel_order="bgr"))
                planes = q[..., 0], q[..., 1]
            else:
                planes = cv2.cvtColor(previous, cv2.COLOR_BGR2GRAY), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            for path, plane in zip(layout.flow_files(video, count - 1), planes):
                cv2.imwrite(os.path.join(root, path), plane)
        previous, count = frame, count + 1
    capture.release()
    return video, count


def extract_frames(videos_dir, root, clips, max_frames, processes, flow_images):
    paths = sorted(str(p) for p in pathlib.Path(videos_dir).glob("*.avi"))[:clips]
    if not paths:
        raise SystemExit(f"no .avi clips in {videos_dir} (pass --videos)")
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(_extract_clip, [(p, root, max_frames, flow_images) for p in paths])


def frame_index(root, videos):
    from two_stream_tf.data.index import build_index
    from two_stream_tf.data.splits import SplitEntry

    entries = [SplitEntry(video, i % 2, f"C{i % 2}/{video}.avi") for i, (video, _) in enumerate(videos)]
    return build_index(root, entries, ("C0", "C1"), layout="tsn", cache=False)


# --- Decode bound ---------------------------------------------------------------------------------------------

_BYTES = {}


def _load_bytes(flow_files, rgb_files):
    cv2.setNumThreads(1)
    _BYTES["flow"] = [np.frombuffer(pathlib.Path(f).read_bytes(), np.uint8) for f in flow_files]
    _BYTES["rgb"] = [np.frombuffer(pathlib.Path(f).read_bytes(), np.uint8) for f in rgb_files]


def _decode_for(job):
    """Decodes the in-memory JPEGs of one kind round-robin for `seconds`; returns (images/s, CPU s/image)."""
    kind, seconds = job
    flag = cv2.IMREAD_GRAYSCALE if kind == "flow" else cv2.IMREAD_COLOR
    data = _BYTES[kind]
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for item in data[count % len(data): count % len(data) + 50]:
            cv2.imdecode(item, flag)
            count += 1
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count


def decode_bound(pool, kind, seconds, workers):
    """(images/s summed over the worker processes, mean CPU seconds per image)."""
    results = pool.map(_decode_for, [(kind, seconds)] * workers)
    return sum(r[0] for r in results), float(np.mean([r[1] for r in results]))


# --- Plain loader ---------------------------------------------------------------------------------------------

def plain_loader_class():
    import keras

    class PlainStackLoader(keras.utils.PyDataset):
        """Flow stacks the way older Keras two-stream code made them: OpenCV reads, NumPy crops and flips."""

        def __init__(self, index, batches, **kwargs):
            super().__init__(**kwargs)
            self.index, self.batches = index, batches
            self.scales = (1.0, 0.875, 0.75, 0.66)
            self.places = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))

        def __len__(self):
            return self.batches

        def __getitem__(self, i):
            rng = np.random.default_rng(i)
            stacks = np.empty((BATCH, IMAGE_SIZE, IMAGE_SIZE, 2 * STACK_LENGTH), np.float32)
            for b in range(BATCH):
                entry = self.index.entries[rng.integers(len(self.index.entries))]
                start = rng.integers(max(entry.num_flow - STACK_LENGTH + 1, 1))
                planes = []
                for k in range(STACK_LENGTH):
                    for path in self.index.flow_paths(entry, (start + k) % entry.num_flow):
                        planes.append(cv2.imread(path, cv2.IMREAD_GRAYSCALE))
                stack = np.stack(planes, axis=-1)
                side = min(stack.shape[:2])
                i_h = rng.integers(4)
                i_w = min(max(i_h + rng.integers(-1, 2), 0), 3)
                h, w = int(side * self.scales[i_h]), int(side * self.scales[i_w])
                row, col = self.places[rng.integers(5)]
                top, left = (stack.shape[0] - h) // 4 * row, (stack.shape[1] - w) // 4 * col
                crop = cv2.resize(stack[top:top + h, left:left + w], (IMAGE_SIZE, IMAGE_SIZE))
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                    crop[..., 0::2] = 255 - crop[..., 0::2]
                stacks[b] = crop / 127.5 - 1.0
            return stacks, np.zeros((BATCH,), np.int32)

    return PlainStackLoader


# --- A straightforward tf.data version, for comparison -----------------------------------------------------

def naive_temporal_dataset(index):
    """Flow stacks the obvious way: decode whole frames, concatenate them on the channel axis, crop, resize,
    flip, normalise; the same sampling and augmentation as ours."""
    import tensorflow as tf

    x_prefix = [os.path.join(index.root, e.video, "flow_x_") for e in index.entries]
    y_prefix = [os.path.join(index.root, e.video, "flow_y_") for e in index.entries]
    counts = [e.num_flow for e in index.entries]
    scales = tf.constant((1.0, 0.875, 0.75, 0.66))
    pairs = tf.constant([(i, j) for i in range(4) for j in range(4) if abs(i - j) <= 1])
    places = tf.constant(((0, 0), (0, 4), (4, 0), (4, 4), (2, 2)))

    def stack(x_name, y_name, count):
        start = tf.random.uniform([], 0, tf.maximum(count - STACK_LENGTH + 1, 1), tf.int32)
        numbers = tf.strings.as_string((start + tf.range(STACK_LENGTH)) % count + 1, width=5, fill="0")
        frames = []
        for k in range(STACK_LENGTH):
            for prefix in (x_name, y_name):
                frames.append(tf.io.decode_jpeg(tf.io.read_file(prefix + numbers[k] + ".jpg"), channels=1))
        stacked = tf.concat(frames, axis=-1)
        height, width = tf.shape(stacked)[0], tf.shape(stacked)[1]
        sides = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * scales, tf.int32)
        pair = pairs[tf.random.uniform([], 0, 10, tf.int32)]
        place = places[tf.random.uniform([], 0, 5, tf.int32)]
        h, w = sides[pair[0]], sides[pair[1]]
        top, left = (height - h) // 4 * place[0], (width - w) // 4 * place[1]
        crop = tf.image.resize(tf.cast(stacked[top:top + h, left:left + w], tf.float32), (IMAGE_SIZE, IMAGE_SIZE))
        negate_x = tf.constant([-1.0, 1.0] * STACK_LENGTH), tf.constant([255.0, 0.0] * STACK_LENGTH)
        crop = tf.cond(tf.random.uniform([]) < 0.5, lambda: tf.reverse(crop, [1]) * negate_x[0] + negate_x[1],
                       lambda: crop)
        return crop / 127.5 - 1.0, 0

    dataset = tf.data.Dataset.from_tensor_slices((x_prefix, y_prefix, counts)).repeat().shuffle(len(counts))
    return dataset.map(stack, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(2)


# --- Measuring ------------------------------------------------------------------------------------------------

def settle(window=0.25, busy_fraction=0.05, timeout=15.0):
    """Waits until this process is idle: an iterator left behind keeps decoding in the background until its
    prefetch buffers are full, which would steal the cores from whatever is measured next."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        cpu, start = time.process_time(), time.perf_counter()
        time.sleep(window)
        if (time.process_time() - cpu) / (time.perf_counter() - start) < busy_fraction:
            return


def rate_of_iterator(iterator, seconds, warmup=3):
    """(items/s, process CPU seconds per item) of an endless dataset iterator over `seconds`, after `warmup`
    batches (buffers drained)."""
    for _ in range(warmup):
        next(iterator)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        count += int(next(iterator)[1].shape[0])
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count


def rate_of_fit(model, data, seconds, warmup=3):
    """Samples/s of `model.fit` over `data` for about `seconds`, timed from the end of batch `warmup`."""
    import keras

    stamps = []

    class Stamp(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())
            if len(stamps) > warmup + 1 and stamps[-1] - stamps[warmup - 1] > seconds:
                self.model.stop_training = True

    model.fit(data, epochs=1, steps_per_epoch=10 ** 6, verbose=0, callbacks=[Stamp()])
    return (len(stamps) - warmup) * BATCH / (stamps[-1] - stamps[warmup - 1])


def in_round_order(items, round_number):
    """`items` as they are in even rounds, reversed in odd ones, so that a drift in the machine's speed does
    not always favour the one measured first."""
    return items if round_number % 2 == 0 else items[::-1]


def paired_ratios(rates, bounds, items_per_bound_unit=1):
    """Round by round, `rate / (bound / items_per_bound_unit)`: e.g. stacks/s over flow images/s ÷ 20."""
    return [rate / (bound / items_per_bound_unit) for rate, bound in zip(rates, bounds)]


def null_model():
    """A model that reads one pixel of its input, so `fit` measures the input and Keras' own step."""
    import keras

    model = keras.Sequential([keras.Input((IMAGE_SIZE, IMAGE_SIZE, 2 * STACK_LENGTH)),
                              keras.layers.Cropping2D(((0, IMAGE_SIZE - 1), (0, IMAGE_SIZE - 1))),
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def run(args):
    cores = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="input_pipeline_bench_")
    try:
        videos = extract_frames(args.videos, work, args.clips, args.max_frames, cores, args.flow_images)
        index = frame_index(work, videos)
        flow_files = [p for e in index.entries for i in range(e.num_flow) for p in index.flow_paths(e, i)]
        rgb_files = [index.rgb_path(e, i) for e in index.entries for i in range(e.num_frames)]
        sizes = [float(np.mean([os.path.getsize(f) for f in files])) for files in (flow_files, rgb_files)]
        pool = multiprocessing.get_context("spawn").Pool(cores, initializer=_load_bytes,
                                                         initargs=(flow_files, rgb_files))
        import tensorflow as tf  # after the spawn pool: its workers need no TensorFlow
        from two_stream_tf import allocator
        from two_stream_tf.data import pipelines

        common = dict(training=True, batch_size=BATCH, image_size=IMAGE_SIZE, seed=0, repeat=True)
        temporal = pipelines.temporal_dataset(index, stack_length=STACK_LENGTH, **common)
        spatial = pipelines.spatial_dataset(index, **common)
        temporal_it, spatial_it = iter(temporal), iter(spatial)
        naive_it = iter(naive_temporal_dataset(index))
        loader = plain_loader_class()(index, batches=10 ** 6, workers=cores, use_multiprocessing=True,
                                      max_queue_size=4)
        model = null_model()
        results = {k: [] for k in ("flow_bound", "rgb_bound", "temporal", "spatial", "naive", "plain", "temporal_fit")}
        cpu = {k: [] for k in ("flow_bound", "rgb_bound", "temporal", "spatial", "naive")}
        measures = (("flow_bound", lambda: decode_bound(pool, "flow", args.seconds, cores)),
                    ("temporal", lambda: rate_of_iterator(temporal_it, args.seconds)),
                    ("naive", lambda: rate_of_iterator(naive_it, args.seconds)),
                    ("rgb_bound", lambda: decode_bound(pool, "rgb", args.seconds, cores)),
                    ("spatial", lambda: rate_of_iterator(spatial_it, args.seconds)))
        for round_number in range(args.rounds):
            # Each pipeline next to the bound it is divided by, so that the pair shares the machine's state.
            for key, measure in in_round_order(measures, round_number):
                rate, seconds_per_item = measure()
                settle()
                results[key].append(rate)
                cpu[key].append(seconds_per_item)
        # The model.fit pair comes after all the rounds above: every fit of the plain loader forks its worker
        # processes from this one, after which each page this process writes faults once (copy-on-write),
        # a cost that would land on whatever is measured next (measured: up to half its speed).
        fits = () if args.skip_plain else (("plain", loader), ("temporal_fit", temporal))
        for round_number in range(args.rounds):
            for key, data in in_round_order(fits, round_number):
                results[key].append(rate_of_fit(model, data, args.seconds))
                settle()
        pool.close()
        del tf
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mean = {k: float(np.mean(v)) if v else float("nan") for k, v in results.items()}
    report = {
        "temporal_stacks_per_s": mean["temporal"],
        "spatial_frames_per_s": mean["spatial"],
        "temporal_decode_bound_stacks_per_s": mean["flow_bound"] / (2 * STACK_LENGTH),
        "spatial_decode_bound_frames_per_s": mean["rgb_bound"],
        "plain_loader_stacks_per_s": mean["plain"],
        "naive_temporal_stacks_per_s": mean["naive"],
        "temporal_fit_stacks_per_s": mean["temporal_fit"],
    }
    # Ratios: the median over rounds of each round's pair, measured back to back (a shared machine's speed
    # can change between rounds; a ratio of whole-run means would mix those states).
    per_round_ratios = {
        "temporal_ratio_to_bound": paired_ratios(results["temporal"], results["flow_bound"], 2 * STACK_LENGTH),
        "spatial_ratio_to_bound": paired_ratios(results["spatial"], results["rgb_bound"]),
        "naive_temporal_ratio_to_bound": paired_ratios(results["naive"], results["flow_bound"], 2 * STACK_LENGTH),
        # Both fed to the same tiny model through model.fit.
        "temporal_ratio_to_plain_loader": paired_ratios(results["temporal_fit"], results["plain"]),
    }
    report.update({key: float(np.median(values)) if values else float("nan")
                   for key, values in per_round_ratios.items()})
    # CPU milliseconds per item: what the figures would be on an otherwise idle machine (see the README).
    cpu_ms = {k: 1e3 * float(np.median(v)) for k, v in cpu.items()}
    report.update(temporal_cpu_ms_per_stack=cpu_ms["temporal"], spatial_cpu_ms_per_frame=cpu_ms["spatial"],
                  naive_temporal_cpu_ms_per_stack=cpu_ms["naive"],
                  decode_bound_cpu_ms_per_stack=cpu_ms["flow_bound"] * 2 * STACK_LENGTH,
                  decode_bound_cpu_ms_per_frame=cpu_ms["rgb_bound"])
    report.update(flow_images=args.flow_images, mean_flow_jpeg_bytes=sizes[0], mean_rgb_jpeg_bytes=sizes[1])
    # The host allocator TensorFlow used (importing two_stream_tf asks for the pooling one unless the variable
    # was set), and this process's peak memory: the pooling allocator keeps what it took.
    report.update(tf_cpu_allocator_use_bfc=os.environ.get(allocator.ENVIRONMENT_VARIABLE),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report.update(cores=cores, rounds=args.rounds, videos=len(index), flow_pairs=len(flow_files) // 2,
                  rgb_frames=len(rgb_files), load_average=list(os.getloadavg()),
                  per_round={k: [round(x, 1) for x in v] for k, v in results.items()},
                  per_round_ratios={k: [round(x, 3) for x in v] for k, v in per_round_ratios.items()})
    return report


def run_dct_comparison(args):
    """Training-pipeline rates with the accurate and the fast IDCT (see the module docstring)."""
    work = tempfile.mkdtemp(prefix="input_pipeline_dct_")
    try:
        videos = extract_frames(args.videos, work, args.clips, args.max_frames, os.cpu_count() or 1, args.flow_images)
        index = frame_index(work, videos)
        from two_stream_tf.data import native, pipelines

        common = dict(training=True, batch_size=BATCH, image_size=IMAGE_SIZE, seed=0, repeat=True)
        iterators = {}
        for method in ("INTEGER_ACCURATE", "INTEGER_FAST"):
            iterators[("temporal", method)] = iter(pipelines.temporal_dataset(
                index, stack_length=STACK_LENGTH, dct_method=method, **common))
            iterators[("spatial", method)] = iter(pipelines.spatial_dataset(index, dct_method=method, **common))
        cpu = {key: [] for key in iterators}
        rates = {key: [] for key in iterators}
        measures = [(key, (lambda it=it: rate_of_iterator(it, args.seconds))) for key, it in iterators.items()]
        for round_number in range(args.rounds):
            for key, measure in in_round_order(measures, round_number):
                rate, seconds_per_item = measure()
                settle()
                rates[key].append(rate)
                cpu[key].append(seconds_per_item)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"native_kernels": native.load() is not None, "rounds": args.rounds,
              "load_average": list(os.getloadavg())}
    for stream in ("temporal", "spatial"):
        accurate, fast = cpu[(stream, "INTEGER_ACCURATE")], cpu[(stream, "INTEGER_FAST")]
        report[f"{stream}_cpu_ms_accurate"] = 1e3 * float(np.median(accurate))
        report[f"{stream}_cpu_ms_fast"] = 1e3 * float(np.median(fast))
        report[f"{stream}_cpu_ratio_accurate_to_fast"] = float(np.median(np.array(accurate) / np.array(fast)))
        report[f"{stream}_rate_accurate"] = float(np.mean(rates[(stream, "INTEGER_ACCURATE")]))
        report[f"{stream}_rate_fast"] = float(np.mean(rates[(stream, "INTEGER_FAST")]))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--videos", default=str(DEFAULT_VIDEOS), help="folder of .avi clips")
    parser.add_argument("--clips", type=int, default=10, help="clips to extract (default 10)")
    parser.add_argument("--max-frames", type=int, default=100, help="frames per clip (default 100)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--skip-plain", action="store_true", help="skip the plain Keras loader")
    parser.add_argument("--flow-images", choices=("dis", "gray"), default="dis",
                        help="flow JPEGs: quantised DIS flow (default, sized like real flow) or grayscale frames")
    parser.add_argument("--compare-dct", action="store_true",
                        help="measure the training pipelines with the accurate and the fast JPEG IDCT")
    args = parser.parse_args(argv)
    if args.compare_dct:
        report = run_dct_comparison(args)
        if args.json:
            print(json.dumps(report))
            return 0
        for stream, unit in (("temporal", "stack"), ("spatial", "frame")):
            print(f"{stream}: accurate IDCT {report[f'{stream}_cpu_ms_accurate']:.2f} CPU ms/{unit} "
                  f"({report[f'{stream}_rate_accurate']:.1f}/s), fast {report[f'{stream}_cpu_ms_fast']:.2f} "
                  f"({report[f'{stream}_rate_fast']:.1f}/s); CPU ratio accurate/fast "
                  f"{report[f'{stream}_cpu_ratio_accurate_to_fast']:.3f}")
        print(f"compiled kernels: {report['native_kernels']}; load average "
              f"{[round(x, 2) for x in report['load_average']]}")
        return 0
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['videos']} clips, {report['rgb_frames']} RGB frames, {report['flow_pairs']} flow pairs "
          f"({report['flow_images']}) at {WIDTH}x{HEIGHT}, mean JPEG {report['mean_rgb_jpeg_bytes'] / 1e3:.1f} kB RGB, "
          f"{report['mean_flow_jpeg_bytes'] / 1e3:.1f} kB flow; {report['cores']} cores; load average "
          f"{[round(x, 2) for x in report['load_average']]}")
    print(f"temporal (L={STACK_LENGTH}, {IMAGE_SIZE}x{IMAGE_SIZE}, augmented): "
          f"{report['temporal_stacks_per_s']:8.1f} stacks/s")
    print(f"  decode bound (cv2.imdecode, 1 process/core): {report['temporal_decode_bound_stacks_per_s']:8.1f} "
          f"stacks/s   ratio {report['temporal_ratio_to_bound']:.2f}")
    print(f"  the straightforward tf.data map:             {report['naive_temporal_stacks_per_s']:8.1f} "
          f"stacks/s   ratio {report['naive_temporal_ratio_to_bound']:.2f}")
    print(f"spatial ({IMAGE_SIZE}x{IMAGE_SIZE}, augmented):             {report['spatial_frames_per_s']:8.1f} frames/s")
    print(f"  decode bound:                                {report['spatial_decode_bound_frames_per_s']:8.1f} "
          f"frames/s   ratio {report['spatial_ratio_to_bound']:.2f}")
    print(f"CPU per item: temporal {report['temporal_cpu_ms_per_stack']:.2f} ms/stack (straightforward "
          f"{report['naive_temporal_cpu_ms_per_stack']:.2f}, decode bound "
          f"{report['decode_bound_cpu_ms_per_stack']:.2f}), spatial {report['spatial_cpu_ms_per_frame']:.2f} ms/frame "
          f"(decode bound {report['decode_bound_cpu_ms_per_frame']:.2f})")
    print(f"TF_CPU_ALLOCATOR_USE_BFC={report['tf_cpu_allocator_use_bfc']}, peak memory "
          f"{report['peak_rss_mb']:.0f} MB")
    print(f"model.fit of a tiny model: ours {report['temporal_fit_stacks_per_s']:.1f} stacks/s, plain "
          f"PyDataset loader {report['plain_loader_stacks_per_s']:.1f} stacks/s   ratio "
          f"{report['temporal_ratio_to_plain_loader']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
