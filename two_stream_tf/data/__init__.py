"""Split files, frame layouts, the dataset index, tf.data pipelines, TFRecords and synthetic videos."""
