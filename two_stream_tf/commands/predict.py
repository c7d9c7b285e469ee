"""`two-stream predict INPUT… --model M`: the top-k actions of videos, streams or a camera, flow on the fly.

INPUT is a video file, a stream URL (rtsp://, http://, …) or a camera index (0, 1, …). The model is a
two-stream `.keras` file, or a spatial and a temporal one (`--model` twice; fused by averaging their
softmax scores), or a training run folder (its `final.keras`). Frames are resized as the training frames were prepared
(`--size`, 340x256 by default), flow is computed with `--flow` and quantised with the training bound, and
the models score 25 evenly spaced snippets of each video (centre crop), as in testing.

    two-stream predict v_Archery_g02_c02.avi --model runs/fusion/final.keras --class-index classInd.txt
    two-stream predict clip.mp4 --model spatial.keras --model temporal.keras --json --annotate out.mp4
    two-stream predict 0 --model two_stream.keras --window 64 --stride 32      # camera 0, live

`--window N --stride M` prints a prediction for every window of N frames (for long videos and live
streams; live inputs always use windows, 64 frames by default). `--annotate OUT` writes the video with
the top-k of each window (or of the whole video) drawn over it, as MP4 (mp4v) or GIF; `--flow-inset`
adds the optical flow in colour. `--json` prints one JSON object per line: `{"type": "window", …}` as
windows complete, and `{"type": "video", …}` per input.

A video with fewer flow pairs than one stack (L + 1 frames; 11 for L = 10) is scored as the test protocol
scores short videos, each stack looping back to the first pair, with a note on stderr naming the video
and its frame count (and `"notes"` in its JSON). A video of fewer than 2 frames has no flow at all: with
a temporal stream it is refused with one line naming it.

Exit status: 0 all inputs predicted; 2 bad arguments or an unreadable or too short input (each named on
stderr; the other inputs are still predicted).
"""
import argparse
import json
import os
import sys

from two_stream_tf.commands._arguments import Parser, whole_number
from two_stream_tf.commands.prepare import _size
from two_stream_tf.errors import UserError
from two_stream_tf.flow.compute import FLOW_METHODS

# Flag parsers shared with `two-stream prepare`, so sizes are written the same way in both commands.
_at_least_one = whole_number(1)

HELP = "top-k actions of a video file, stream or camera (flow on the fly), optional annotated MP4/GIF"



def _weights(text):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers W_RGB,W_FLOW (e.g. 1,1.5)") from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers W_RGB,W_FLOW (e.g. 1,1.5)")
    return values


