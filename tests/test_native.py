"""The compiled training-view kernels: the same tensors as the TensorFlow-ops path, their errors, the fallback."""
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf

from pipeline_helpers import index_videos, ramp, write_video
from two_stream_tf.data import native, pipelines

requires_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler to build the kernels")


def batches(dataset):
    return [tf.nest.map_structure(lambda t: t.numpy(), element) for element in dataset]


@pytest.fixture(scope="module")
def ramps(tmp_path_factory):
    """4 videos of 12 frames, 60×80, ramps that differ by video; flow pair t = ramp(t)."""
    root = tmp_path_factory.mktemp("native_ramps")
    videos = [("v_A_g01_c01", 0), ("v_A_g02_c01", 0), ("v_B_g01_c01", 1), ("v_B_g02_c01", 1)]
    for number, (video, label) in enumerate(videos):
        write_video(str(root), video, 12, size=(60, 80), offset=30 * number)
    return index_videos(str(root), videos)


def build_both(make, monkeypatch, **kwargs):
    """The batches of one pipeline built with the kernel and built with TensorFlow ops only."""
    assert native.flow_stacks_op() is not None and native.rgb_views_op() is not None
    with_kernel = batches(make(**kwargs))
    monkeypatch.setenv(native.ENABLE_VARIABLE, "0")
    try:
        without = batches(make(**kwargs))
    finally:
        monkeypatch.delenv(native.ENABLE_VARIABLE)
    return with_kernel, without


@requires_compiler
@pytest.mark.parametrize("options", [
    dict(stack_length=10, image_size=48),
    dict(stack_length=3, image_size=40, num_segments=3),
    dict(stack_length=4, image_size=64, flow_normalization="none", scales=(1.0, 0.5), max_distort=2),
    dict(stack_length=3, image_size=48, flow_normalization="caffe", dct_method="INTEGER_FAST"),
    # Frames stored at 60×80 resized to the frame size (OpenCV's arithmetic) before the crop, up and down.
    dict(stack_length=3, image_size=48, frame_size=(72, 96)),
    dict(stack_length=2, image_size=32, frame_size=(45, 50), num_segments=2, dct_method="INTEGER_FAST"),
    dict(stack_length=2, image_size=32, frame_size=(60, 80)),  # stored at the frame size: no resize
])
def test_kernel_matches_tensorflow_ops(ramps, monkeypatch, options):
    with_kernel, without = build_both(pipelines.temporal_dataset, monkeypatch, index=ramps, training=True,
                                      batch_size=3, seed=11, deterministic=True, repeat=3, **options)
    assert len(with_kernel) == len(without) == 4
    tolerance = 1e-5 * (255 if options.get("flow_normalization") in ("none", "caffe") else 1)
    for (x, labels), (expected_x, expected_labels) in zip(with_kernel, without):
        assert x.shape == expected_x.shape and x.dtype == np.float32
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_allclose(x, expected_x, atol=tolerance, rtol=0)
    assert np.ptp(np.concatenate([x for x, _ in with_kernel])) > 0.5  # real pictures, not zeros


