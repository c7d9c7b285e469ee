"""Evaluation by the published protocol: per-video scores, metrics, fusion of score files and plots."""
