"""Evaluation by the published protocol: per-video scores, metrics, fusion of score files and plots.

Modules:
  protocol  `evaluate(model, index, stream, …)`: 25 snippets × 10 (or 1, 3) crops, softmax averaged per video
  scores    `VideoScores` (with optional per-video logits and votes), `save_scores` / `load_scores` (`.npz`
            of plain arrays)
  metrics   top-k, mean class accuracy, per-class accuracy, confusion matrix, `compute_metrics`
  fusion    `fuse` score files (average, weighted, logit_sum, vote), `fit_weights` on validation scores,
            results table
  report    the files of an evaluation (scores, metrics JSON, per-class JSON, confusion PNG)
  plots     confusion-matrix figures (matplotlib, Agg)
"""
