"""The whole method in one call: synthetic videos → frames and flow → two streams → test protocol → fusion.

    from two_stream_tf.quickstart import run_quickstart
    result = run_quickstart("quickstart_output")        # about 5 minutes on 2 CPU cores
    print(result.table())

`two-stream quickstart` runs this. Every stage calls the library's public functions, the ones a UCF-101
run uses, on a small synthetic dataset (`two_stream_tf.data.synthetic`: 6 classes, looks doing motions, so
one frame tells the look, the flow tells the motion, and only fusion tells the class):

  1. data          `write_synthetic_dataset`: AVI videos and UCF-101-style split files (output/data)
  2. frames        `prepare_videos`: RGB frames and optical flow JPEGs in the TSN layout (output/data/frames).
                   The flow is DIS, not the papers' TV-L1: on a CPU DIS is ~50x faster, which keeps the run
                   in minutes; use `two-stream prepare --flow tvl1` for real data.
  3. spatial       `training.fit.train` of the RGB stream (output/runs/spatial)
  4. temporal      the same for the flow stream (output/runs/temporal)
  5. batch norm    the statistics recomputed after the short run (`batch_norm.recalibrate_batch_norm`)
  6. evaluation    every test video by the published protocol, 25 snippets x 10 crops, softmax averaged
                   (output/evaluation/spatial, output/evaluation/temporal)
  7. fusion        the average of the two streams' softmax scores (output/evaluation/fusion)
  8. report        results.json, confusion_matrix.png (fusion), training_curves.png, and
                   annotated_sample.mp4: a test video annotated by `inference.Predictor`

The backbone is MobileNet with width 0.25 at 64x64 pixels from random weights, since ImageNet weights
cannot be downloaded everywhere; give `weights=` a Keras weights file of that backbone (e.g.
`mobilenet_2_5_224_tf_no_top.h5`) to start from ImageNet, the temporal stream by cross-modality init.

Rerunning in the same folder resumes: finished stages are skipped, an interrupted training run continues
from its backup, and videos already extracted are kept.
"""
from two_stream_tf.quickstart.batch_norm import recalibrate_batch_norm
from two_stream_tf.quickstart.report import format_table, results_dict, save_training_curves
from two_stream_tf.quickstart.run import QuickstartResult, run_quickstart
from two_stream_tf.quickstart.settings import FAST, FULL, QuickstartSettings

__all__ = ["FAST", "FULL", "QuickstartResult", "QuickstartSettings", "format_table", "recalibrate_batch_norm",
           "results_dict", "run_quickstart", "save_training_curves"]
