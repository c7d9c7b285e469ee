"""Crop windows, flips and normalisation, checked pixel by pixel against NumPy on known images."""
import numpy as np
import pytest
import tensorflow as tf

from two_stream_tf.data import augment


def coordinate_planes(height, width, num_pairs=1):
    """Flow planes whose x plane holds each pixel's column and y plane its row (uint8 `(2L, H, W)`)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.uint8)
    return np.stack([cols, rows] * num_pairs)


def reference_flip(planes):
    """NumPy reference of DESIGN.md's flow flip: mirror, then x -> 255 - x; y unchanged."""
    mirrored = planes[..., ::-1].copy()
    mirrored[..., 0::2, :, :] = 255 - mirrored[..., 0::2, :, :]
    return mirrored


def test_flipped_flow_has_x_negated_and_y_unchanged():
    planes = np.random.RandomState(0).randint(0, 256, size=(6, 8, 8)).astype(np.uint8)  # L = 3
    for flip in (True, tf.constant(True)):
        view = augment.flow_view(tf.constant(planes), flip, 8, normalization="none").numpy()
        assert view.shape == (8, 8, 6)
        expected = reference_flip(planes).transpose(1, 2, 0).astype(np.float32)
        np.testing.assert_array_equal(view, expected)
    # Pixel level: x1 at the top-left of the mirrored view is 255 - x1 at the top-right of the original.
    view = augment.flow_view(tf.constant(planes), True, 8, normalization="none").numpy()
    assert view[0, 0, 0] == 255 - planes[0, 0, 7]
    assert view[0, 0, 1] == planes[1, 0, 7]
    unflipped = augment.flow_view(tf.constant(planes), tf.constant(False), 8, normalization="none").numpy()
    np.testing.assert_array_equal(unflipped, planes.transpose(1, 2, 0).astype(np.float32))


def test_symmetric_flow_normalisation_and_flip_negate_x():
    planes = np.random.RandomState(1).randint(0, 256, size=(4, 8, 8)).astype(np.uint8)
    plain = augment.flow_view(tf.constant(planes), False, 8).numpy()
    np.testing.assert_array_equal(plain, (planes.transpose(1, 2, 0).astype(np.float32) - 128) / 128)
    assert plain.min() >= -1.0 and plain.max() <= 127 / 128
    flipped = augment.flow_view(tf.constant(planes), True, 8).numpy()
    # After normalisation the flip of x is q -> 255 - q: a sign change less one level (1/128), and a mirror;
    # y only mirrored.
    np.testing.assert_array_equal(flipped[..., 0::2], -plain[:, ::-1, 0::2] - 1 / 128)
    np.testing.assert_array_equal(flipped[..., 1::2], plain[:, ::-1, 1::2])


@pytest.mark.parametrize("normalization, expected", [("symmetric", 0.0), ("caffe", 0.0), ("none", 128.0)])
def test_zero_motion_normalises_to_exactly_zero(normalization, expected):
    """Quantised 128 is zero motion in dense_flow's quantisation (cvRound(127.5) = 128)."""
    planes = np.full((2, 5, 7), 128, np.uint8)
    for size in (5, 11):  # as stored and resized
        view = augment.flow_view(tf.constant(planes), False, size, normalization=normalization).numpy()
        assert np.all(view == expected)
    assert augment.normalize_flow(np.float32([128.0]), normalization)[0] == expected
    np.testing.assert_array_equal(augment.denormalize_flow(augment.normalize_flow(np.arange(256.0), normalization),
                                                           normalization), np.arange(256.0))
    assert augment.normalize_flow(np.float32([0.0, 255.0]), "caffe").tolist() == [-128.0, 127.0]


def test_mirror_handles_segment_batches():
    planes = np.random.RandomState(2).randint(0, 256, size=(3, 4, 5, 7)).astype(np.uint8)  # S=3, L=2
    mirrored = augment.mirror_flow_planes(tf.constant(planes)).numpy()
    np.testing.assert_array_equal(mirrored, reference_flip(planes))
    views = augment.flow_view(tf.constant(planes), True, 9, normalization="none")
    assert views.shape == (3, 9, 9, 4)


