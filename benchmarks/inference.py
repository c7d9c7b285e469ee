"""End-to-end speed of `two-stream predict`: frames per second, and where the time goes.

    python benchmarks/inference.py [--clips N] [--flow dis] [--json]

Predicts every real UCF-101 clip in `../shared/data/videos/ucf101` (or `--videos DIR`) with a spatial and a
temporal MobileNetV3Small at 224×224 (random weights unless `--weights`: weights do not change speed),
fused by averaged softmax, DIS flow, frames resized to 340×256, 25 snippets × 1 centre crop per video,
stacks of 10 flow pairs — the whole-video test protocol. One clip is predicted first to trace the models
and is not counted.

Frames per second = frames decoded / wall-clock seconds over all clips: decoding, resizing, flow, crops and
normalisation, both models. Annotation (drawing and writing an MP4, which reads the video again) is timed
in a second pass over the first `--annotate-clips` clips, sliding-window mode (64-frame windows every 32
frames, the live-stream mode) in a third over the first `--window-clips`. Flow alone — the same thread pool
computing every pair of the first clip, nothing else — gives the ceiling predict can reach. The breakdown gives milliseconds of work per
frame for each stage, summed over threads: flow runs in a pool of threads and decoding in a background
thread, so stages overlap and may add up to more than the wall-clock time per frame.

`--json` prints one JSON object: `{"fps", "breakdown": {stage: ms per frame}, …}`.
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_FPS = 25.0
STAGES = ("decode", "resize", "flow", "preprocess", "spatial", "temporal", "models", "annotate")


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=pathlib.Path, default=HERE.parent.parent / "shared" / "data" / "videos" /
                        "ucf101", help="folder of videos (default: the real UCF-101 clips in ../shared/data)")
    parser.add_argument("--clips", type=int, default=None, help="predict only the first N clips")
    parser.add_argument("--flow", default="dis", choices=("dis", "tvl1", "farneback"))
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--stack-length", type=int, default=10)
    parser.add_argument("--size", type=_size, default=(340, 256), metavar="WxH",
                        help="frames are resized to this before flow and cropping (default: 340x256)")
    parser.add_argument("--weights", default=None, help="a Keras weights file for the backbone (default: random)")
    parser.add_argument("--workers", type=int, default=None, help="flow threads (default: one per CPU)")
    parser.add_argument("--annotate-clips", type=int, default=5, help="clips of the annotation pass (0: skip)")
    parser.add_argument("--window-clips", type=int, default=5,
                        help="clips of the sliding-window pass, windows of 64 frames every 32 (0: skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def _size(text):
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _models(args, folder):
    from two_stream_tf.models import save_model, spatial_model, temporal_model
    shape = (args.image_size, args.image_size)
    spatial = spatial_model(101, backbone=args.backbone, weights=args.weights, input_shape=shape)
    temporal = temporal_model(101, backbone=args.backbone, weights=args.weights, input_shape=shape,
                              stack_length=args.stack_length)
    paths = [os.path.join(folder, "spatial.keras"), os.path.join(folder, "temporal.keras")]
    save_model(spatial, paths[0])
    save_model(temporal, paths[1])
    return paths


def _flow_bound(predictor, clip):
    """Frame pairs/s of the flow threads alone on one clip's prepared frames: the ceiling for predict."""
    import cv2
    from two_stream_tf.inference.frames import FlowWorkers
    from two_stream_tf.inference.video_source import open_source
    with open_source(clip) as source:
        gray = [cv2.cvtColor(cv2.resize(frame, predictor.settings.output_size(frame.shape[1], frame.shape[0]),
                                        interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)
                for frame in source.frames()]
    with FlowWorkers(predictor.flow_method, predictor.settings.bound, predictor.flow_workers) as pool:
        for future in [pool.submit(gray[i], gray[i + 1]) for i in range(min(8, len(gray) - 1))]:
            future.result()  # every thread has made its flow object
        started = time.perf_counter()
        for future in [pool.submit(gray[i], gray[i + 1]) for i in range(len(gray) - 1)]:
            future.result()
        return (len(gray) - 1) / (time.perf_counter() - started)


def _add(total, timings):
    for stage, seconds in timings.items():
        total[stage] = total.get(stage, 0.0) + seconds


def run(args):
    from two_stream_tf.inference import Predictor

    clips = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in (".avi", ".mp4"))[: args.clips]
    if len(clips) < 2:
        raise SystemExit(f"benchmarks/inference.py: need at least 2 videos in {args.videos}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        predictor = Predictor(_models(args, folder), flow_method=args.flow, flow_workers=args.workers,
                              size=args.size)
        predictor.predict_video(clips[0])  # traces the models; not counted

        frames, stages = 0, {}
        started = time.perf_counter()
        for clip in clips:
            prediction = predictor.predict_video(clip)
            frames += prediction.num_frames
            _add(stages, prediction.timings)
        wall = time.perf_counter() - started

        annotated_frames, annotated_wall, annotation = 0, 0.0, {}
        for clip in clips[: args.annotate_clips]:
            prediction = predictor.predict_video(clip, annotate=os.path.join(folder, clip.stem + ".mp4"))
            annotated_frames += prediction.num_frames
            annotated_wall += prediction.seconds
            _add(annotation, prediction.timings)
        flow_bound = _flow_bound(predictor, clips[0])

        windowed_frames, windowed_wall = 0, 0.0
        for clip in clips[: args.window_clips]:
            prediction = predictor.predict_video(clip, window=64, stride=32)
            windowed_frames += prediction.num_frames
            windowed_wall += prediction.seconds
    breakdown = {stage: 1000.0 * stages[stage] / frames for stage in STAGES if stage in stages}
    if annotated_frames:
        breakdown["annotate"] = 1000.0 * annotation["annotate"] / annotated_frames
    fps = frames / wall
    return {
        "fps": round(fps, 2),
        "breakdown": {stage: round(ms, 3) for stage, ms in breakdown.items()},
        "wall_ms_per_frame": round(1000.0 * wall / frames, 3),
        "ratio_to_target": round(fps / TARGET_FPS, 3),
        "flow_only_pairs_per_s": round(flow_bound, 2),
        "ratio_to_flow_only": round(fps / flow_bound, 3),
        "fps_with_annotation": round(annotated_frames / annotated_wall, 2) if annotated_frames else None,
        "fps_sliding_window": round(windowed_frames / windowed_wall, 2) if windowed_frames else None,
        "clips": len(clips), "frames": frames, "seconds": round(wall, 4),
        "flow": args.flow, "frame_size": list(args.size), "backbone": args.backbone, "image_size": args.image_size,
        "stack_length": args.stack_length, "flow_workers": args.workers or len(os.sched_getaffinity(0)),
        "cpus": len(os.sched_getaffinity(0)), "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def _print(result):
    print(f"two-stream predict, {result['backbone']} at {result['image_size']}x{result['image_size']}, "
          f"{result['flow']} flow, L={result['stack_length']}, {result['flow_workers']} flow threads, "
          f"{result['cpus']} CPUs (load average {result['load_average_before']} -> {result['load_average_after']})")
    print(f"{result['clips']} clips, {result['frames']} frames in {result['seconds']} s: "
          f"{result['fps']} frames/s = {result['ratio_to_target']}x the {TARGET_FPS:.0f} frames/s target")
    print(f"flow alone on the same threads: {result['flow_only_pairs_per_s']} pairs/s; predict reaches "
          f"{result['ratio_to_flow_only']:.0%} of it")
    if result["fps_with_annotation"]:
        print(f"with an annotated MP4 written: {result['fps_with_annotation']} frames/s")
    if result["fps_sliding_window"]:
        print(f"sliding windows of 64 frames every 32 (6 snippets each): {result['fps_sliding_window']} frames/s")
    wall = result["wall_ms_per_frame"]
    print(f"\n{'stage':<12}{'ms/frame':>10}{'of wall':>10}")
    for stage, ms in result["breakdown"].items():
        print(f"{stage:<12}{ms:>10.2f}{ms / wall:>10.0%}")
    print(f"{'wall':<12}{wall:>10.2f}{1:>10.0%}")
    print("(work per stage is summed over threads; flow and decoding overlap the rest)")


def main(argv=None):
    args = _arguments(sys.argv[1:] if argv is None else argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
