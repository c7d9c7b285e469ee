"""Confusion-matrix figures, as PNG files and as RGB arrays for TensorBoard (matplotlib, Agg canvas).

Figures are `matplotlib.figure.Figure` objects drawn on their own Agg canvas, without pyplot: the
process's matplotlib backend is left as it was (a notebook keeps its inline figures, a desktop session
its windows), and no figure is registered with pyplot, so none needs closing.
"""
import io

import numpy as np

from two_stream_tf.training import atomic


def _new_figure(figsize, dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas: renders without a display
    return figure


def confusion_figure(confusion, classes, normalize=True, title=None):
    """Draws a confusion matrix.

    Args:
      confusion: `(K, K)` counts, rows = true class, columns = predicted class.
      classes: K class names.
      normalize: colour by the fraction of each true class (rows sum to 1) instead of counts.
      title: optional title.

    Returns:
      A `matplotlib.figure.Figure` with an Agg canvas (not managed by pyplot; nothing to close).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    k = confusion.shape[0]
    values = confusion
    if normalize:
        totals = confusion.sum(axis=1, keepdims=True)
        values = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    side = min(4.0 + 0.18 * k, 24.0)
    figure = _new_figure((side, side), 100)
    axes = figure.add_subplot()
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
    """Renders a figure to PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def figure_to_array(figure):
    """Renders a figure to a `(H, W, 3)` uint8 RGB array (e.g. for `tf.summary.image`)."""
    if figure.canvas is None or not hasattr(figure.canvas, "buffer_rgba"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(figure)  # a figure made elsewhere (e.g. with pyplot): render it with Agg too
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def save_confusion_png(path, confusion, classes, normalize=True, title=None):
    """Writes the confusion matrix as a PNG file (atomically)."""
    atomic.write_bytes(path, figure_to_png(confusion_figure(confusion, classes, normalize, title)))