def test_resized_flow_views_match_mirror_then_bilinear_resize():
    """flow_view (one fused XLA pass for mirror, x negation, interleave and normalisation, then the resize)
    gives what the separate steps give: mirror and negate x on uint8, channels last, TensorFlow's
    half-pixel bilinear resize, `(q - 128) / 128`; within float rounding, for up- and downscaling."""
    rng = np.random.RandomState(3)
    for shape in ((2, 6, 13, 17), (4, 5, 6)):  # S=2 segments of L=3 upscaled; L=2 downscaled
        planes = rng.randint(0, 256, size=shape).astype(np.uint8)
        size = 9 if shape[-1] > 9 else 4
        for flip in (False, True, tf.constant(True), tf.constant(False)):
            mirrored = reference_flip(planes) if bool(flip) else planes
            channels_last = np.moveaxis(mirrored, -3, -1).astype(np.float32)
            expected = tf.image.resize(channels_last, [size, size], method="bilinear").numpy()
            raw = augment.flow_view(tf.constant(planes), flip, size, normalization="none").numpy()
            assert raw.shape == shape[:-3] + (size, size, shape[-3]) and raw.dtype == np.float32
            np.testing.assert_allclose(raw, expected, atol=2e-3)
            normalised = augment.flow_view(tf.constant(planes), flip, size).numpy()
            np.testing.assert_allclose(normalised, (expected - 128) / 128, atol=1e-5)
    # The end points of the quantised range map exactly onto -1 and 127/128, also for mirrored x.
    extremes = np.zeros((2, 3, 3), np.uint8)
    extremes[:, :, 1:] = 255
    view = augment.flow_view(tf.constant(extremes), True, 3).numpy()
    assert view.min() == -1.0 and view.max() == 127 / 128
    np.testing.assert_array_equal(view[..., 0], [[-1.0, -1.0, 127 / 128]] * 3)  # mirrored, then 255 - q
    np.testing.assert_array_equal(view[..., 1], [[127 / 128, 127 / 128, -1.0]] * 3)


def windows_for_seeds(frame_shape, count, **kwargs):
    """Multi-scale windows for seeds (0, 0) … (0, count - 1), in one graph call."""
    draw = tf.function(lambda k: augment.multiscale_crop_window(tf.constant(frame_shape), tf.stack([0, k]), **kwargs))
    return tf.map_fn(draw, tf.range(count), fn_output_signature=tf.int32).numpy()


