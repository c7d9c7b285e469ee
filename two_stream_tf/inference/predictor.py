"""Action prediction on a video file, a stream or a camera, with optical flow computed on the fly.

    predictor = Predictor(["runs/spatial", "runs/temporal"], "classInd.txt", flow_method="dis")
    prediction = predictor.predict_video("v_Archery_g02_c02.avi", annotate="archery.mp4")
    prediction.top_k            # [("Archery", 0.91), ("Bowling", 0.03), ...]

    for window in predictor.iter_windows(0, window=64, stride=32):    # camera 0, live
        print(window.start_time, window.top_k[0])

Whole-video mode follows the test protocol of training: frames are resized as the training frames were
prepared (340×256 by default), flow is computed between consecutive frames with the chosen method and
quantised with the training bound, and the models score 25 evenly spaced snippets (centre crop; the RGB
frame for the spatial stream, a stack of L flow pairs for the temporal one). Class scores are the softmax
averaged over snippets (and over the two streams, when they are separate models).

Sliding-window mode (`window=N, stride=M`) scores every window of N frames starting at multiples of M on
a few snippets each (by default N // L, so their stacks tile the window) and reports one prediction per
window as soon as its last frame is read: the mode for long videos and for live streams.

Speed. Only the flow pairs some snippet reads are computed, in a thread pool (one OpenCV flow object per
thread) while decoding goes on in a background thread; for clips of up to 25·L frames every pair is
needed anyway, so flow starts with the first frames instead of after the last. The models run once per
video or window, on batches of all its snippets.
"""
import dataclasses
import math
import time

import numpy as np
from tqdm import tqdm

from two_stream_tf.data.augment import TEST_CROPS
from two_stream_tf.errors import UserError
from two_stream_tf.flow.quantize import DEFAULT_BOUND, dequantize_flow
from two_stream_tf.inference import annotate as annotate_lib
from two_stream_tf.inference.frames import FlowWorkers, FrameStore, Timings
from two_stream_tf.inference.loading import load_prediction_models
from two_stream_tf.inference.snippets import crop_windows, flow_inputs, plan_snippets, rgb_inputs
from two_stream_tf.inference.video_source import FrameArraySource, open_source, parse_source
from two_stream_tf.preparation.settings import DEFAULT_SIZE, ExtractionSettings

DEFAULT_SNIPPETS = 25
# Frames of a whole video kept in memory (≈ 350 KB each at 340×256); a longer file is read twice: once to
# count its frames, once to keep only those the snippets need.
MAX_BUFFERED_FRAMES = 2000
PREFETCH_FRAMES = 32


@dataclasses.dataclass
class WindowPrediction:
    """The prediction for one window of a video or stream.

    Attributes:
      index: window number, from 0.
      start, end: its frames, `[start, end)` (source frame indices).
      start_time, end_time: the same in seconds, or None when the source has no frame rate.
      top_k: `[(class name, score), …]`, best first.
      scores: float `(K,)` class scores (averaged softmax).
    """

    index: int
    start: int
    end: int
    start_time: float | None
    end_time: float | None
    top_k: list
    scores: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self):
        return {"index": self.index, "start_frame": self.start, "end_frame": self.end,
                "start_time": self.start_time, "end_time": self.end_time, "top_k": _top_k_dicts(self.top_k)}


