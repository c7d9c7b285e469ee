"""Which frames the models see, and the model inputs built from them — the test protocol of training.

A video (or a window of a stream) of N frames is scored on S evenly spaced snippets (S = 25 for a whole
video, as TSN's test protocol): snippet j is an RGB frame for the spatial stream and a stack of L flow
pairs for the temporal stream. Positions come from the input pipelines' sampling code
(`two_stream_tf.data.sampling`), crops and normalisation from their augmentation code
(`two_stream_tf.data.augment`), so a model sees at prediction time exactly what it saw in testing: the
centre crop (or TSN's 3 or 10 crops) of the prepared frame, RGB normalised as its backbone wants, flow
`(q - 128) / 128` (zero motion is exactly 0) with channels `[x1, y1, x2, y2, …]` and x negated
(`255 - q`) on mirrored crops.

Which decoded frame a snippet's RGB image is follows the frame numbering the training frames were prepared
with (`two_stream_tf.preparation.numbering`): with dense_flow's (the TSN layout's, and the default here)
RGB image k is frame k + 1, the frame where flow pair k ends, so a snippet starting at pair s shows frame
s + 1; with "all", RGB image k is frame k and the snippet shows frame s.
"""
import dataclasses

import numpy as np

import tensorflow as tf

from two_stream_tf.data import augment, sampling
from two_stream_tf.preparation.numbering import DENSE_FLOW, first_rgb_frame


@dataclasses.dataclass(frozen=True)
class SnippetPlan:
    """The frames and flow pairs the models read for one video or window.

    Attributes:
      offset: index of the window's first frame in the source.
      rgb: per snippet, the source frame index of its RGB frame.
      stacks: per snippet, the source pair indices of its flow stack (L each), or () without flow.
    """

    offset: int
    rgb: tuple
    stacks: tuple

    @property
    def pairs(self):
        """Every flow pair index the plan needs, sorted."""
        return sorted({pair for stack in self.stacks for pair in stack})

    def shifted(self, offset):
        """The same plan for the window starting `offset` frames later."""
        return SnippetPlan(self.offset + offset, tuple(i + offset for i in self.rgb),
                           tuple(tuple(p + offset for p in stack) for stack in self.stacks))

    def __len__(self):
        return max(len(self.rgb), len(self.stacks))


def plan_snippets(num_frames, num_snippets, stack_length=None, offset=0, *, with_rgb=True, joint=True,
                  rgb_frames=DENSE_FLOW):
    """Chooses the snippets of a video or window of `num_frames` frames starting at frame `offset`.

    Positions are those of the input pipelines' test mode (`two_stream_tf.data.sampling`), applied to the
    RGB images and flow pairs that preparing these frames would have written: with flow, the snippet
    starts are spread over the flow pairs and the RGB image is the one numbered like the stack's first
    pair, as in the two-stream dataset; for the spatial stream alone (`stack_length=None`, or `joint=False`
    when the streams are separate models evaluated on their own) the starts are spread over the RGB
    images, as in the spatial dataset. A stack running past the last pair loops back, as in training.
    With dense_flow numbering the RGB images are frames 1 … N - 1 (a one-frame video keeps its frame 0).

    Args:
      num_frames: N, frames in the video or window.
      num_snippets: S, snippets to score.
      stack_length: L flow pairs per stack, or None when no temporal stream runs.
      offset: source index of the first frame.
      with_rgb: whether the spatial stream runs (else `rgb` is empty).
      joint: RGB frames from the flow snippets (a two-stream model) rather than from their own sampling.
      rgb_frames: the numbering of the training RGB images, "dense_flow" or "all".

    Returns:
      A `SnippetPlan` with source frame and pair indices.
    """
    first = first_rgb_frame(rgb_frames) if num_frames > 1 else 0
    num_images = num_frames - first  # the RGB images preparing these frames writes
    rgb, stacks = (), ()
    if stack_length:
        num_pairs = max(num_frames - 1, 1)
        starts = sampling.test_starts(num_pairs, num_snippets, length=stack_length)
        stacks = tuple(tuple(offset + int(p) for p in stack)
                       for stack in sampling.stack_indices(starts, stack_length, num_pairs).numpy())
        if with_rgb and joint:
            rgb = sampling.rgb_indices(starts, num_images).numpy()
    if with_rgb and not len(rgb):
        rgb = sampling.rgb_indices(sampling.test_starts(num_images, num_snippets, length=1), num_images).numpy()
    return SnippetPlan(offset, tuple(offset + first + int(i) for i in rgb), stacks)


def crop_windows(frame_size, image_size, crops=1):
    """The test crop windows of a prepared frame, as the pipelines' test mode takes them.

    Args:
      frame_size: `(width, height)` of the prepared frames.
      image_size: side of the square model input.
      crops: 1 (centre), 3 or 10 (`two_stream_tf.data.augment.test_crop_windows`).

    Returns:
      `[(window, mirrored), …]`, window = `(top, left, height, width)` ints.
    """
    windows, _ = augment.test_crop_windows((frame_size[1], frame_size[0]), image_size, crops)
    return list(zip((tuple(int(v) for v in w) for w in windows.numpy()), augment.test_crop_mirrored(crops)))


def rgb_inputs(frames, windows, image_size, rgb_normalization):
    """The spatial stream's input for a batch of prepared frames.

    Args:
      frames: uint8 BGR frames `(H, W, 3)` (as OpenCV decodes), all of one size.
      windows: `crop_windows(…)` of that size.
      image_size: side of the square model input.
      rgb_normalization: "tf", "torch", "caffe" or "none" (the backbone's, see `two_stream_tf.models`).

    Returns:
      float32 `(B · crops, image_size, image_size, 3)`, RGB, normalised; the crops of a frame are
      consecutive.
    """
    views = []
    for window, mirrored in windows:
        crops = np.stack([augment.crop_images(frame, window)[..., ::-1] for frame in frames])  # BGR -> RGB
        views.append(augment.rgb_view(tf.convert_to_tensor(crops), mirrored, image_size, rgb_normalization))
    return _interleave(views)


def flow_inputs(stacks, windows, image_size):
    """The temporal stream's input for a batch of flow stacks.

    Args:
      stacks: per stack, a list of L quantised flow pairs, uint8 `(H, W, 2)` (x then y).
      windows: `crop_windows(…)` of the prepared frame size.
      image_size: side of the square model input.

    Returns:
      float32 `(B · crops, image_size, image_size, 2L)`, channels `[x1, y1, x2, y2, …]`, `(q - 128) / 128`
      ("symmetric", as the pipelines), so zero motion is 0; mirrored crops have x negated, as in testing.
    """
    views = []
    for window, mirrored in windows:
        crops = np.stack([np.stack([augment.crop_images(pair, window) for pair in stack]) for stack in stacks])
        batch, length, height, width, _ = crops.shape
        # (B, L, h, w, 2) -> planes (B, 2L, h, w) in [x1, y1, x2, y2, …] order, as the pipelines read them.
        planes = np.ascontiguousarray(crops.transpose(0, 1, 4, 2, 3)).reshape(batch, 2 * length, height, width)
        views.append(augment.flow_view(tf.convert_to_tensor(planes), mirrored, image_size))
    return _interleave(views)


def _interleave(views):
    """Views `[(B, …)] * crops` to `(B · crops, …)`, the crops of one snippet consecutive."""
    if len(views) == 1:
        return views[0]
    stacked = tf.stack(views, axis=1)
    return tf.reshape(stacked, tf.concat([[-1], tf.shape(stacked)[2:]], 0))
