"""Reporting the training samples the input pipeline skipped because their frames could not be decoded.

The pipelines skip a training sample with an unreadable file (empty, truncated, a damaged header, a frame
of another size than the rest of its stack; see `two_stream_tf.data.decode`) and count it in a
`DecodeStats`. `SkippedSamplesReport` turns those counts into one report per epoch: the epoch's logs get
`skipped_samples` (so `log.csv` and TensorBoard keep it, 0 for clean epochs), and an epoch that skipped
anything prints one console line naming the first unreadable file of each skipped sample (up to 5) and
logs all of them as a warning of the Python logger `two_stream_tf.training.data_health`.

A sample is counted when its batch leaves the pipeline; the distribution strategy reads a batch or two
ahead of the training step, so the first epoch's count can include a few samples of the second pass
over the data (and each later epoch's is shifted alike). Validation videos with unreadable frames are
left out of validation (named in warnings of `two_stream_tf.data.decode`), not counted here.
"""
import logging

import keras

logger = logging.getLogger(__name__)

LOG_KEY = "skipped_samples"
_NAMED_SAMPLES = 5  # samples named (by their first unreadable file) in the console line; the warning names all


class SkippedSamplesReport(keras.callbacks.Callback):
    """Adds the epoch's skipped training samples to its logs and reports any on the console and in the log.

    Args:
      stats: the `DecodeStats` of the training dataset(s).
      write: where the console line goes (default `print`).
    """

    def __init__(self, stats, write=print):
        super().__init__()
        self.stats, self.write = stats, write
        self._start = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = len(self.stats.samples)

    def on_epoch_end(self, epoch, logs=None):
        samples = self.stats.samples[self._start:]
        skipped = len(samples)
        if logs is not None:
            logs[LOG_KEY] = skipped
        if skipped:
            files = [name for sample in samples for name in sample]
            # The first unreadable file of each sample: one per skipped sample, the rest in the warning.
            shown = ", ".join(sample[0] for sample in samples[:_NAMED_SAMPLES])
            shown += f" (+{skipped - _NAMED_SAMPLES} more)" if skipped > _NAMED_SAMPLES else ""
            self.write(f"epoch {epoch + 1}: skipped {skipped} training sample(s) with unreadable frames: {shown}")
            logger.warning("epoch %d: skipped %d training sample(s) with unreadable frames: %s", epoch + 1, skipped,
                           ", ".join(files))
