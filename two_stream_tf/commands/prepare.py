"""`two-stream prepare VIDEOS OUTPUT`: RGB frames and optical flow JPEGs from raw videos.

VIDEOS is one video file, a folder (UCF-101 / HMDB-51 class folders, or flat) or a file list (one path per
line, e.g. a UCF-101 trainlist with `--video-root`; entries outside the root are refused). Each video goes
to `OUTPUT/<video id>/` in the TSN layout (`img_00001.jpg`, `flow_x_00001.jpg`, `flow_y_00001.jpg`, numbered
as TSN's dense_flow: N - 1 RGB images from the second frame, RGB k and flow k ending at the same frame)
unless `--layout` / `--rgb-frames` say otherwise. Rerunning the same command resumes: finished videos whose
files agree with their done-markers are skipped, all others redone. A video that decodes short of its
container's frame count fails (`--short-decode warn` keeps it with a note). Exit status: 0 all videos done,
1 some failed (listed, and in OUTPUT/.prepare/failures.tsv), 2 bad arguments.

    two-stream prepare UCF-101 frames --flow tvl1 --workers 8
    two-stream prepare ucfTrainTestlist/trainlist01.txt frames --video-root UCF-101 --short-side 256
"""
import os

from two_stream_tf.commands._arguments import Parser, frame_size, positive_number, whole_number
from two_stream_tf.data.layouts import LAYOUTS
from two_stream_tf.errors import UserError
from two_stream_tf.flow.quantize import DEFAULT_BOUND
from two_stream_tf.preparation.discovery import VIDEO_EXTENSIONS, find_videos
from two_stream_tf.preparation.runner import available_cpus, prepare_videos
from two_stream_tf.preparation.numbering import RGB_FRAME_CHOICES
from two_stream_tf.preparation.settings import DEFAULT_SIZE, FLOW_CHOICES, SHORT_DECODE_CHOICES
from two_stream_tf.preparation.video import quiet_opencv_warnings

HELP = "RGB frames + TV-L1/DIS/Farneback flow JPEGs from videos (parallel, resumable)"


_size = frame_size(allow_original=True)


def add_extraction_arguments(parser):
    """Adds the flags that choose what is written (shared with `pipelines/beam_extract.py`)."""
    parser.add_argument("videos", help="a video file, a folder of videos (searched recursively) or a file list")
    parser.add_argument("output", help="the dataset root to write frames into")
    parser.add_argument("--video-root", help="folder that the paths in a file list start from "
                        "(default: the list's folder)")
    parser.add_argument("--layout", default="tsn", choices=sorted(LAYOUTS),
                        help="file naming (default: tsn = <video>/img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--size", type=_size, default=DEFAULT_SIZE, metavar="WxH",
                       help="output frame size, or 'original' (default: 340x256, as TSN)")
    sizes.add_argument("--short-side", type=whole_number(1), metavar="N",
                       help="resize so the short side is N pixels, keeping the aspect ratio")
    parser.add_argument("--flow", default="tvl1", choices=FLOW_CHOICES,
                        help="optical flow method; none = RGB frames only (default: tvl1)")
    parser.add_argument("--bound", type=positive_number, default=DEFAULT_BOUND,
                        help="flow quantisation bound in pixels (default: 20)")
    parser.add_argument("--jpeg-quality", type=whole_number(0, 100), default=95, metavar="Q",
                        help="JPEG quality 0..100 (default: 95)")
    parser.add_argument("--max-frames", type=whole_number(1), metavar="N",
                        help="only the first N frames of each video (previews, benchmarks)")
    parser.add_argument("--rgb-frames", choices=RGB_FRAME_CHOICES,
                        help="dense_flow: N-1 RGB images from the second frame, each the frame where the flow "
                        "pair of its number ends (TSN's dense_flow); all: N images from the first frame, each "
                        "where its pair starts (default: dense_flow for the tsn layout, all for the others)")
    parser.add_argument("--short-decode", choices=SHORT_DECODE_CHOICES, default="fail",
                        help="a video decoding to fewer frames than its container declares (more than 1 "
                        "fewer): fail = report it in failures.tsv, warn = keep what decodes and print both "
                        "counts (default: fail)")


def extraction_settings(args):
    """The keyword arguments of `prepare_videos` / `ExtractionSettings` chosen by the flags."""
    return dict(layout=args.layout, size=args.size, short_side=args.short_side, flow_method=args.flow,
                bound=args.bound, jpeg_quality=args.jpeg_quality, max_frames=args.max_frames,
                rgb_frames=args.rgb_frames, short_decode=args.short_decode)


def list_videos(args):
    """The video files the flags name; `UserError` naming the argument if there are none."""
    if not os.path.exists(args.videos):
        raise UserError(f"argument videos: {args.videos} does not exist (give a video file, a folder of videos "
                        "or a file list)")
    if args.video_root is not None and not os.path.isdir(args.video_root):
        raise UserError(f"argument --video-root: {args.video_root} is not a folder")
    paths = find_videos(args.videos, args.video_root)
    if not paths:
        raise UserError(f"argument videos: no video files ({', '.join(VIDEO_EXTENSIONS)}) in {args.videos}")
    return paths


def build_parser():
    parser = Parser(prog="two-stream prepare", description=HELP)
    add_extraction_arguments(parser)
    parser.add_argument("--workers", type=whole_number(1), default=available_cpus(), metavar="N",
                        help="videos extracted side by side in separate processes (default: all cores)")
    parser.add_argument("--opencv-threads", type=whole_number(1), metavar="N",
                        help="OpenCV threads per worker (default: cores // workers)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    paths = list_videos(args)
    quiet_opencv_warnings()  # unreadable videos are reported in the summary instead
    summary = prepare_videos(paths, args.output, workers=args.workers, progress=not args.no_progress,
                             opencv_threads=args.opencv_threads, **extraction_settings(args))
    print(summary.describe())
    return summary.exit_code