@requires_compiler
def test_two_stream_flow_from_the_kernel_matches(ramps, monkeypatch):
    with_kernel, without = build_both(pipelines.two_stream_dataset, monkeypatch, index=ramps, training=True,
                                      batch_size=4, stack_length=2, image_size=32, num_segments=2, seed=5,
                                      deterministic=True, repeat=2, frame_size=(64, 90))
    for (x, _), (expected, _) in zip(with_kernel, without):
        np.testing.assert_allclose(x["rgb"], expected["rgb"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(x["flow"], expected["flow"], atol=1e-5, rtol=0)


@requires_compiler
@pytest.mark.parametrize("options", [
    dict(rgb_normalization="tf", image_size=48),
    dict(rgb_normalization="torch", image_size=40, num_segments=3),
    dict(rgb_normalization="caffe", image_size=96, scales=(1.0, 0.5), max_distort=2),
    dict(rgb_normalization="none", image_size=64),
    dict(rgb_normalization="none", image_size=48, frame_size=(72, 96)),
    dict(rgb_normalization="caffe", image_size=40, frame_size=(50, 66), dct_method="INTEGER_FAST"),
])
def test_rgb_kernel_matches_tensorflow_ops(ramps, monkeypatch, options):
    with_kernel, without = build_both(pipelines.spatial_dataset, monkeypatch, index=ramps, training=True,
                                      batch_size=3, seed=4, deterministic=True, repeat=3, **options)
    assert len(with_kernel) == len(without) == 4
    scale = 255 if options["rgb_normalization"] in ("caffe", "none") else 1
    for (x, labels), (expected_x, expected_labels) in zip(with_kernel, without):
        assert x.shape == expected_x.shape and x.dtype == np.float32
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_allclose(x, expected_x, atol=1e-5 * scale, rtol=0)


def test_a_callable_normalisation_keeps_tensorflow_ops(ramps):
    # The kernel knows only the named affine normalisations; a callable runs on TensorFlow's output.
    dataset = pipelines.spatial_dataset(ramps, training=True, batch_size=4, image_size=16, seed=0,
                                        rgb_normalization=lambda images: images * 0.0 + 7.0)
    x, _ = next(iter(dataset))
    np.testing.assert_array_equal(x.numpy(), 7.0)


def flow_jpegs(planes):
    return tf.constant([[cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
                         for plane in planes]])


@requires_compiler
def test_kernel_mirrors_and_negates_x_at_pixel_level():
    # A stack whose x plane is the column ramp and y plane its complement; the window is the whole frame,
    # resized 1:1, so every output pixel is a decoded pixel.
    x_plane, y_plane = ramp(16, 32, 0), 255 - ramp(16, 32, 0)
    op = native.flow_stacks_op()
    contents = flow_jpegs([x_plane, y_plane])
    window = tf.constant([[0, 0, 16, 32]])
    kwargs = dict(image_size=32, zero=0.0, scale=1.0)
    plain = op(contents, window, tf.constant([False]), tf.constant([True]), **kwargs)[0][0].numpy()
    mirrored = op(contents, window, tf.constant([True]), tf.constant([True]), **kwargs)[0][0].numpy()
    # The reference: TensorFlow's decoder (the kernel uses the same one, same DCT) and OpenCV's resize.
    decoded = [cv2.resize(tf.io.decode_jpeg(c, dct_method="INTEGER_FAST")[..., 0].numpy().astype(np.float32),
                          (32, 32), interpolation=cv2.INTER_LINEAR) for c in contents[0]]
    np.testing.assert_allclose(plain[..., 0], decoded[0], atol=1e-3)
    np.testing.assert_allclose(plain[..., 1], decoded[1], atol=1e-3)
    np.testing.assert_allclose(mirrored[..., 0], 255 - plain[:, ::-1, 0], atol=1e-3)  # x -> 255 - x, mirrored
    np.testing.assert_allclose(mirrored[..., 1], plain[:, ::-1, 1], atol=1e-3)  # y only mirrored
    dropped, failed = op(contents, window, tf.constant([True]), tf.constant([False]), **kwargs)
    assert not np.any(dropped.numpy()) and not np.any(failed.numpy())


@requires_compiler
@pytest.mark.parametrize("bgr", [False, True])
def test_rgb_kernel_mirrors_and_orders_channels_at_pixel_level(bgr):
    # Red is the column ramp, green its complement, blue constant; resized 1:1 horizontally.
    red = ramp(16, 32, 0)
    image = np.stack([red, 255 - red, np.full_like(red, 90)], axis=-1)
    contents = tf.constant([cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()])
    op = native.rgb_views_op()
    kwargs = dict(image_size=32, scale=[1.0, 0.5, 2.0], shift=[0.0, 10.0, -1.0], bgr=bgr)
    window = tf.constant([[0, 0, 16, 32]])
    plain = op(contents, window, tf.constant([False]), tf.constant([True]), **kwargs)[0][0].numpy()
    mirrored = op(contents, window, tf.constant([True]), tf.constant([True]), **kwargs)[0][0].numpy()
    decoded = tf.io.decode_jpeg(contents[0], dct_method="INTEGER_FAST").numpy().astype(np.float32)
    reference = cv2.resize(decoded, (32, 32), interpolation=cv2.INTER_LINEAR)
    if bgr:
        reference = reference[..., ::-1]
    expected = reference * np.float32([1.0, 0.5, 2.0]) + np.float32([0.0, 10.0, -1.0])
    np.testing.assert_allclose(plain, expected, atol=1e-3)
    np.testing.assert_allclose(mirrored, plain[:, ::-1], atol=1e-3)  # mirrored, channels untouched
    dropped, failed = op(contents, window, tf.constant([True]), tf.constant([False]), **kwargs)
    assert not np.any(dropped.numpy()) and not np.any(failed.numpy())
    # A window running off the frame (a frame of another size than the sample's first) is reported, not raised.
    off, failed = op(tf.concat([contents, contents], 0), tf.constant([[0, 0, 16, 32], [4, 0, 16, 32]]),
                     tf.constant([False, False]), tf.constant([True, True]), **kwargs)
    assert failed.numpy().tolist() == [False, True]
    np.testing.assert_allclose(off[0].numpy(), plain, atol=1e-6)
    assert not np.any(off[1].numpy())


@requires_compiler
def test_kernel_flags_the_planes_it_cannot_decode_and_zeroes_their_stack():
    op = native.flow_stacks_op()
    good = ramp(16, 32, 0)
    small = cv2.imencode(".jpg", good[:8, :16])[1].tobytes()  # a plane of another size
    damaged = bytearray(flow_jpegs([good])[0, 0].numpy())
    damaged[20:60] = b"\x00" * 40  # quantisation tables gone: libjpeg gives up
    contents = tf.constant([[flow_jpegs([good])[0, 0].numpy()] * 2, [small, bytes(damaged)],
                            [flow_jpegs([good])[0, 0].numpy()] * 2])
    windows = tf.constant([[0, 0, 16, 32], [0, 0, 16, 32], [8, 20, 16, 32]])  # the third runs off the frame
    stacks, failed = op(contents, windows, tf.constant([False] * 3), tf.constant([True] * 3), image_size=8,
                        zero=128.0, scale=1.0 / 128)
    assert failed.numpy().tolist() == [[False, False], [True, True], [True, True]]
    assert np.abs(stacks[0].numpy()).max() > 0.5 and not np.any(stacks[1:].numpy())


@requires_compiler
def test_jpeg_sizes_op_reads_headers_and_gives_zeros_for_bad_ones():
    frame = cv2.imencode(".jpg", ramp(24, 40, 0))[1].tobytes()
    damaged = frame[:20] + b"\x00" * 200 + frame[220:]
    sizes = native.jpeg_sizes_op()(tf.constant([[frame, b""], [damaged, frame[:10]]])).numpy()
    assert sizes.tolist() == [[[24, 40], [0, 0]], [[0, 0], [0, 0]]]


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENABLE_VARIABLE, "off")
    assert not native.enabled() and native.flow_stacks_op() is None and native.rgb_views_op() is None


def test_a_failed_build_falls_back_to_tensorflow_ops(tmp_path):
    # In a fresh process with an empty cache and a compiler that does not exist: one warning, no kernel,
    # and the pipeline still gives flow stacks.
    code = textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        from two_stream_tf.data import native, pipelines
        from pipeline_helpers import index_videos, write_video
        assert native.flow_stacks_op() is None
        write_video({str(tmp_path / "frames")!r}, "v_A_g01_c01", 6)
        index = index_videos({str(tmp_path / "frames")!r}, [("v_A_g01_c01", 0)])
        x, _ = next(iter(pipelines.temporal_dataset(index, training=True, batch_size=1, stack_length=2,
                                                    image_size=16, seed=0)))
        print("shape", tuple(x.shape))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**_environment(), native.CACHE_VARIABLE: str(tmp_path / "cache"),
                                 "CXX": str(tmp_path / "no-such-compiler")})
    assert result.returncode == 0, result.stderr
    assert "shape (1, 16, 16, 4)" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("two_stream_tf.data.native")]
    assert len(warnings) == 1 and "using TensorFlow ops (no C++ compiler found" in warnings[0]


