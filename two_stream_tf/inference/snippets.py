"""Which frames the models see, and the model inputs built from them — the test protocol of training.

A video (or a window of a stream) of N frames is scored on S evenly spaced snippets (S = 25 for a whole
video, as TSN's test protocol): snippet j is the RGB frame `rgb[j]` for the spatial stream and the stack
of L flow pairs starting at `flow[j]` for the temporal stream. Positions come from the same sampling code
as the input pipelines' test mode, and crops and normalisation are the pipelines' own, so a model sees at
prediction time exactly what it saw in testing: the centre crop of the prepared frame, RGB normalised as
its backbone wants, flow `q / 127.5 - 1` with channels `[x1, y1, x2, y2, …]`.
"""
import dataclasses

import numpy as np

from two_stream_tf.data import sampling
from two_stream_tf.inference import _protocol


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


def plan_snippets(num_frames, num_snippets, stack_length=None, offset=0, *, with_rgb=True, joint=True):
    """Chooses the snippets of a video or window of `num_frames` frames starting at frame `offset`.

    Positions are those of the input pipelines' test mode (`two_stream_tf.data.sampling`): with flow, the
    snippet starts are spread over the flow pairs and the RGB frame is the stack's first frame, as in the
    two-stream dataset; for the spatial stream alone (`stack_length=None`, or `joint=False` when the
    streams are separate models evaluated on their own) the starts are spread over the frames, as in the
    spatial dataset. A stack running past the last pair loops back, as in training.

    Args:
      num_frames: N, frames in the video or window.
      num_snippets: S, snippets to score.
      stack_length: L flow pairs per stack, or None when no temporal stream runs.
      offset: source index of the first frame.
      with_rgb: whether the spatial stream runs (else `rgb` is empty).
      joint: RGB frames from the flow snippets (a two-stream model) rather than from their own sampling.

    Returns:
      A `SnippetPlan` with source frame and pair indices.
    """
    rgb, stacks = (), ()
    if stack_length:
        num_pairs = max(num_frames - 1, 1)
        starts = sampling.test_starts(num_pairs, num_snippets, length=stack_length)
        stacks = tuple(tuple(offset + int(p) for p in stack)
                       for stack in sampling.stack_indices(starts, stack_length, num_pairs).numpy())
        if with_rgb and joint:
            rgb = sampling.rgb_indices(starts, num_frames).numpy()
    if with_rgb and not len(rgb):
        rgb = sampling.rgb_indices(sampling.test_starts(num_frames, num_snippets, length=1), num_frames).numpy()
    return SnippetPlan(offset, tuple(offset + int(i) for i in rgb), stacks)


def rgb_inputs(frames, image_size, rgb_normalization):
    """The spatial stream's input for a batch of prepared frames.

    Args:
      frames: uint8 BGR frames `(H, W, 3)` (as OpenCV decodes), all of one size.
      image_size: `(height, width)` of the model input.
      rgb_normalization: "tf", "torch", "caffe" or "none" (the backbone's, see `two_stream_tf.models`).

    Returns:
      float32 `(B, height, width, 3)`, RGB, normalised.
    """
    crops = np.stack([_protocol.center_crop(frame, image_size)[..., ::-1] for frame in frames])
    return _protocol.normalize_rgb(crops, rgb_normalization)


def flow_inputs(stacks, image_size):
    """The temporal stream's input for a batch of flow stacks.

    Args:
      stacks: per stack, a list of L quantised flow pairs, uint8 `(H, W, 2)` (x then y).
      image_size: `(height, width)` of the model input.

    Returns:
      float32 `(B, height, width, 2L)`, channels `[x1, y1, x2, y2, …]`, in [-1, 1].
    """
    crops = np.stack([np.concatenate([_protocol.center_crop(pair, image_size) for pair in stack], axis=-1)
                      for stack in stacks])
    return _protocol.normalize_flow(crops)
