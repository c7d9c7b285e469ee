"""Prediction on real UCF-101 clips: flow as in data preparation, the test protocol, windows, annotated videos."""
import json
import os
import re
import stat

import cv2
import numpy as np
import pytest

from inference_helpers import FRAME_SIZE, IMAGE_SIZE, STACK_LENGTH, build_models, decode_all, ucf101_clips
from two_stream_tf.data import sampling
from two_stream_tf.errors import UserError
from two_stream_tf.flow.compute import compute_flow
from two_stream_tf.flow.quantize import quantize_flow
from two_stream_tf.inference import annotate
from two_stream_tf.inference.frames import FlowWorkers, FrameStore
from two_stream_tf.inference.predictor import Predictor, _WindowLabeller
from two_stream_tf.inference.snippets import crop_windows, flow_inputs, plan_snippets, rgb_inputs
from two_stream_tf.inference.video_source import FrameArraySource, open_source, parse_source


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory):
    return build_models(shared_data, tmp_path_factory.mktemp("inference_models"))


@pytest.fixture(scope="module")
def loaded(models):
    """The models as Keras objects (loaded once; `Predictor` takes them as well as paths)."""
    from two_stream_tf.models import load_model
    return {key: load_model(models[key], compile=False) for key in ("spatial", "temporal", "fused")}


@pytest.fixture(scope="module")
def predictor(models):
    return Predictor([models["spatial"], models["temporal"]], models["class_index"], flow_method="dis",
                     size=FRAME_SIZE, top_k=5)


@pytest.fixture(scope="module")
def class_names(models):
    from two_stream_tf.data.splits import read_class_index
    return read_class_index(models["class_index"])


@pytest.fixture(scope="module")
def archery(shared_data):
    return shared_data / "videos" / "ucf101" / "v_Archery_g02_c02.avi"