def _environment():
    return {key: value for key, value in os.environ.items() if key not in ("CXX", native.ENABLE_VARIABLE)}


def test_cache_is_keyed_by_the_source(monkeypatch, tmp_path):
    monkeypatch.setenv(native.CACHE_VARIABLE, str(tmp_path))
    path = native.library_path()
    assert path.name == "views.so" and path.is_relative_to(tmp_path / "native")
    changed = tmp_path / "views.cc"
    changed.write_text(native.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(native, "SOURCE", changed)
    assert native.library_path() != path  # an upgraded kernel is built anew, not the stale one loaded


@requires_compiler
@pytest.mark.parametrize("channels", [1, 3])
def test_kernel_resizes_to_the_frame_size_as_opencv_then_crops(channels):
    """A frame stored at 48×64 and a 40×50 window of it at frame size 61×83: the window of
    cv2.resize(cv2.imdecode(jpeg), (83, 61)), pixel for pixel (crop resized 1:1, normalisation none)."""
    rng = np.random.default_rng(channels)
    image = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 2)
    image = image[..., 0] if channels == 1 else image
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    flags = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    expected = cv2.resize(cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags), (83, 61))[7:47, 21:71]
    decode = dict(frame_height=61, frame_width=83, accurate_dct=True)
    if channels == 1:
        stacks, _ = native.flow_stacks_op()(tf.constant([[jpeg, jpeg]]), tf.constant([[7, 21, 40, 40]]),
                                            tf.constant([False]), tf.constant([True]), image_size=40, zero=0.0,
                                            scale=1.0, **decode)
        got = stacks[0, ..., 0].numpy()
        np.testing.assert_array_equal(got, expected[:, :40])
    else:
        got = native.rgb_views_op()(tf.constant([jpeg]), tf.constant([[7, 21, 40, 40]]), tf.constant([False]),
                                    tf.constant([True]), image_size=40, scale=[1.0] * 3, shift=[0.0] * 3,
                                    **decode)[0][0].numpy()
        np.testing.assert_array_equal(got, expected[:, :40, ::-1])  # imdecode gives BGR
