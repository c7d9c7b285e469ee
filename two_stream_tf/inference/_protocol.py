"""Test-time crop and normalisation prediction shares with the input pipelines.

Stand-ins until `two_stream_tf.data.augment` lands; then these delegate to it.
"""
import numpy as np


def center_crop(image, size):
    height, width = size
    top = (image.shape[0] - height) // 2
    left = (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def normalize_rgb(images, mode):
    images = images.astype(np.float32)
    if mode == "tf":
        return images / 127.5 - 1.0
    if mode == "torch":
        return (images / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225],
                                                                                          np.float32)
    if mode == "caffe":
        return images[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    return images


def normalize_flow(stacks):
    return stacks.astype(np.float32) / 127.5 - 1.0
