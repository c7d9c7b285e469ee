"""The protocol frame resize equals OpenCV's cv2.resize (INTER_LINEAR) value for value."""
import cv2
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.data import frame_resize


@pytest.mark.parametrize("shape, size", [
    ((240, 320), (256, 340)), ((240, 320, 3), (256, 340)), ((480, 640, 3), (256, 340)), ((100, 131), (256, 340)),
    ((257, 341), (256, 340)), ((256, 455, 3), (256, 340)), ((300, 200), (224, 224)), ((37, 51, 3), (256, 340))])
def test_cv_resize_equals_opencv(shape, size):
    rng = np.random.default_rng(sum(shape))
    images = [rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 255, np.uint8),
              cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (9, 9), 3)]
    for image in images:
        ours = frame_resize.cv_resize(image, size, channels_last=len(shape) == 3).numpy()
        expected = cv2.resize(image, (size[1], size[0]))
        assert ours.dtype == np.uint8 and ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected)


def test_cv_resize_of_a_batch_of_planes_resizes_each():
    rng = np.random.default_rng(3)
    planes = rng.integers(0, 256, (2, 4, 24, 32), dtype=np.uint8)
    ours = frame_resize.cv_resize(planes, (30, 40), channels_last=False).numpy()
    for index in np.ndindex(2, 4):
        np.testing.assert_array_equal(ours[index], cv2.resize(planes[index], (40, 30)))


def test_to_frame_size_keeps_frames_of_that_size_and_none():
    image = np.arange(256 * 340, dtype=np.int64).reshape(256, 340).astype(np.uint8)
    assert frame_resize.to_frame_size(image, None) is image
    kept = frame_resize.to_frame_size(tf.constant(image), (256, 340), channels_last=False)
    np.testing.assert_array_equal(kept.numpy(), image)
    with pytest.raises(ValueError, match="frame_size"):
        frame_resize.check_frame_size((256,))