def _box_and_background_differences(source, annotated):
    """Mean absolute difference inside the text box (top left) and in a patch away from box and inset."""
    height, width = source.shape[:2]
    box = (slice(10, 22), slice(10, 60))
    background = (slice(height // 2 - 10, height // 2 + 10), slice(width // 2 - 10, width // 2 + 10))
    difference = np.abs(source.astype(np.int16) - annotated.astype(np.int16))
    return difference[box].mean(), difference[background].mean()


# --- every real clip --------------------------------------------------------------------------------------

def test_every_ucf101_clip_gives_top5_and_an_annotated_video_with_all_frames(predictor, shared_data, class_names,
                                                                             tmp_path):
    clips = ucf101_clips(shared_data)
    assert len(clips) == 46
    for clip in clips:
        output = tmp_path / f"{clip.stem}.mp4"
        prediction = predictor.predict_video(clip, annotate=output)
        header = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
        # Real clips claim at most one frame more than decodes (v_Kayaking_g12_c03: 372 vs 371).
        assert prediction.num_frames in (header, header - 1), clip.name
        assert len(prediction.top_k) == 5
        assert [name for name, _ in prediction.top_k] == [class_names[k] for k in np.argsort(-prediction.scores)[:5]]
        scores = [score for _, score in prediction.top_k]
        assert scores == sorted(scores, reverse=True)
        assert prediction.scores.sum() == pytest.approx(1.0, abs=1e-5)  # averaged softmax
        assert len(prediction.snippet_frames) == 25
        assert 0 <= min(prediction.snippet_frames) and max(prediction.snippet_frames) < prediction.num_frames
        written = cv2.VideoCapture(str(output))
        assert written.isOpened(), clip.name
        assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == prediction.num_frames, clip.name
        assert (int(written.get(cv2.CAP_PROP_FRAME_WIDTH)), int(written.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)
        written.release()


def test_annotated_mp4_decodes_frame_by_frame_with_a_visible_overlay(predictor, archery, tmp_path):
    output = tmp_path / "archery.mp4"
    prediction = predictor.predict_video(archery, annotate=output, flow_inset=True)
    assert prediction.annotated == str(output)
    source, annotated = decode_all(archery), decode_all(output)
    assert len(annotated) == len(source) == prediction.num_frames == 160
    assert not list(tmp_path.glob(".annotating-*"))  # the temporary file became the output
    for index in (0, 80, 159):
        inside, outside = _box_and_background_differences(source[index], annotated[index])
        assert inside > 25, index   # the dark box with text
        assert outside < 12, index  # elsewhere only mp4v's coding error
        # The flow inset (bottom right) replaces the picture there.
        corner = (slice(-30, -8), slice(-60, -8))
        assert np.abs(source[index][corner].astype(int) - annotated[index][corner].astype(int)).mean() > 25


def test_gif_output_in_window_mode_has_every_frame(predictor, archery, tmp_path):
    output = tmp_path / "archery.gif"
    prediction = predictor.predict_video(archery, window=64, stride=48, annotate=output)
    frames = decode_all(output)
    assert len(frames) == prediction.num_frames == 160
    inside, _ = _box_and_background_differences(decode_all(archery)[100], frames[100])
    assert inside > 25


# --- windows --------------------------------------------------------------------------------------------------

def test_sliding_windows_give_one_prediction_per_window(predictor, archery):
    prediction = predictor.predict_video(archery, window=40, stride=25)
    # 160 frames: windows start at 0, 25, ..., 100 (the last that fits 40 frames).
    assert [(w.start, w.end) for w in prediction.per_window] == [(s, s + 40) for s in range(0, 101, 25)]
    assert [w.index for w in prediction.per_window] == list(range(5))
    first = prediction.per_window[1]
    assert first.start_time == pytest.approx(25 / 25.0) and first.end_time == pytest.approx(65 / 25.0)
    for window in prediction.per_window:
        assert len(window.top_k) == 5 and window.scores.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(prediction.scores, np.mean([w.scores for w in prediction.per_window], axis=0))
    json.dumps(prediction.to_dict())  # JSON-ready


def test_a_window_scores_the_same_frames_as_that_stretch_of_video_alone(models, predictor, archery):
    frames = decode_all(archery)
    windowed = predictor.predict_video(archery, window=40, stride=25, window_snippets=4)
    four_snippets = Predictor([models["spatial"], models["temporal"]], models["class_index"], size=FRAME_SIZE,
                              num_snippets=4)
    stretch = four_snippets.predict_frames(frames[50:90])
    np.testing.assert_allclose(windowed.per_window[2].scores, stretch.scores, rtol=1e-5, atol=1e-7)


def test_iter_windows_yields_the_windows_as_they_complete(predictor, archery):
    windows = list(predictor.iter_windows(archery, window=64, stride=32))
    assert [(w.start, w.end) for w in windows] == [(0, 64), (32, 96), (64, 128), (96, 160)]
    whole = predictor.predict_video(archery, window=64, stride=32)
    np.testing.assert_allclose([w.scores for w in windows], [w.scores for w in whole.per_window], rtol=1e-6)


def test_a_video_shorter_than_the_window_is_one_window(predictor, archery):
    frames = decode_all(archery)[:30]
    prediction = predictor.predict_frames(frames, window=64, fps=25)
    assert [(w.start, w.end) for w in prediction.per_window] == [(0, 30)]


def test_a_video_shorter_than_one_stack_loops_its_stacks_and_says_so(predictor, archery):
    # 3 frames hold 2 flow pairs; stacks of 2 fit, so no note. 2 frames hold 1 pair: every stack is that
    # pair twice (the protocol's loop back), as the evaluation pipelines read such a video.
    frames = decode_all(archery)
    assert plan_snippets(2, 3, STACK_LENGTH).stacks == ((0, 0),) * 3
    assert predictor.predict_frames(frames[:3]).notes == []
    short = predictor.predict_frames(frames[:2], fps=25)
    assert short.notes == ["frames: 2 frames give 1 flow pair, fewer than one stack of 2 (3 frames); "
                           "scored with each stack looping back to the first pair, as the test protocol scores "
                           "short videos"]
    assert np.isclose(short.scores.sum(), 1.0, atol=1e-4)
    with pytest.raises(UserError, match="1 frame decoded; the temporal stream needs at least 2"):
        predictor.predict_frames(frames[:1])


def test_window_labeller_picks_the_window_with_the_nearest_centre():
    labeller = _WindowLabeller(window=4, stride=2)  # centres 1.5, 3.5, 5.5, ...
    assert [labeller.window_of(i) for i in range(8)] == [0, 0, 0, 1, 1, 2, 2, 3]


# --- same inputs as training ---------------------------------------------------------------------------------

def test_two_pass_reading_of_a_long_video_gives_the_same_scores_and_video(models, predictor, archery, tmp_path):
    long_video = Predictor([models["spatial"], models["temporal"]], models["class_index"], size=FRAME_SIZE,
                           max_buffered_frames=20)
    two_passes = long_video.predict_video(archery, annotate=tmp_path / "two_passes.mp4", flow_inset=True)
    one_pass = predictor.predict_video(archery, annotate=tmp_path / "one_pass.mp4", flow_inset=True)
    np.testing.assert_allclose(two_passes.scores, one_pass.scores, rtol=1e-6)
    # The flow insets of frames that were not kept are computed again while annotating: the same pictures.
    for first, second in zip(decode_all(two_passes.annotated), decode_all(one_pass.annotated), strict=True):
        np.testing.assert_array_equal(first, second)


def test_frames_in_memory_give_the_scores_of_the_file(predictor, archery):
    frames = decode_all(archery)
    expected = predictor.predict_video(archery).scores
    np.testing.assert_allclose(predictor.predict_frames(np.stack(frames), fps=25).scores, expected, rtol=1e-6)
    rgb = FrameArraySource([frame[..., ::-1] for frame in frames], fps=25, channel_order="rgb")
    np.testing.assert_allclose(predictor.predict_video(rgb).scores, expected, rtol=1e-6)


def test_stream_order_does_not_matter_and_a_fused_model_file_works(models, loaded, predictor, archery):
    swapped = Predictor([loaded["temporal"], loaded["spatial"]], models["class_index"], size=FRAME_SIZE)
    np.testing.assert_allclose(swapped.predict_video(archery).scores, predictor.predict_video(archery).scores,
                               rtol=1e-6)
    fused = Predictor(models["fused"], models["class_index"], size=FRAME_SIZE)
    assert fused.stack_length == STACK_LENGTH and fused.models.rgb_normalization == "tf"
    prediction = fused.predict_video(archery)
    assert prediction.scores.sum() == pytest.approx(1.0, abs=1e-5)
    # The fused model reads the RGB image numbered like each flow snippet's first pair, as the two-stream
    # dataset does; with dense_flow numbering that image is the frame where the pair ends.
    starts = sampling.test_starts(prediction.num_frames - 1, 25, length=STACK_LENGTH).numpy() + 1
    assert prediction.snippet_frames == starts.tolist()


def test_flow_is_the_flow_data_preparation_writes(archery, tmp_path):
    from two_stream_tf.preparation.extract import extract_video
    result = extract_video(archery, tmp_path, size=FRAME_SIZE, flow_method="dis", max_frames=6)
    assert result.ok
    with FlowWorkers("dis", 20.0, workers=2) as workers, open_source(archery) as source:
        store = FrameStore(lambda w, h: FRAME_SIZE, workers)
        for index, frame in enumerate(source.frames()):
            store.add(frame)
            if index == 5:
                break
        frames = decode_all(archery)[:6]
        for pair in range(5):
            first, second = (cv2.resize(frames[i], FRAME_SIZE, interpolation=cv2.INTER_LINEAR)
                             for i in (pair, pair + 1))
            np.testing.assert_array_equal(store.flow(pair), quantize_flow(compute_flow(first, second, "dis", "bgr")))
            for channel, axis in ((0, "x"), (1, "y")):
                on_disk = cv2.imread(str(tmp_path / archery.stem / f"flow_{axis}_{pair + 1:05d}.jpg"),
                                     cv2.IMREAD_GRAYSCALE)
                # JPEG (quality 95) is the only difference.
                assert np.abs(on_disk.astype(int) - store.flow(pair)[..., channel]).mean() < 1.5


def test_snippets_follow_the_pipelines_test_sampling():
    plan = plan_snippets(100, 25, stack_length=5)
    starts = sampling.test_starts(99, 25, length=5).numpy()
    # dense_flow numbering (TSN's frames): RGB image s is frame s + 1, where the stack's first pair ends.
    assert plan.rgb == tuple((starts + 1).tolist())
    assert plan.stacks[3] == tuple(range(starts[3], starts[3] + 5))
    assert plan_snippets(100, 25, stack_length=5, rgb_frames="all").rgb == tuple(starts.tolist())
    spatial_only = plan_snippets(100, 25)
    # The spatial dataset spreads its snippets over the 99 RGB images, frames 1 … 99.
    assert spatial_only.stacks == () and spatial_only.rgb == tuple(
        (sampling.test_starts(99, 25).numpy() + 1).tolist())
    assert plan_snippets(100, 25, rgb_frames="all").rgb == tuple(sampling.test_starts(100, 25).numpy().tolist())
    separate = plan_snippets(100, 25, stack_length=5, joint=False)
    assert separate.rgb == spatial_only.rgb and separate.stacks == plan.stacks
    # A stack longer than the video loops back to pair 0, as in training.
    assert plan_snippets(4, 1, stack_length=5).stacks == ((0, 1, 2, 0, 1),)
    assert plan.shifted(40).stacks[0] == tuple(p + 40 for p in plan.stacks[0])


def test_model_inputs_are_centre_crops_normalised_like_the_pipelines():
    frame = np.zeros((72, 96, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 128, 250  # BGR
    frame[4:68, 16:80, 0] = 40  # the centre 64×64 crop has blue 40
    windows = crop_windows((96, 72), 64)
    assert windows == [((4, 16, 64, 64), False)]
    rgb = rgb_inputs([frame], windows, 64, "tf").numpy()
    assert rgb.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(rgb[0, 0, 0], [250 / 127.5 - 1, 128 / 127.5 - 1, 40 / 127.5 - 1], atol=1e-6)
    pairs = [np.dstack([np.full((72, 96), 10 * k + 1, np.uint8), np.full((72, 96), 10 * k + 2, np.uint8)])
             for k in range(3)]
    flow = flow_inputs([pairs], windows, 64).numpy()
    expected = (np.array([1, 2, 11, 12, 21, 22]) - 128) / 128  # zero motion (128) is 0
    np.testing.assert_allclose(flow[0, 30, 30], expected, atol=1e-6)
    # Ten crops: the mirrored five have x negated (255 - q), y unchanged.
    ten = flow_inputs([pairs], crop_windows((96, 72), 64, crops=10), 64).numpy()
    assert ten.shape == (10, 64, 64, 6)
    np.testing.assert_allclose(ten[7, 0, 0], (np.array([254, 2, 244, 12, 234, 22]) - 128) / 128, atol=1e-6)


# --- bad input ---------------------------------------------------------------------------------------------------

def test_unreadable_inputs_raise_user_errors_naming_them(predictor, tmp_path):
    text = tmp_path / "notes.avi"
    text.write_text("not a video\n")
    empty_file = tmp_path / "empty.mp4"
    empty_file.write_bytes(b"")
    no_frames = tmp_path / "no_frames.avi"
    cv2.VideoWriter(str(no_frames), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48)).release()
    one_frame = tmp_path / "one_frame.avi"
    writer = cv2.VideoWriter(str(one_frame), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    cases = [
        (tmp_path / "missing.avi", "missing.avi: video file not found"),
        (text, "notes.avi: not a video"),
        (empty_file, "empty.mp4: empty file"),
        (no_frames, "no_frames.avi: empty video: no frames could be decoded"),
        (one_frame, "one_frame.avi: 1 frame decoded; the temporal stream needs at least 2 (one flow pair; "
                    "a full stack of 2 pairs takes 3 frames)"),
        (tmp_path, "is a folder, not a video file"),
        (63, "camera 63 could not be opened"),
    ]
    for source, message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            predictor.predict_video(source)


def test_sources_are_told_apart(tmp_path):
    assert parse_source(0).kind == "camera" and parse_source("2").target == 2
    assert parse_source("rtsp://camera.local/stream").kind == "stream"
    assert parse_source("clips/v_X.avi").kind == "file"
    assert parse_source("file:///videos/v_X.avi").target == "/videos/v_X.avi"


def test_models_and_class_lists_that_do_not_fit_are_refused(loaded, tmp_path):
    short = tmp_path / "classInd.txt"
    short.write_text("1 Archery\n2 Bowling\n")
    with pytest.raises(UserError, match="2 classes, but the model scores 101"):
        Predictor(loaded["fused"], short)
    with pytest.raises(UserError, match="does not fit the temporal model"):
        Predictor(loaded["fused"], stack_length=10)
    with pytest.raises(UserError, match="second spatial"):
        Predictor([loaded["spatial"], loaded["spatial"]])
    with pytest.raises(UserError, match="model file not found"):
        Predictor(tmp_path / "nothing.keras")
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a model\n")
    with pytest.raises(UserError, match="notes.keras: cannot be loaded as a Keras model"):
        Predictor(not_a_model)
    spatial_only = Predictor(loaded["spatial"])
    with pytest.raises(UserError, match="must end with one of"):
        spatial_only.predict_video("unused.avi", annotate=tmp_path / "out.avi")
    # Without a class list: train_config.json's classes if present, else numbered names.
    assert spatial_only.class_names[:2] == ("class_0", "class_1")


def test_run_folder_config_supplies_class_names_and_normalisation(models, tmp_path, archery):
    import shutil
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(models["spatial"], run / "best.keras")
    names = [f"action_{k}" for k in range(101)]
    (run / "train_config.json").write_text(json.dumps({"classes": names, "rgb_normalization": "torch"}))
    spatial_only = Predictor(run, size=FRAME_SIZE)
    assert spatial_only.class_names[5] == "action_5" and spatial_only.models.rgb_normalization == "torch"
    assert not spatial_only.models.uses_flow
    assert spatial_only.predict_video(archery).top_k[0][0].startswith("action_")


def test_annotated_writer_publishes_only_complete_files(tmp_path):
    frame = np.full((48, 64, 3), 90, np.uint8)
    with pytest.raises(RuntimeError):
        with annotate.AnnotatedVideoWriter(tmp_path / "broken.mp4", fps=10) as writer:
            writer.write(frame)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    drawn = annotate.annotate_frame(frame, ["frame 0", "1. Archery 0.90"])
    assert np.array_equal(frame, np.full_like(frame, 90))  # drawn on a copy
    # The box darkens the picture (a quarter of it shows through), the text on it is bright.
    np.testing.assert_allclose(drawn[7, 7], 0.25 * 90 + 0.75 * np.array(annotate.BOX_COLOR), atol=1)
    assert drawn[6:40, 6:60].max() == 255
    assert (drawn[-5:, -5:] == 90).all()


@pytest.mark.parametrize("extension", [".mp4", ".gif"])
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_annotated_videos_get_the_mode_the_umask_gives(tmp_path, extension, umask, mode):
    # Like every other output (0644 under the usual umask), not the 0600 of a mkstemp temporary.
    previous = os.umask(umask)
    try:
        with annotate.AnnotatedVideoWriter(tmp_path / f"clip{extension}", fps=10) as writer:
            for value in (40, 120, 200):
                writer.write(np.full((48, 64, 3), value, np.uint8))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / f"clip{extension}").stat().st_mode) == mode
    assert [path.name for path in tmp_path.iterdir()] == [f"clip{extension}"]  # the temporary was renamed


def test_benchmark_reports_frames_per_second_and_where_the_time_goes(shared_data, capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "inference.py"
    spec = importlib.util.spec_from_file_location("inference_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert benchmark.main(["--videos", str(shared_data / "videos" / "ucf101"), "--clips", "2", "--image-size", "64",
                           "--stack-length", "2", "--size", "96x72", "--annotate-clips", "1", "--window-clips", "1",
                           "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    clips = ucf101_clips(shared_data)[:2]
    assert result["clips"] == 2 and result["frames"] == sum(len(decode_all(clip)) for clip in clips)
    assert result["fps"] == pytest.approx(result["frames"] / result["seconds"], rel=0.01)
    assert set(result["breakdown"]) == {"decode", "resize", "flow", "preprocess", "spatial", "temporal", "annotate"}
    assert all(ms > 0 for ms in result["breakdown"].values())
    assert result["fps_with_annotation"] > 0 and result["fps_sliding_window"] > 0