@dataclasses.dataclass
class Prediction:
    """What `Predictor.predict_video` found.

    Attributes:
      source: the input as named in messages (path, URL, "camera N").
      top_k: `[(class name, score), …]`, best first: for the whole video, or averaged over windows.
      scores: float `(K,)` class scores.
      per_window: `WindowPrediction`s in sliding-window mode, else [].
      num_frames: frames decoded.
      fps: the source's frame rate, or None.
      snippet_frames: whole-video mode: source frame index of each snippet.
      snippet_scores: whole-video mode: float `(S, K)` scores per snippet.
      seconds: wall-clock time of the whole call.
      timings: seconds of work per stage ("decode", "resize", "flow", "preprocess", "spatial",
        "temporal" or "models", "annotate"), summed over threads, so they may add up to more than
        `seconds`.
      annotated: path of the annotated video, or None.
      notes: sentences about how the input was scored that a user should know, e.g. that a video shorter
        than one flow stack was scored with looping stacks (`Predictor.looping_note`).
    """

    source: str
    top_k: list
    scores: np.ndarray = dataclasses.field(repr=False)
    per_window: list = dataclasses.field(default_factory=list)
    num_frames: int = 0
    fps: float | None = None
    snippet_frames: list = dataclasses.field(default_factory=list)
    snippet_scores: np.ndarray | None = dataclasses.field(default=None, repr=False)
    seconds: float = 0.0
    timings: dict = dataclasses.field(default_factory=dict)
    annotated: str | None = None
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        """A JSON-ready dict."""
        return {"source": self.source, "num_frames": self.num_frames, "fps": self.fps,
                "top_k": _top_k_dicts(self.top_k), "windows": [w.to_dict() for w in self.per_window],
                "annotated": self.annotated, "notes": list(self.notes), "seconds": round(self.seconds, 4),
                "timings": {k: round(v, 4) for k, v in sorted(self.timings.items())}}


def _present(*notes):
    return [note for note in notes if note]


def _top_k_dicts(top_k):
    return [{"class": name, "score": round(float(score), 6)} for name, score in top_k]