def build_parser(prog="two-stream predict"):
    """The argument parser of `two-stream predict` (also used by `experiments/predict.py`)."""
    from two_stream_tf.preparation.settings import DEFAULT_SIZE

    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video file, stream URL or camera index (several allowed)")
    parser.add_argument("--model", "-m", action="append", required=True, metavar="MODEL",
                        help="two-stream .keras file; or give it twice: a spatial and a temporal stream "
                        "(.keras files, training run folders: their final.keras, or URLs of .keras files, "
                        "downloaded once and cached)")
    parser.add_argument("--class-index", "--class_index", metavar="FILE",
                        help="classInd-style file ('1 ApplyEyeMakeup' per line); default: the classes in "
                        "the run's train_config.json beside the model")
    parser.add_argument("--flow", default="dis", choices=FLOW_METHODS,
                        help="optical flow method (default: dis; use the method the training flow was made "
                        "with, e.g. tvl1, for the best accuracy — TV-L1 is ~50x slower on a CPU)")
    parser.add_argument("--top-k", "--top_k", type=_at_least_one, default=5, metavar="K",
                        help="actions to report (default: 5)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    parser.add_argument("--annotate", metavar="OUT",
                        help="write an annotated video: OUT.mp4 (mp4v) or OUT.gif; with several inputs, a "
                        "folder (one <input name>.mp4 each)")
    parser.add_argument("--flow-inset", "--flow_inset", action="store_true",
                        help="draw the optical flow in colour into a corner of the annotated video")
    parser.add_argument("--window", type=_at_least_one, metavar="N",
                        help="sliding-window mode: predict every window of N frames")
    parser.add_argument("--stride", type=_at_least_one, metavar="M",
                        help="frames between window starts (default: N // 2)")
    parser.add_argument("--window-snippets", "--window_snippets", type=_at_least_one, metavar="S",
                        help="snippets scored per window (default: N // L, the stacks tile the window)")
    parser.add_argument("--snippets", type=_at_least_one, default=25, metavar="S",
                        help="snippets per whole video (default: 25, the test protocol)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--size", type=_size, default=DEFAULT_SIZE, metavar="WxH",
                       help="resize frames as the training frames were prepared (default: 340x256), or "
                       "'original'")
    sizes.add_argument("--short-side", "--short_side", type=_at_least_one, metavar="N",
                       help="instead of --size: resize so the short side has N pixels")
    parser.add_argument("--rgb-normalization", "--rgb_normalization", choices=("tf", "torch", "caffe", "none"),
                        help="the spatial stream's RGB normalisation (default: from train_config.json or the "
                        "model's backbone)")
    parser.add_argument("--stream-weights", "--stream_weights", type=_weights, metavar="W_RGB,W_FLOW",
                        help="weights for averaging two stream models (default: 1,1)")
    parser.add_argument("--workers", type=_at_least_one, metavar="N",
                        help="threads computing optical flow (default: one per CPU)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return parser


def _annotation_paths(args):
    if args.annotate is None:
        return [None] * len(args.inputs)
    if os.path.isdir(args.annotate):
        from two_stream_tf.inference.video_source import parse_source
        names = []
        for source in args.inputs:
            spec = parse_source(source)
            stem = os.path.splitext(os.path.basename(str(spec.target).rstrip("/")))[0] or "stream"
            names.append(os.path.join(args.annotate, f"camera{spec.target}.mp4" if spec.kind == "camera"
                                      else f"{stem}.mp4"))
        return names
    if len(args.inputs) > 1:
        raise UserError(f"--annotate {args.annotate}: with several inputs, give an existing folder")
    from two_stream_tf.inference.annotate import check_output_path
    try:
        return [check_output_path(args.annotate)]
    except UserError as error:
        raise UserError(f"--annotate: {error}") from None


def _readable_inputs(args, prog):
    """(input, annotation path) of the inputs that open; the others are reported on stderr.

    Files are opened once here, before the models load, so a misspelt path fails in a moment.
    """
    from two_stream_tf.inference.video_source import FILE, open_source, parse_source
    jobs = []
    for source, output in zip(args.inputs, _annotation_paths(args)):
        if parse_source(source).kind == FILE:
            try:
                open_source(source).close()
            except UserError as error:
                print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
                continue
        jobs.append((source, output))
    return jobs


def _print_text_window(name, window, out):
    if window.start_time is not None:
        when = f"{window.start_time:7.2f}-{window.end_time:.2f} s"
    else:
        when = f"frames {window.start}-{window.end - 1}"
    labels = " | ".join(f"{label} {score:.3f}" for label, score in window.top_k)
    print(f"{name}  window {window.index:3d}  {when}:  {labels}", file=out, flush=True)


def _print_text_video(prediction, out, windowed):
    length = f"{prediction.num_frames} frames"
    if prediction.fps:
        length += f", {prediction.num_frames / prediction.fps:.1f} s"
    what = f"average of {len(prediction.per_window)} windows" if windowed else "whole video"
    print(f"{prediction.source} ({length}; {what}):", file=out)
    width = max(len(label) for label, _ in prediction.top_k)
    for rank, (label, score) in enumerate(prediction.top_k, start=1):
        print(f"  {rank}. {label:<{width}}  {score:.3f}", file=out)
    if prediction.annotated:
        print(f"  annotated video: {prediction.annotated}", file=out)
    out.flush()


def main(argv, prog="two-stream predict"):
    """Parses arguments and predicts every input; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: less C++ start-up chatter
    args = build_parser(prog).parse_args(argv)
    if args.stride is not None and args.window is None:
        raise UserError("--stride needs --window")
    if args.window_snippets is not None and args.window is None:
        raise UserError("--window-snippets needs --window")
    if args.flow_inset and args.annotate is None:
        raise UserError("--flow-inset needs --annotate")
    if len(args.model) > 2:
        raise UserError(f"--model given {len(args.model)} times: give one two-stream model, or a spatial and "
                        "a temporal stream")
    jobs = _readable_inputs(args, prog)
    status = 0 if len(jobs) == len(args.inputs) else 2
    if not jobs:
        return status
    from two_stream_tf.inference.predictor import Predictor

    predictor = Predictor(args.model if len(args.model) > 1 else args.model[0], args.class_index,
                          flow_method=args.flow, size=args.size, short_side=args.short_side,
                          num_snippets=args.snippets, top_k=args.top_k, rgb_normalization=args.rgb_normalization,
                          stream_weights=args.stream_weights, flow_workers=args.workers)
    out = sys.stdout
    for source, output in jobs:
        def on_window(window, source=source):
            if args.json:
                print(json.dumps({"type": "window", "source": source, **window.to_dict()}), file=out, flush=True)
            else:
                _print_text_window(source, window, out)

        try:
            prediction = predictor.predict_video(source, window=args.window, stride=args.stride,
                                                 window_snippets=args.window_snippets, annotate=output,
                                                 flow_inset=args.flow_inset, on_window=on_window,
                                                 progress=not args.quiet and sys.stderr.isatty())
        except UserError as error:
            print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
            status = 2
            continue
        for note in prediction.notes:
            print(f"{prog}: note: {note}", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps({"type": "video", **prediction.to_dict()}), file=out, flush=True)
        else:
            _print_text_video(prediction, out, windowed=bool(prediction.per_window))
    return status
