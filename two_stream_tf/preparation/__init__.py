"""Data preparation: raw videos → RGB JPEGs and quantised optical flow JPEGs in a frame layout.

    from two_stream_tf.preparation import find_videos, prepare_videos
    summary = prepare_videos(find_videos("UCF-101"), "frames", workers=2, flow_method="tvl1")
    print(summary.describe())

`extract_video` does one video; `prepare_videos` many, in worker processes, resumably (see `output` for how
a video is committed and checked, `numbering` for which frames become RGB images: dense_flow's N - 1 in the
TSN layout). docs/reliability.md says what survives a crash. The Apache Beam version for clusters is in `two_stream_tf.preparation.beam`
(needs the `beam` extra) and `pipelines/beam_extract.py`.
"""
from two_stream_tf.preparation.discovery import VIDEO_EXTENSIONS, find_videos, video_id
from two_stream_tf.preparation.extract import VideoResult, extract_video, extract_with_settings
from two_stream_tf.preparation.output import OutputFolder
from two_stream_tf.preparation.runner import PrepareSummary, prepare_videos
from two_stream_tf.preparation.settings import FLOW_CHOICES, ExtractionSettings
from two_stream_tf.preparation.numbering import ALL_FRAMES, DENSE_FLOW, RGB_FRAME_CHOICES
from two_stream_tf.preparation.video import ShortDecodeError, VideoReadError, count_frames, read_frames

__all__ = [
    "ALL_FRAMES", "DENSE_FLOW", "ExtractionSettings", "FLOW_CHOICES", "OutputFolder", "PrepareSummary",
    "RGB_FRAME_CHOICES", "ShortDecodeError", "VIDEO_EXTENSIONS", "VideoReadError", "VideoResult", "count_frames",
    "extract_video", "extract_with_settings", "find_videos", "prepare_videos", "read_frames", "video_id",
]
