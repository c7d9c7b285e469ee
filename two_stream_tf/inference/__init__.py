"""Inference: a video in, optical flow on the fly, top-k actions and an annotated video out."""
