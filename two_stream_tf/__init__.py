"""two_stream_tf: two-stream video action recognition on TensorFlow 2 / Keras 3.

Subpackages:
  data        split files, frame layouts, dataset index, tf.data pipelines, TFRecords, synthetic videos
  flow        optical flow (TV-L1, DIS, Farneback), quantisation, colour visualisation
  models      backbone registry, spatial / temporal streams, TSN consensus, fusion
  training    distribution strategies, schedules, callbacks, fit
  evaluation  the published test protocol, score files, metrics, plots
  inference   video in, top-k actions and an annotated video out
"""

__version__ = "0.1.0"
