"""TensorBoard scalars and images written with TensorFlow's core summary op.

`tf.summary.scalar` and `tf.summary.image` live in the `tensorboard` package, which TensorFlow no longer
installs. `tf.summary.write` is part of TensorFlow itself: with the plugin metadata TensorBoard expects
("scalars": a float32 scalar; "images": a string vector `[width, height, png, png, …]`), the event files
are the same as the `tensorboard` functions write, and TensorBoard shows them wherever it is installed.
"""
import keras
import tensorflow as tf


def _metadata(plugin_name, description=""):
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin_name
    metadata.summary_description = description
    return metadata


def scalar(name, value, step, description=""):
    """Writes a scalar to the default summary writer (as `tf.summary.scalar`)."""
    return tf.summary.write(name, tf.cast(value, tf.float32), step=step,
                            metadata=_metadata("scalars", description))


def images(name, batch, step, max_outputs=3, description=""):
    """Writes uint8 images `(N, H, W, 3)` to the default summary writer (as `tf.summary.image`)."""
    batch = tf.convert_to_tensor(batch)[:max_outputs]
    if batch.dtype != tf.uint8:
        raise ValueError(f"images must be uint8, got {batch.dtype}")
    encoded = tf.map_fn(tf.image.encode_png, batch, fn_output_signature=tf.string)
    shape = tf.shape(batch)
    dimensions = tf.stack([tf.strings.as_string(shape[2]), tf.strings.as_string(shape[1])])
    return tf.summary.write(name, tf.concat([dimensions, encoded], axis=0), step=step,
                            metadata=_metadata("images", description))


def read_events(folder):
    """`{tag: [(step, value), …]}` of the scalar and image summaries in a folder's event files.

    Scalars give floats; images give the number of images. For tests and quick looks without TensorBoard.
    """
    found = {}
    for path in sorted(tf.io.gfile.glob(f"{folder}/events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                item = float(tensor) if plugin == "scalars" else len(tensor) - 2
                found.setdefault(value.tag, []).append((event.step, item))
    return found


class EpochScalars(keras.callbacks.Callback):
    """Epoch logs to TensorBoard, as `keras.callbacks.TensorBoard` lays them out, without `tensorboard`.

    Writes `log_dir/train` and `log_dir/validation` with tags `epoch_<name>` (`val_` dropped in
    validation), and the optimizer's learning rate as `epoch_learning_rate`.

    Args:
      log_dir: the TensorBoard folder.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = str(log_dir)
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(f"{self.log_dir}/{name}")
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        groups = (("train", {k: v for k, v in logs.items() if not k.startswith("val_")}),
                  ("validation", {k[4:]: v for k, v in logs.items() if k.startswith("val_")}))
        for split, items in groups:
            if not items:
                continue
            with self._writer(split).as_default():
                for key, value in items.items():
                    scalar(f"epoch_{key}", float(value), step=epoch)
            self._writer(split).flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
