"""Reporting the training samples the input pipeline skipped because their frames could not be decoded.

The pipelines skip a training sample with an unreadable file (empty, truncated, a damaged header, a frame
of another size than the rest of its stack; see `two_stream_tf.data.decode`) and count it in a
`DecodeStats`. `SkippedSamplesReport` turns those counts into one report per epoch: the epoch's logs get
`skipped_samples` (so `log.csv` and TensorBoard keep it, 0 for clean epochs), and an epoch that skipped
anything prints one console line naming the files and logs it as a warning of the Python logger
`two_stream_tf.training.data_health`.

Samples are counted when the pipeline decodes them; with prefetching, a few decoded just before an epoch
ends are counted in the next one.
"""
import logging

import keras

logger = logging.getLogger(__name__)

LOG_KEY = "skipped_samples"
VALIDATION_LOG_KEY = "val_skipped_videos"
_NAMED_FILES = 5  # files named in the console line; the warning names them all


class SkippedSamplesReport(keras.callbacks.Callback):
    """Adds the epoch's skipped samples to its logs and reports any on the console and in the log.

    Args:
      stats: the `DecodeStats` of the training dataset(s).
      validation_stats: optional `DecodeStats` of the validation dataset (videos dropped from validation);
        reported as `val_skipped_videos` on epochs that validated.
      write: where the console line goes (default `print`).
    """

    def __init__(self, stats, validation_stats=None, write=print):
        super().__init__()
        self.stats, self.validation_stats, self.write = stats, validation_stats, write
        self._start = (0, 0)
        self._validation_start = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (self.stats.skipped, len(self.stats.files))
        if self.validation_stats is not None:
            self._validation_start = self.validation_stats.skipped

    def on_epoch_end(self, epoch, logs=None):
        skipped = self.stats.skipped - self._start[0]
        files = self.stats.files[self._start[1]:]
        if logs is not None:
            logs[LOG_KEY] = skipped
        validation = 0
        if self.validation_stats is not None:
            validation = self.validation_stats.skipped - self._validation_start
            if logs is not None and any(key.startswith("val_") for key in logs):
                logs[VALIDATION_LOG_KEY] = validation
        if skipped:
            shown = ", ".join(files[:_NAMED_FILES]) + (f" (+{len(files) - _NAMED_FILES} more)"
                                                       if len(files) > _NAMED_FILES else "")
            self.write(f"epoch {epoch + 1}: skipped {skipped} training sample(s) with unreadable frames: {shown}")
            logger.warning("epoch %d: skipped %d training sample(s) with unreadable frames: %s", epoch + 1, skipped,
                           ", ".join(files))
        if validation:
            self.write(f"epoch {epoch + 1}: left {validation} validation video(s) with unreadable frames out")
            logger.warning("epoch %d: left %d validation video(s) with unreadable frames out", epoch + 1, validation)
