"""Tiny real models for the prediction tests: MobileNet (alpha 0.25) with the real ImageNet weights file.

Small inputs (64×64), short flow stacks (L = 2) and small prepared frames (96×72) keep every prediction
fast; everything else — decoding, DIS flow, the test protocol, the Keras models — is the real thing.
"""
import cv2

IMAGE_SIZE = 64
STACK_LENGTH = 2
FRAME_SIZE = (96, 72)  # (width, height) frames are resized to, instead of 340×256
WEIGHTS = "weights/mobilenet_2_5_224_tf_no_top.h5"


def build_models(shared_data, folder):
    """Saves a spatial, a temporal and a fused two-stream `.keras` model for the 101 UCF-101 classes.

    Returns:
      dict with "spatial", "temporal", "fused" (paths) and "class_index" (the real classInd.txt).
    """
    from two_stream_tf.models import save_model, spatial_model, temporal_model, two_stream_model

    weights = shared_data / WEIGHTS
    spatial = spatial_model(101, backbone="mobilenet", weights=weights, input_shape=(IMAGE_SIZE, IMAGE_SIZE),
                            alpha=0.25)
    temporal = temporal_model(101, backbone="mobilenet", weights=weights, input_shape=(IMAGE_SIZE, IMAGE_SIZE),
                              stack_length=STACK_LENGTH, alpha=0.25)
    paths = {"spatial": folder / "spatial.keras", "temporal": folder / "temporal.keras",
             "fused": folder / "two_stream.keras"}
    save_model(spatial, paths["spatial"])
    save_model(temporal, paths["temporal"])
    save_model(two_stream_model(spatial, temporal), paths["fused"])
    paths["class_index"] = shared_data / "ucf101_splits" / "classInd.txt"
    return paths


def ucf101_clips(shared_data):
    """The real UCF-101 clips, sorted."""
    return sorted((shared_data / "videos" / "ucf101").glob("*.avi"))


def decode_all(path):
    """Every frame OpenCV decodes from `path` (BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
