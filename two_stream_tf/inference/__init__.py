"""Inference: a video in, optical flow on the fly, top-k actions and an annotated video out.

    from two_stream_tf.inference import Predictor
    predictor = Predictor(["spatial.keras", "temporal.keras"], "classInd.txt", flow_method="dis")
    prediction = predictor.predict_video("v_Archery_g02_c02.avi", annotate="archery.mp4")
    prediction.top_k                      # [("Archery", 0.91), ...]
    predictor.predict_video("long.mp4", window=64, stride=32).per_window

Modules: `video_source` (files, stream URLs, cameras), `frames` (resizing and flow as in data
preparation, in a thread pool), `snippets` (the test protocol's snippets, crops and normalisation),
`loading` (models and class names), `predictor` (`Predictor`), `annotate` (annotated MP4/GIF).
"""
from two_stream_tf.inference.annotate import AnnotatedVideoWriter, annotate_frame
from two_stream_tf.inference.loading import PredictionModels, load_prediction_models
from two_stream_tf.inference.predictor import Prediction, Predictor, WindowPrediction
from two_stream_tf.inference.video_source import FrameArraySource, VideoSource, open_source, parse_source

__all__ = [
    "AnnotatedVideoWriter", "annotate_frame", "PredictionModels", "load_prediction_models", "Prediction",
    "Predictor", "WindowPrediction", "FrameArraySource", "VideoSource", "open_source", "parse_source",
]
