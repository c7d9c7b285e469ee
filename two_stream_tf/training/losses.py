"""Sparse categorical cross-entropy with label smoothing (Keras' sparse loss has no smoothing)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="two_stream_tf")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy between integer labels and predicted class probabilities, with label smoothing.

    With smoothing ε over K classes the target is `(1 - ε) * one_hot(label) + ε / K`, as in
    `keras.losses.CategoricalCrossentropy(label_smoothing=ε)`; with ε = 0 this equals
    `keras.losses.SparseCategoricalCrossentropy()`.

    Args:
      label_smoothing: ε in [0, 1).
      from_logits: whether predictions are logits rather than probabilities (stream models output
        probabilities).

    Shapes:
      y_true `(B,)` or `(B, 1)` int; y_pred `(B, K)`.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="sparse_categorical_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        num_classes = ops.shape(y_pred)[-1]
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        targets = ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config
