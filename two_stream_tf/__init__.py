"""two_stream_tf: two-stream video action recognition on TensorFlow 2 / Keras 3.

Subpackages:
  data        split files, frame layouts, dataset index, tf.data pipelines, TFRecords, synthetic videos
  flow        optical flow (TV-L1, DIS, Farneback), quantisation, colour visualisation
  models      backbone registry, spatial / temporal streams, TSN consensus, fusion
  training    distribution strategies, schedules, callbacks, fit
  evaluation  the published test protocol, score files, metrics, plots
  inference   video in, top-k actions and an annotated video out
"""

from two_stream_tf.allocator import use_pooling_allocator

__version__ = "0.1.0"

# Before TensorFlow makes its first tensor: pooled host memory instead of fresh pages for every big
# tensor (see two_stream_tf.allocator; TF_CPU_ALLOCATOR_USE_BFC=false keeps malloc).
use_pooling_allocator()
