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
import importlib

# Public names and their modules. They load on first use, so reading a video (`video_source`) does not
# start TensorFlow: `two-stream predict` can report an unreadable input before loading the models.
_EXPORTS = {
    "AnnotatedVideoWriter": "annotate", "annotate_frame": "annotate",
    "PredictionModels": "loading", "load_prediction_models": "loading",
    "Prediction": "predictor", "Predictor": "predictor", "WindowPrediction": "predictor",
    "FrameArraySource": "video_source", "VideoSource": "video_source", "open_source": "video_source",
    "parse_source": "video_source",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__():
    return sorted(list(globals()) + __all__)