def test_multiscale_windows_take_tsn_sizes_and_fixed_places():
    height, width = 256, 340
    sides = [int(256 * s) for s in augment.SCALES]
    assert sides == [256, 224, 192, 168]
    allowed_sizes = {(sides[i], sides[j]) for i, j in augment.scale_pairs(4, 1)}
    assert len(allowed_sizes) == 10 and (256, 192) not in allowed_sizes
    seen_sizes, seen_places = set(), set()
    for top, left, h, w in windows_for_seeds([height, width], 300):
        assert (h, w) in allowed_sizes
        place = ((top // ((height - h) // 4)) if height > h else 0, left // ((width - w) // 4))
        assert top == (height - h) // 4 * place[0] and left == (width - w) // 4 * place[1]
        seen_sizes.add((h, w))
        if height > h:
            seen_places.add(place)
    assert seen_sizes == allowed_sizes
    assert seen_places == set(augment.FIXED_PLACES)


def test_more_fixed_crops_use_thirteen_places():
    seen = set()
    for top, left, h, w in windows_for_seeds([200, 300], 600, scales=(0.5,), more_fixed_crops=True):
        assert (h, w) == (100, 100)
        seen.add((top // 25, left // 50))
    assert seen == set(augment.MORE_FIXED_PLACES) and len(seen) == 13


def test_corner_crop_pixels_come_from_the_window():
    planes = tf.constant(coordinate_planes(120, 160))
    for k in range(40):
        window = augment.multiscale_crop_window(tf.constant([120, 160]), [2, k])
        top, left, h, w = window.numpy()
        crop = augment.crop_planes(planes, window).numpy()
        assert crop.shape == (2, h, w)
        assert (crop[0, 0, 0], crop[1, 0, 0]) == (left, top)  # x plane = column, y plane = row
        assert (crop[0, -1, -1], crop[1, -1, -1]) == (left + w - 1, top + h - 1)


def test_ten_crops_are_corners_centre_and_mirrors():
    windows, mirrored = augment.test_crop_windows(tf.constant([40, 60]), 32, 10)
    corners = [[0, 0], [0, 28], [8, 0], [8, 28], [4, 14]]
    assert windows.numpy().tolist() == [c + [32, 32] for c in corners] * 2
    assert mirrored.numpy().tolist() == [False] * 5 + [True] * 5
    planes = tf.constant(coordinate_planes(40, 60))
    views = [augment.flow_view(augment.crop_planes(planes, windows[i]), bool(mirrored[i]), 32, normalization="none")
             for i in range(10)]
    views = tf.stack(views).numpy()
    for i, (top, left) in enumerate(corners):
        assert (views[i, 0, 0, 0], views[i, 0, 0, 1]) == (left, top)
        # The mirrored view starts at the window's right edge, with x negated.
        assert (views[5 + i, 0, 0, 0], views[5 + i, 0, 0, 1]) == (255 - (left + 31), top)
        np.testing.assert_array_equal(views[5 + i, ..., 0], 255 - views[i, :, ::-1, 0])
        np.testing.assert_array_equal(views[5 + i, ..., 1], views[i, :, ::-1, 1])


def test_three_crops_run_along_the_long_side():
    wide, _ = augment.test_crop_windows(tf.constant([40, 60]), 32, 3)
    assert wide.numpy().tolist() == [[0, 0, 40, 40], [0, 10, 40, 40], [0, 20, 40, 40]]
    tall, _ = augment.test_crop_windows(tf.constant([60, 40]), 32, 3)
    assert tall.numpy().tolist() == [[0, 0, 40, 40], [10, 0, 40, 40], [20, 0, 40, 40]]


def test_centre_crop_and_small_frames():
    one, mirrored = augment.test_crop_windows(tf.constant([40, 60]), 32, 1)
    assert one.numpy().tolist() == [[4, 14, 32, 32]] and mirrored.numpy().tolist() == [False]
    small, _ = augment.test_crop_windows(tf.constant([20, 30]), 32, 1)
    assert small.numpy().tolist() == [[0, 5, 20, 20]]
    with pytest.raises(ValueError, match="crops must be one of"):
        augment.test_crop_windows(tf.constant([20, 30]), 32, 5)


def test_bounding_window_holds_all_windows():
    windows, _ = augment.test_crop_windows(tf.constant([40, 60]), 32, 10)
    assert augment.bounding_window(windows).numpy().tolist() == [0, 0, 40, 60]


def test_rgb_normalisations_match_numpy():
    pixels = np.array([[[0, 128, 255], [10, 20, 30]]], np.float32)
    np.testing.assert_allclose(augment.normalize_rgb(pixels, "tf"), pixels / 127.5 - 1, atol=1e-6)
    torch = (pixels / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(augment.normalize_rgb(pixels, "torch"), torch, atol=1e-5)
    caffe = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(augment.normalize_rgb(pixels, "caffe"), caffe, atol=1e-4)
    np.testing.assert_array_equal(augment.normalize_rgb(pixels, "none"), pixels)
    np.testing.assert_array_equal(augment.normalize_rgb(pixels, lambda x: x * 2), pixels * 2)
    with pytest.raises(ValueError, match="rgb_normalization"):
        augment.normalize_rgb(pixels, "imagenet")


def test_rgb_view_mirrors_and_resizes():
    image = np.random.RandomState(3).randint(0, 256, size=(6, 6, 3)).astype(np.uint8)
    mirrored = augment.rgb_view(tf.constant(image), True, 6, "none").numpy()
    np.testing.assert_array_equal(mirrored, image[:, ::-1].astype(np.float32))
    flat = np.full((10, 20, 3), 77, np.uint8)
    resized = augment.rgb_view(tf.constant(flat), False, 16, "tf").numpy()
    assert resized.shape == (16, 16, 3)
    np.testing.assert_allclose(resized, 77 / 127.5 - 1, atol=1e-6)
