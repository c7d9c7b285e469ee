"""Confusion-matrix figures, as PNG files and as RGB arrays for TensorBoard (matplotlib, Agg backend)."""
import io

import numpy as np

from two_stream_tf.training import atomic


def _pyplot():
    import matplotlib
    # Agg renders without a display; set before pyplot is imported so servers and CI never need X.
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def confusion_figure(confusion, classes, normalize=True, title=None):
    """Draws a confusion matrix.

    Args:
      confusion: `(K, K)` counts, rows = true class, columns = predicted class.
      classes: K class names.
      normalize: colour by the fraction of each true class (rows sum to 1) instead of counts.
      title: optional title.

    Returns:
      A matplotlib Figure (close it with `matplotlib.pyplot.close(figure)`).
    """
    plt = _pyplot()
    confusion = np.asarray(confusion, dtype=np.float64)
    k = confusion.shape[0]
    values = confusion
    if normalize:
        totals = confusion.sum(axis=1, keepdims=True)
        values = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    side = min(4.0 + 0.18 * k, 24.0)
    figure, axes = plt.subplots(figsize=(side, side), dpi=100)
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    # Names and cell numbers only while they stay readable.
    if k <= 60:
        axes.set_xticks(range(k))
        axes.set_yticks(range(k))
        fontsize = 8 if k <= 20 else 5
        axes.set_xticklabels(classes, rotation=90, fontsize=fontsize)
        axes.set_yticklabels(classes, fontsize=fontsize)
    if k <= 20:
        for row in range(k):
            for column in range(k):
                text = f"{values[row, column]:.2f}" if normalize else f"{int(confusion[row, column])}"
                axes.text(column, row, text, ha="center", va="center", fontsize=7,
                          color="white" if values[row, column] > 0.5 * (values.max() or 1) else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def figure_to_png(figure):
    """Renders a figure to PNG bytes and closes it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def figure_to_array(figure):
    """Renders a figure to a `(H, W, 3)` uint8 RGB array (e.g. for `tf.summary.image`) and closes it."""
    plt = _pyplot()
    figure.canvas.draw()
    array = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return array


def save_confusion_png(path, confusion, classes, normalize=True, title=None):
    """Writes the confusion matrix as a PNG file (atomically)."""
    atomic.write_bytes(path, figure_to_png(confusion_figure(confusion, classes, normalize, title)))
