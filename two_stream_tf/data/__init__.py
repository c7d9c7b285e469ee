"""Split files, held-out validation videos, frame layouts, the dataset index, tf.data pipelines, TFRecords
and synthetic videos."""
