"""Batch-normalisation statistics recomputed after a short training run ("precise BN").

Keras' BatchNormalization keeps moving averages of each batch's mean and variance with momentum 0.99, so
after n steps a fraction 0.99^n of their initial values (mean 0, variance 1) is left: 5 % after 300 steps.
A long run forgets them; a few hundred steps from random weights do not, and since the activations of a
young network are far from unit variance, the layers normalise by the wrong scale at test time (training
uses each batch's own statistics) and the predictions collapse onto one class. Recomputing the averages on
training batches with the final weights removes the lag (pycls and Detectron2 call this precise BN).
"""
import numpy as np


def batch_norm_layers(model):
    """Every `BatchNormalization` layer of a model, nested models (the backbone) included, in layer order."""
    import keras
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def recalibrate_batch_norm(model, dataset, steps):
    """Sets the moving mean and variance of every BatchNormalization layer to their average over batches.

    The model runs forward in training mode (each layer normalises by the batch's own statistics, as in
    training) on `steps` batches; each trainable BatchNormalization layer's moving mean and variance become
    the arithmetic mean of its batch means and variances. Weights are not changed; layers frozen with
    `trainable = False` (partial BN) keep their statistics.

    Args:
      model: a Keras model (e.g. a stream model from `two_stream_tf.models`).
      dataset: a `tf.data.Dataset` of batches the model takes, `x` or `(x, label)` (e.g. the training pipeline).
      steps: how many batches to average over (a few dozen suffice).

    Returns:
      The number of batches used (fewer than `steps` if the dataset ends first).
    """
    import keras
    import tensorflow as tf
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    totals = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
    count = 0
    try:
        # Momentum 0: after each batch a layer's moving statistics are that batch's, read and summed below.
        # It must be set before tracing: the traced function keeps the value it saw.
        for layer in layers:
            layer.momentum = 0.0
        forward = tf.function(lambda x: model(x, training=True))
        for element in dataset.take(int(steps)):
            forward(element[0] if isinstance(element, tuple) else element)
            count += 1
            for (mean, variance), layer in zip(totals, layers):
                mean += keras.ops.convert_to_numpy(layer.moving_mean)
                variance += keras.ops.convert_to_numpy(layer.moving_variance)
        if count:
            for (mean, variance), layer in zip(totals, layers):
                layer.moving_mean.assign(mean / count)
                layer.moving_variance.assign(variance / count)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count