class Predictor:
    """Predicts actions in videos with a two-stream model (or one stream), computing flow on the fly.

    Args:
      model_or_paths: a two-stream model, or a spatial and a temporal stream model (a pair, any order), or
        one stream model; each a Keras model, a `.keras` file or a training run folder
        (see `two_stream_tf.inference.loading`).
      class_names: K names, a classInd-style file, or None (the run's `train_config.json`, else "class_k").
      flow_method: "dis", "tvl1" or "farneback" (use the method the training flow was made with; DIS is
        ~50× faster than TV-L1 on a CPU).
      stack_length: L, or None to take it from the temporal model.
      size: `(width, height)` frames are resized to before cropping, as the training frames were prepared
        (default 340×256); None keeps the decoded size.
      short_side: instead of `size`, resize so the short side has this many pixels.
      num_snippets: snippets per whole video (25, the test protocol).
      top_k: classes reported.
      crops: views per snippet, as in testing: 1 (centre), 3 (TSN's 3-crop) or 10 (corners, centre and
        their mirrors) — each multiplies the model work.
      rgb_normalization: the spatial stream's RGB normalisation, or None to find it.
      stream_weights: `(w_rgb, w_flow)` for averaging separate streams (default equal).
      bound: flow quantisation bound in pixels (as in training: 20).
      flow_workers: threads computing flow (None: one per CPU).
      max_buffered_frames: frames of a whole video kept in memory before a second pass is used.
    """

    def __init__(self, model_or_paths, class_names=None, *, flow_method="dis", stack_length=None,
                 size=DEFAULT_SIZE, short_side=None, num_snippets=DEFAULT_SNIPPETS, top_k=5,
                 crops=1, rgb_normalization=None, stream_weights=None, bound=DEFAULT_BOUND, flow_workers=None,
                 max_buffered_frames=MAX_BUFFERED_FRAMES):
        self.models = load_prediction_models(model_or_paths, class_names, rgb_normalization=rgb_normalization,
                                             stack_length=stack_length, stream_weights=stream_weights)
        self.class_names = self.models.class_names
        self.stack_length = self.models.stack_length
        self.flow_method = flow_method
        # The extraction settings check size, method and bound exactly as data preparation does, and say
        # how a frame is resized.
        self.settings = ExtractionSettings(size=None if short_side else size, short_side=short_side,
                                           flow_method=flow_method, bound=bound)
        self.num_snippets = _positive_int(num_snippets, "number of snippets")
        self.top_k = _positive_int(top_k, "top-k")
        if crops not in TEST_CROPS:
            raise UserError(f"crops {crops!r}: expected one of {', '.join(map(str, TEST_CROPS))}")
        self.crops = crops
        self._windows_cache = {}
        self.flow_workers = flow_workers
        self.max_buffered_frames = _positive_int(max_buffered_frames, "max_buffered_frames")
        self._runners = _ModelRunners(self.models)
        self._pool = None  # the flow threads, started on first use

    # --- public API ------------------------------------------------------------------------------------

    def predict_video(self, source, *, window=None, stride=None, window_snippets=None, annotate=None,
                      flow_inset=False, progress=False, on_window=None, fps=None):
        """Predicts the actions of a video file, a stream or a camera.

        Args:
          source: a path, a URL, a camera index, or frames in memory (uint8 BGR `(T, H, W, 3)` array or list).
          window: frames per window for sliding-window mode; None scores the whole video (live sources,
            which never end, default to a window of 64 frames).
          stride: frames between window starts (default: window // 2).
          window_snippets: snippets per window (default: window // L, at least 1, at most num_snippets).
          annotate: path of an annotated video to write (`.mp4` or `.gif`), or None.
          flow_inset: draw the flow in colour into a corner of the annotated video.
          progress: show a progress bar (frames read).
          on_window: called with each `WindowPrediction` as soon as it is known (sliding-window mode).
          fps: frame rate of in-memory frames (for times); files and streams report their own.

        Returns:
          A `Prediction`.

        Raises:
          UserError: the input cannot be read (the message names it), or bad arguments.
        """
        started = time.perf_counter()
        source_spec = _source_spec(source, fps)
        if window is None and source_spec.is_live:
            window = 64
        if window is not None:
            windows = self._windows(source_spec, window, stride, window_snippets, annotate, flow_inset, progress)
            try:
                while True:
                    try:
                        prediction = next(windows)
                    except StopIteration as finished:
                        result = finished.value
                        break
                    if on_window is not None:
                        on_window(prediction)
            finally:
                windows.close()  # after an interruption: closes the source, keeps the annotated frames
        else:
            result = self._run_whole(source_spec, annotate, flow_inset, progress)
        result.seconds = time.perf_counter() - started
        return result

    def iter_windows(self, source, window=64, stride=None, window_snippets=None, *, annotate=None,
                     flow_inset=False, progress=False, fps=None):
        """Yields a `WindowPrediction` per window as soon as its last frame has been read.

        Suits live streams: stop whenever you like (the source is closed; the annotated video keeps the
        frames written so far). Args are as in `predict_video`; the generator returns the `Prediction`.
        """
        return (yield from self._windows(_source_spec(source, fps), window, stride, window_snippets, annotate,
                                         flow_inset, progress))

    def predict_frames(self, frames, fps=None, **kwargs):
        """`predict_video` on frames in memory: uint8 BGR `(T, H, W, 3)` or a list of `(H, W, 3)`."""
        return self.predict_video(FrameArraySource(frames, fps=fps), **kwargs)

    def rank(self, scores):
        """`[(class name, score), …]` of the `top_k` highest `scores`, best first (ties: lower class id)."""
        scores = np.asarray(scores, dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[: min(self.top_k, len(scores))]
        return [(self.class_names[k], float(scores[k])) for k in order]

    # --- whole video ---------------------------------------------------------------------------------

    def _new_store(self, workers, timings, flow_inset=False):
        with_flow = self.models.uses_flow or flow_inset
        return FrameStore(self.settings.output_size, workers if with_flow else None, timings,
                          keep_color=self.models.uses_rgb)

    def _workers(self):
        if self._pool is None:
            self._pool = FlowWorkers(self.flow_method, self.settings.bound, self.flow_workers)
        return self._pool

    def close(self):
        """Ends the flow threads (also done when leaving a `with` block); the predictor can still be used."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run_whole(self, spec, annotate, flow_inset, progress):
        if annotate is not None:
            annotate = annotate_lib.check_output_path(annotate)
        return self._whole(spec, annotate, flow_inset and annotate is not None, progress, self._workers(),
                           Timings())

    def _whole(self, spec, annotate, flow_inset, progress, workers, timings):
        with _open(spec) as source:
            store = self._new_store(workers, timings, flow_inset)
            # Pairs 0 .. S·L - 1 are all read by the snippets of any video of up to S·L + 1 frames, so they
            # are started as soon as their frames arrive; later ones only once the plan is known.
            eager = self.num_snippets * (self.stack_length or 0) if self.models.uses_flow else 0
            buffered = True
            bar = tqdm(desc=source.name, unit="frame", disable=not progress, leave=False)
            for frame in source.frames(prefetch=PREFETCH_FRAMES, timings=timings):
                if buffered and store.count >= self.max_buffered_frames and not source.is_live:
                    buffered = False
                    store.forget_frames()
                index = store.add(frame, store=buffered)
                if buffered and 1 <= index <= eager:
                    store.request(index - 1)
                bar.update()
            bar.close()
            num_frames, fps = store.count, source.fps
        self._check_length(spec, num_frames)
        plan = self._plan(num_frames, self.num_snippets)
        if not buffered:
            store = self._second_pass(spec, plan, workers, timings)
        probabilities = self._score(store, plan, timings)
        scores = probabilities.mean(axis=0)
        result = Prediction(source=spec.name, top_k=self.rank(scores), scores=scores, num_frames=num_frames,
                            fps=fps, snippet_frames=list(plan.rgb), snippet_scores=probabilities,
                            notes=_present(self.looping_note(num_frames, spec.name)))
        if annotate is not None:
            result.annotated = self._annotate_whole(spec, annotate, flow_inset, store if buffered else None,
                                                    result, workers, timings)
        result.timings = timings.as_dict()
        return result

    def _plan(self, num_frames, num_snippets):
        return plan_snippets(num_frames, num_snippets, self.stack_length, with_rgb=self.models.uses_rgb,
                             joint=self.models.fused is not None)

    def _check_length(self, spec, num_frames):
        if self.models.uses_flow and num_frames < 2:
            raise UserError(f"{spec.name}: {num_frames} frame{'' if num_frames == 1 else 's'} decoded; the temporal "
                            f"stream needs at least 2 (one flow pair; a full stack of {self.stack_length} pairs "
                            f"takes {self.stack_length + 1} frames)")

    def looping_note(self, num_frames, what):
        """A note when `num_frames` frames hold fewer flow pairs than one stack, else None.

        Such a video (or window) is scored as the test protocol scores a short test video: each stack
        loops back to the first pair (`two_stream_tf.data.sampling.stack_indices`), so `predict` and
        `evaluate` give it the same scores. The temporal stream then sees the same motion repeated,
        which it rarely saw in training, so the note says so.

        Args:
          num_frames: frames of the video or window (at least 2 when flow is used).
          what: how to name it, e.g. the video's path or "windows of 8 frames".
        """
        if not self.models.uses_flow or num_frames - 1 >= self.stack_length:
            return None
        pairs = num_frames - 1
        return (f"{what}: {num_frames} frames give {pairs} flow pair{'' if pairs == 1 else 's'}, fewer than one stack "
                f"of {self.stack_length} ({self.stack_length + 1} frames); scored with each stack looping back to "
                "the first pair, as the test protocol scores short videos")

    def _second_pass(self, spec, plan, workers, timings):
        """Reads a long file again, keeping only the frames the snippets read."""
        wanted = set(plan.rgb) if self.models.uses_rgb else set()
        for pair in plan.pairs:
            wanted.update((pair, pair + 1))
        store = self._new_store(workers, timings)
        with _open(spec) as source:
            for frame in source.frames(prefetch=PREFETCH_FRAMES, timings=timings):
                store.add(frame, store=store.count in wanted)
        for pair in plan.pairs:
            store.request(pair)
        return store

    def _score(self, store, plan, timings):
        """Softmax scores `(S, K)` of the snippets of `plan`."""
        models = self.models
        rgb = flow = None
        if models.uses_flow:
            for pair in plan.pairs:
                store.request(pair)
        with timings.measure("preprocess"):
            if models.uses_rgb:
                windows = self._crop_windows(store.frame_size, models.rgb_size[0])
                rgb = rgb_inputs([store.color(i) for i in plan.rgb], windows, models.rgb_size[0],
                                 models.rgb_normalization)
        if models.uses_flow:
            stacks = [[store.flow(pair) for pair in stack] for stack in plan.stacks]  # waits for the workers
            with timings.measure("preprocess"):
                windows = self._crop_windows(store.frame_size, models.flow_size[0])
                flow = flow_inputs(stacks, windows, models.flow_size[0])
        return self._runners(rgb, flow, self.crops, timings)

    def _crop_windows(self, frame_size, image_size):
        key = (frame_size, image_size)
        if key not in self._windows_cache:
            self._windows_cache[key] = crop_windows(frame_size, image_size, self.crops)
        return self._windows_cache[key]

    # --- sliding windows -------------------------------------------------------------------------------

    def _window_settings(self, window, stride, window_snippets):
        window = _positive_int(window, "window")
        minimum = 2 if self.models.uses_flow else 1
        if window < minimum:
            raise UserError(f"window {window}: a window needs at least {minimum} frames")
        stride = _positive_int(stride if stride is not None else max(1, window // 2), "stride")
        if window_snippets is None:
            window_snippets = min(self.num_snippets, max(1, window // (self.stack_length or 1)))
        window_snippets = _positive_int(window_snippets, "snippets per window")
        if self.models.fused_sequence:
            window_snippets = max(window_snippets, self.models.fused_sequence)
        return window, stride, window_snippets

    def _windows(self, spec, window, stride, window_snippets, annotate, flow_inset, progress):
        """Generator: yields each `WindowPrediction`, returns the `Prediction`."""
        window, stride, window_snippets = self._window_settings(window, stride, window_snippets)
        if annotate is not None:
            annotate = annotate_lib.check_output_path(annotate)
        flow_inset = flow_inset and annotate is not None
        timings = Timings()
        relative = self._plan(window, window_snippets)
        relative_pairs = set(relative.pairs)
        wanted = set()  # flow pairs some open window reads
        windows = []
        writer = None
        workers = self._workers()
        with _open(spec) as source:
            fps = source.fps
            store = self._new_store(workers, timings, flow_inset)
            labeller = _WindowLabeller(window, stride)
            if annotate is not None:
                writer = annotate_lib.AnnotatedVideoWriter(annotate, fps)
            pending = []  # (index, original frame) waiting for their window, for the annotated video
            bar = tqdm(desc=source.name, unit="frame", disable=not progress, leave=False)
            try:
                for frame in source.frames(prefetch=PREFETCH_FRAMES, timings=timings):
                    index = store.add(frame)
                    if index % stride == 0:
                        wanted.update(index + pair for pair in relative_pairs)
                    if index >= 1 and (index - 1 in wanted or flow_inset):
                        store.request(index - 1)
                    if writer is not None:
                        pending.append((index, frame))
                    start = index - window + 1
                    if start >= 0 and start % stride == 0:
                        plan = relative.shifted(start)
                        scores = self._score(store, plan, timings).mean(axis=0)
                        prediction = self._window_prediction(len(windows), start, index + 1, fps, scores)
                        windows.append(prediction)
                        yield prediction
                        wanted.difference_update(range(start, start + stride))
                        keep_from = start + stride
                        if writer is not None:
                            pending = self._write_pending(writer, pending, windows, labeller, store, flow_inset,
                                                          fps, timings, final=False)
                            keep_from = min([keep_from] + [i for i, _ in pending])
                        store.evict_before(keep_from)
                    bar.update()
                bar.close()
                num_frames = store.count
                if not windows:
                    # Shorter than one window: score what there is as one window.
                    self._check_length(spec, num_frames)
                    plan = self._plan(num_frames, window_snippets)
                    scores = self._score(store, plan, timings).mean(axis=0)
                    prediction = self._window_prediction(0, 0, num_frames, fps, scores)
                    windows.append(prediction)
                    yield prediction
                if writer is not None:
                    self._write_pending(writer, pending, windows, labeller, store, flow_inset, fps, timings,
                                        final=True)
                    with timings.measure("annotate"):
                        annotated = writer.close()
                else:
                    annotated = None
            except (KeyboardInterrupt, GeneratorExit):
                # Stopped from outside (Ctrl-C, or the caller left `iter_windows`): keep what was annotated.
                if writer is not None:
                    writer.close()
                raise
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
        scores = np.mean([w.scores for w in windows], axis=0)
        if num_frames < window:  # the whole input was one short window
            note = self.looping_note(num_frames, spec.name)
        else:
            note = self.looping_note(window, f"{spec.name}: windows of {window} frames")
        return Prediction(source=spec.name, top_k=self.rank(scores), scores=scores, per_window=windows,
                          num_frames=num_frames, fps=fps, timings=timings.as_dict(), annotated=annotated,
                          notes=_present(note))

    def _window_prediction(self, number, start, end, fps, scores):
        times = (start / fps, end / fps) if fps else (None, None)
        return WindowPrediction(number, start, end, *times, top_k=self.rank(scores), scores=scores)

    def _write_pending(self, writer, pending, windows, labeller, store, flow_inset, fps, timings, final):
        """Writes the pending frames whose window is known; returns those still waiting."""
        last = len(windows) - 1
        waiting = []
        for index, frame in pending:
            number = labeller.window_of(index)
            if number > last and not final:
                waiting.append((index, frame))
                continue
            window = windows[min(number, last)]
            header = f"frame {index}"
            if fps:
                header += f"  {index / fps:.2f} s"
            if window.end_time is not None:
                header += f"  window {window.start_time:.1f}-{window.end_time:.1f} s"
            else:
                header += f"  window {window.start}-{window.end - 1}"
            self._write_frame(writer, frame, header, window.top_k, index, store, flow_inset, timings)
        return waiting

    # --- annotation --------------------------------------------------------------------------------------

    def _write_frame(self, writer, frame, header, top_k, index, store, flow_inset, timings):
        flow = None
        pair = max(index - 1, 0)  # the motion that led into this frame (frame 0: the motion out of it)
        if flow_inset and (store.has_flow(pair) or store.has_frame(pair + 1)):
            flow = dequantize_flow(store.flow(pair), self.settings.bound)
        with timings.measure("annotate"):
            writer.write(annotate_lib.annotate_frame(frame, [header] + annotate_lib.format_top_k(top_k), flow))

    def _annotate_whole(self, spec, path, flow_inset, store, prediction, workers, timings):
        """Writes the annotated video of a whole-video prediction, reading the input again.

        A frame is written once the next one is read, so its flow inset can be computed when the frames
        were not kept (a long video). Kept frames have their flow started a few pairs ahead, so the
        flow threads work while frames are drawn and encoded.
        """
        if flow_inset and store is None:
            store = self._new_store(workers, timings, flow_inset=True)
            store.keep_color = False
        reuse = store is not None and store.count > 0
        num_frames = prediction.num_frames
        lookahead = 2 * workers.workers
        if flow_inset and reuse:
            for pair in range(min(lookahead, num_frames - 1)):
                store.request(pair)
        with annotate_lib.AnnotatedVideoWriter(path, prediction.fps) as writer, _open(spec) as source:
            previous = None
            for index, frame in enumerate(source.frames(prefetch=PREFETCH_FRAMES, timings=timings)):
                if flow_inset and not reuse:
                    store.add(frame)
                elif flow_inset and index + lookahead < num_frames - 1:
                    store.request(index + lookahead)
                if previous is not None:
                    self._write_whole_frame(writer, previous, index - 1, prediction, store, flow_inset, timings)
                    if flow_inset:
                        store.evict_before(index - 1)  # later frames show pairs index - 1 and after
                previous = frame
            self._write_whole_frame(writer, previous, num_frames - 1, prediction, store, flow_inset, timings)
        return path

    def _write_whole_frame(self, writer, frame, index, prediction, store, flow_inset, timings):
        header = f"frame {index}"
        if prediction.fps:
            header += f"  {index / prediction.fps:.2f} s"
        header += "  whole video"
        self._write_frame(writer, frame, header, prediction.top_k, index, store, flow_inset, timings)


class _WindowLabeller:
    """Which window an annotated frame shows: the one whose centre is nearest (the earlier on a tie)."""

    def __init__(self, window, stride):
        self.window, self.stride = window, stride

    def window_of(self, index):
        return max(0, math.ceil((index - (self.window - 1) / 2.0) / self.stride - 0.5))


class _ModelRunners:
    """The models as traced TensorFlow functions over batches of snippets, timed per stream."""

    def __init__(self, models):
        import tensorflow as tf

        self.models = models

        def traced(model, signature):
            return tf.function(lambda x: model(x, training=False), input_signature=[signature])

        def spec(size, channels, sequence=None):
            shape = (None, *size, channels) if sequence is None else (None, sequence, *size, channels)
            return tf.TensorSpec(shape, tf.float32)

        self.spatial = self.temporal = self.fused = None
        if models.fused is not None:
            sequence = models.fused_sequence
            self.fused = traced(models.fused, {"rgb": spec(models.rgb_size, 3, sequence),
                                               "flow": spec(models.flow_size, 2 * models.stack_length, sequence)})
        if models.spatial is not None:
            self.spatial = traced(models.spatial, spec(models.rgb_size, 3))
        if models.temporal is not None:
            self.temporal = traced(models.temporal, spec(models.flow_size, 2 * models.stack_length))

    def __call__(self, rgb, flow, crops, timings):
        """Class scores of the views `(S · crops, …)`: per snippet `(S, K)`, averaged over its crops (a
        sequence model gives one row per sequence of snippets instead)."""
        models = self.models
        if self.fused is not None:
            with timings.measure("models"):
                inputs = {"rgb": rgb, "flow": flow}
                if models.fused_sequence:
                    from two_stream_tf.evaluation.protocol import to_units
                    inputs = {k: to_units(v[None], crops, models.fused_sequence) for k, v in inputs.items()}
                    return np.asarray(self.fused(inputs), dtype=np.float64)
                return _crop_mean(np.asarray(self.fused(inputs), dtype=np.float64), crops)
        scores = []
        if self.spatial is not None:
            with timings.measure("spatial"):
                scores.append(_crop_mean(np.asarray(self.spatial(rgb), dtype=np.float64), crops))
        if self.temporal is not None:
            with timings.measure("temporal"):
                scores.append(_crop_mean(np.asarray(self.temporal(flow), dtype=np.float64), crops))
        if len(scores) == 2:
            scores = [models.stream_weights[0] * scores[0], models.stream_weights[1] * scores[1]]
        return scores[0] + scores[1] if len(scores) == 2 else scores[0]


def _crop_mean(scores, crops):
    return scores.reshape(-1, crops, scores.shape[-1]).mean(axis=1)


def _source_spec(source, fps):
    if isinstance(source, FrameArraySource):
        return source
    if isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and source
                                          and isinstance(source[0], np.ndarray)):
        return FrameArraySource(source, fps=fps)
    return parse_source(source)


def _open(spec):
    if isinstance(spec, FrameArraySource):
        return spec
    return open_source(spec)


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{what} must be a positive whole number, got {value!r}")
    return int(value)
