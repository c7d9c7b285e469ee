"""Which decoded video frames become RGB images, and how RGB numbers line up with flow numbers.

A video decodes to N frames, 0 … N − 1, and gives N − 1 flow pairs: pair k is the motion from frame k to
frame k + 1. Two numberings of the RGB images are in use:

  dense_flow   TSN's dense_flow writes one RGB image with each flow pair, from the pair's second frame:
               N − 1 images, RGB k is frame k + 1, so RGB k and flow k end at the same frame. File
               `img_00001.jpg` is the video's second frame. The default of the `tsn` layout, so frames
               written by `two-stream prepare` line up with TSN's published dumps.
  all          every decoded frame: N images, RGB k is frame k, the frame flow k starts from. The default
               of the other layouts (the twostreamfusion dumps, mmaction2 and open-mmlab's denseflow keep
               every frame).

Indices here are 0-based, as everywhere in the library; a layout adds its `start` in file names.
"""

DENSE_FLOW = "dense_flow"
ALL_FRAMES = "all"
RGB_FRAME_CHOICES = (DENSE_FLOW, ALL_FRAMES)


def default_rgb_frames(layout_name):
    """The numbering a layout's published dumps use: "dense_flow" for "tsn", "all" for the others."""
    return DENSE_FLOW if layout_name == "tsn" else ALL_FRAMES


def first_rgb_frame(rgb_frames):
    """The decoded frame that RGB image 0 shows under a numbering (1 for dense_flow, 0 for all)."""
    if rgb_frames not in RGB_FRAME_CHOICES:
        raise ValueError(f"unknown RGB numbering {rgb_frames!r}")
    return 1 if rgb_frames == DENSE_FLOW else 0


def rgb_image_count(decoded_frames, rgb_frames):
    """RGB images written for a video of `decoded_frames` frames (N − 1 or N)."""
    return max(0, decoded_frames - first_rgb_frame(rgb_frames))
