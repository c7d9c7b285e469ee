"""tf.data input pipelines: the spatial, temporal and two-stream datasets, for training and for testing.

    index ─► epoch of videos (shuffled, sharded) ─► snippet starts ─► locate the sampled files ─► read
          ─► check ─► decode (training: only the crop window) ─► mirror / normalise / resize ─► batch

Training views (flow stacks, and RGB frames with a named normalisation) are made per batch by compiled
kernels when they build here (`two_stream_tf.data.native`: crop-window decode, mirror, interleave,
resize and normalise in one pass, straight into the batch) and by TensorFlow ops otherwise; both give
the same tensors (within ~1e-6 relative).

The three public functions take a frame-folder `DatasetIndex` (`two_stream_tf.data.index`) or a packed
`PackedIndex` (`two_stream_tf.data.tfrecord`); both give the same tensors for the same seed.

Training elements are `(x, label)`: x float32 `(B, H, W, C)`, or `(B, S, H, W, C)` with `num_segments=S`;
C = 3 (RGB) or 2L (flow, `[x1, y1, x2, y2, …]`); label int32 `(B,)`. For the two-stream dataset x is
`{"rgb": …, "flow": …}`; both come from the same snippet of the same video, cropped and flipped alike.
Test elements (training=False) are one per video, in index order: `(views, label)`, views
`(B, V, H, W, C)` with `V = num_snippets × crops`, snippet-major (view `j * crops + c` is crop c of
snippet j); average the softmax (or, as TSN, the logits) over axis 1. Sampling and crops follow `sampling`
and `augment`; `test_sampling` picks the rule of the test snippets ("centered" or TSN's "tsn").

The TSN protocol, value for value (docs/conventions.md): JPEGs are decoded with libjpeg's accurate
IDCT (`dct_method="INTEGER_ACCURATE"`, as OpenCV), frames stored at another size than `frame_size`
(TSN: `(256, 340)`) are resized to it exactly as `cv2.resize` does before any crop (training and
test), and `test_sampling="tsn"` takes eval_net's snippets.

Randomness is stateless, keyed by (seed, epoch, video): each pass over a single-pass dataset (an epoch of
`model.fit`) draws a new epoch key from `tf.data.Dataset.random(seed)`, and a repeated dataset derives
epoch e's key from (seed, e), so the same seed gives the same tensors run after run, whatever the thread
timing (`Dataset.random` also mixes in TensorFlow's global seed, if one is set: keep that the same too).
Repeated training datasets start from `Dataset.range` (epochs) and test datasets from the videos, sources
tf.data service can split between workers. `deterministic=True` also fixes the order of elements (and so
the batches); without it, parallel decoding may reorder them.

Unreadable files (`decode`: empty, truncated, a damaged header, a frame of another size than the others
read with it): by default a training sample with one is dropped from its batch (which is then one
smaller), counted in the dataset's `decode_stats` (`DecodeStats`) and its file named in a logging
warning; so is a test video, unless the test dataset is built with `readable_mask=True`: then every
video is kept, a view whose files cannot be decoded is zeros, and elements are `(views, label,
readable)` with `readable` bool `(B, V)` saying which views to average (what `evaluation.protocol`
does). `strict=True` raises an error naming the file instead.

Distribution: pass `input_context` (from `strategy.distribute_datasets_from_function`): each input pipeline
reads the videos `input_pipeline_id::num_input_pipelines` (shard files for packed data when there are
enough) and batches `input_context.get_per_replica_batch_size(batch_size)`.
"""
import dataclasses
import random

import tensorflow as tf

from two_stream_tf.data import augment, frame_resize, native, sampling, sources
from two_stream_tf.data.decode import (DEFAULT_DCT_METHOD, DecodeStats, assert_readable, check_dct_method, check_frames,
                                       common_size, decode_frames, frame_shape, guarded, jpeg_looks_complete,
                                       keep_or_report)

_CHANNELS = {"rgb": 3}


@dataclasses.dataclass(frozen=True)
class _Spec:
    streams: tuple
    training: bool
    image_size: int
    num_segments: object
    crops: int
    num_snippets: int
    stack_length: int
    rgb_normalization: object
    flow_normalization: str
    seed: int
    strict: bool
    scales: tuple
    max_distort: int
    more_fixed_crops: bool
    native_flow: object  # the compiled flow-stack op when training flow stacks are made by it, else None
    native_rgb: object  # the compiled RGB-view op when training RGB views are made by it, else None
    native_sizes: object  # the compiled JPEG-size op when a kernel makes training views, else None
    readable_mask: bool  # test mode: keep videos with unreadable views, yield (views, label, readable)
    test_sampling: str = "centered"
    frame_size: tuple = None  # (height, width) frames are resized to before cropping, or None
    dct_method: str = DEFAULT_DCT_METHOD


    def native_decode_attrs(self):
        """The compiled kernels' decode attributes for this spec."""
        height, width = self.frame_size or (0, 0)
        return dict(frame_height=height, frame_width=width, accurate_dct=self.dct_method == "INTEGER_ACCURATE")

    def channels(self, stream):
        return 3 if stream == "rgb" else 2 * self.stack_length

    def items(self, video):
        """The number of items snippets are drawn from: flow pairs when flow is read, else RGB frames."""
        return video["num_flow"] if "flow" in self.streams else video["num_frames"]

    @property
    def length(self):
        return self.stack_length if "flow" in self.streams else 1


def spatial_dataset(index, *, training, batch_size, image_size=224, num_segments=None, crops=1, num_snippets=25,
                    rgb_normalization="tf", seed=None, deterministic=False, strict=False, input_context=None,
                    repeat=None, shuffle_buffer=None, scales=augment.SCALES, max_distort=1, more_fixed_crops=False,
                    stats=None, start_batch=0, test_sampling="centered", frame_size=None,
                    dct_method=DEFAULT_DCT_METHOD, readable_mask=False):
    """The RGB (spatial stream) dataset of an index.

    Args:
      index: a `DatasetIndex` (frame folders) or a `PackedIndex` (packed TFRecords).
      training: True: random snippets, multi-scale corner crops and flips, shuffled; False: the test
        protocol, one element per video in index order.
      batch_size: global batch size (videos per batch at test time).
      image_size: side of the square output.
      num_segments: None (one frame per sample, `(B, H, W, 3)`) or S TSN segments (`(B, S, H, W, 3)`).
      crops: test crops per snippet, 1, 3 or 10 (see `augment.test_crop_windows`).
      num_snippets: test snippets per video (25 in the published protocol).
      rgb_normalization: "tf", "torch", "caffe", "none" or a callable on float RGB 0..255: use the
        backbone's (`two_stream_tf.models.get_backbone(name).rgb_normalization`).
      seed: int seed of all randomness; None draws one (then runs differ).
      deterministic: fix the element order too (slightly slower); with seed None, seed 0 is used.
      strict: raise on an unreadable JPEG (naming it) instead of dropping the sample from its batch.
      input_context: a `tf.distribute.InputContext`: shard and use the per-replica batch size.
      repeat: None/False: one pass per iteration (each `model.fit` epoch draws new samples); True: endless;
        an int: that many epochs.
      shuffle_buffer: 0 turns shuffling off; otherwise frame folders are permuted whole every epoch and
        packed records are shuffled in a buffer of this many videos (default 16).
      scales, max_distort, more_fixed_crops: TSN multi-scale crop parameters (`augment`).
      stats: a `DecodeStats` to count skipped samples in (one is made if None); also `dataset.decode_stats`.
      start_batch: training: begin this many batches into the sample sequence (a resumed run continues the
        sequence of an uninterrupted one; the skipped samples are not decoded).
      test_sampling: the test snippets' rule, "centered" (tsn-pytorch, mmaction2) or "tsn" (TSN's Caffe
        eval_net: its starts, stacks clamped at the last pair); see `sampling.test_starts`.
      frame_size: None (crop frames as stored) or `(height, width)`: frames stored at another size are
        first resized to it as `cv2.resize` does (TSN: `frame_resize.PROTOCOL_FRAME_SIZE`, 256×340); crop
        windows are then taken on the resized frame, in training and testing.
      dct_method: JPEG inverse DCT, "INTEGER_ACCURATE" (OpenCV's, and so TSN's pixels) or "INTEGER_FAST".
      readable_mask: test mode: keep videos with unreadable views and yield `(views, label, readable)`,
        readable bool `(B, V)` (see the module docstring).

    Returns:
      A `tf.data.Dataset` of `(x, label)`; see the module docstring for shapes.
    """
    augment.check_rgb_normalization(rgb_normalization)
    spec = _spec(("rgb",), training, image_size, num_segments, crops, num_snippets, 1, rgb_normalization,
                 "symmetric", seed, deterministic, strict, scales, max_distort, more_fixed_crops, test_sampling,
                 frame_size, dct_method, readable_mask)
    return _dataset(index, spec, batch_size, deterministic, input_context, repeat, shuffle_buffer, stats, start_batch)


def temporal_dataset(index, *, training, batch_size, stack_length=10, flow_normalization="symmetric", image_size=224,
                     num_segments=None, crops=1, num_snippets=25, seed=None, deterministic=False, strict=False,
                     input_context=None, repeat=None, shuffle_buffer=None, scales=augment.SCALES, max_distort=1,
                     more_fixed_crops=False, stats=None, start_batch=0, test_sampling="centered", frame_size=None,
                     dct_method=DEFAULT_DCT_METHOD, readable_mask=False):
    """The optical-flow (temporal stream) dataset of an index: stacks of `stack_length` x/y pairs.

    Args:
      stack_length: L, flow pairs per stack; x has 2L channels `[x1, y1, x2, y2, …]`.
      flow_normalization: "symmetric" (`(q - 128) / 128`, in [-1, 127/128], zero motion at 0), "caffe"
        (`q - 128`, TSN's Caffe input) or "none" (float 0..255).
      Others: as in `spatial_dataset`. Mirrored samples and mirrored test crops have x negated
      (`255 - q` before normalisation).

    Returns:
      A `tf.data.Dataset` of `(x, label)`, x `(B, [S,] H, W, 2L)` (test: `(B, V, H, W, 2L)`).
    """
    augment.check_flow_normalization(flow_normalization)
    spec = _spec(("flow",), training, image_size, num_segments, crops, num_snippets, stack_length, "tf",
                 flow_normalization, seed, deterministic, strict, scales, max_distort, more_fixed_crops,
                 test_sampling, frame_size, dct_method, readable_mask)
    return _dataset(index, spec, batch_size, deterministic, input_context, repeat, shuffle_buffer, stats, start_batch)


def two_stream_dataset(index, *, training, batch_size, stack_length=10, rgb_normalization="tf",
                       flow_normalization="symmetric", image_size=224, num_segments=None, crops=1, num_snippets=25,
                       seed=None, deterministic=False, strict=False, input_context=None, repeat=None,
                       shuffle_buffer=None, scales=augment.SCALES, max_distort=1, more_fixed_crops=False,
                       stats=None, start_batch=0, test_sampling="centered", frame_size=None,
                       dct_method=DEFAULT_DCT_METHOD, readable_mask=False):
    """RGB and flow of the same snippets: x is `{"rgb": (B, [S,] H, W, 3), "flow": (B, [S,] H, W, 2L)}`.

    A snippet starting at flow pair s pairs RGB frame s with pairs s..s+L-1; both get the same crop window
    (in relative terms when their frame sizes differ) and the same flip. Arguments as in
    `spatial_dataset` and `temporal_dataset`.
    """
    augment.check_rgb_normalization(rgb_normalization)
    augment.check_flow_normalization(flow_normalization)
    spec = _spec(("rgb", "flow"), training, image_size, num_segments, crops, num_snippets, stack_length,
                 rgb_normalization, flow_normalization, seed, deterministic, strict, scales, max_distort,
                 more_fixed_crops, test_sampling, frame_size, dct_method, readable_mask)
    return _dataset(index, spec, batch_size, deterministic, input_context, repeat, shuffle_buffer, stats, start_batch)


def _spec(streams, training, image_size, num_segments, crops, num_snippets, stack_length, rgb_normalization,
          flow_normalization, seed, deterministic, strict, scales, max_distort, more_fixed_crops, test_sampling,
          frame_size, dct_method, readable_mask=False):
    sampling.check_test_sampling(test_sampling)
    check_dct_method(dct_method)
    frame_size = frame_resize.check_frame_size(frame_size)
    if num_segments is not None and int(num_segments) < 1:
        raise ValueError(f"num_segments must be None or at least 1, got {num_segments}")
    if not training and crops not in augment.TEST_CROPS:
        raise ValueError(f"crops must be one of {augment.TEST_CROPS}, got {crops}")
    if int(stack_length) < 1 or int(num_snippets) < 1 or int(image_size) < 1:
        raise ValueError("stack_length, num_snippets and image_size must be positive")
    if seed is None:
        seed = 0 if deterministic else random.SystemRandom().randrange(2 ** 31)
    native_flow = native.flow_stacks_op() if training and "flow" in streams else None
    # The RGB kernel applies the named normalisations; a callable one runs on TensorFlow's views.
    named_rgb = "rgb" in streams and not callable(rgb_normalization)
    native_rgb = native.rgb_views_op() if training and named_rgb else None
    native_sizes = native.jpeg_sizes_op() if native_flow is not None or native_rgb is not None else None
    return _Spec(streams=streams, training=bool(training), image_size=int(image_size),
                 num_segments=None if num_segments is None else int(num_segments), crops=int(crops),
                 num_snippets=int(num_snippets), stack_length=int(stack_length),
                 rgb_normalization=rgb_normalization, flow_normalization=flow_normalization, seed=int(seed),
                 strict=bool(strict), scales=tuple(float(s) for s in scales), max_distort=int(max_distort),
                 more_fixed_crops=bool(more_fixed_crops), native_flow=native_flow,
                 native_rgb=native_rgb, native_sizes=native_sizes, readable_mask=bool(readable_mask) and not training,
                 test_sampling=test_sampling, frame_size=frame_size, dct_method=dct_method)


def _plain(function):
    # The dataset functions branch only on Python values (streams, crops) and use tf.cond for tensors, so
    # AutoGraph has nothing to convert; skipping it makes building a dataset several times faster.
    return tf.autograph.experimental.do_not_convert(function)


def _epoch_keys(seed, repeat):
    """The epoch keys of a training pipeline, each a stateless function of (seed, epoch).

    A repeated pipeline counts its epochs with `Dataset.range`, a source tf.data service can split (each
    epoch goes to one worker). A single-pass pipeline draws its key from `Dataset.random`, which gives a new
    key each time the dataset is iterated (each `model.fit` epoch) and the same sequence for the same seed.
    """
    if repeat is None or repeat is False:
        return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    epochs = tf.data.Dataset.range(2 ** 62 if repeat is True else int(repeat))
    return epochs.map(_plain(lambda epoch: tf.random.stateless_uniform(
        [], tf.stack([tf.cast(seed, tf.int64), epoch]), minval=None, maxval=None, dtype=tf.int64)))


def _dataset(index, spec, batch_size, deterministic, input_context, repeat, shuffle_buffer, stats, start_batch=0):
    source = sources.for_index(index)
    if not source.entries:
        raise ValueError("the index has no videos")
    stats = DecodeStats() if stats is None else stats
    shard_index, num_shards = 0, 1
    if input_context is not None:
        shard_index, num_shards = input_context.input_pipeline_id, input_context.num_input_pipelines
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    shuffle = spec.training and shuffle_buffer != 0

    def epoch(key):
        return source.epoch_videos(key, shard_index=shard_index, num_shards=num_shards, shuffle=shuffle,
                                   seed=spec.seed, shuffle_buffer=shuffle_buffer, streams=spec.streams)

    if spec.training:
        videos = _epoch_keys(spec.seed, repeat).flat_map(_plain(epoch))
        if start_batch:
            # Before the sample map: skipping index entries costs nothing, decoding them would.
            videos = videos.skip(int(start_batch) * batch_size)
    else:
        # Test mode draws nothing at random: the videos themselves are the source (one split per video for
        # tf.data service).
        videos = epoch(tf.constant(0, tf.int64))
        if repeat is True:
            videos = videos.repeat()
        elif repeat not in (None, False):
            videos = videos.repeat(int(repeat))
    if spec.training:
        samples = videos.map(_plain(lambda video: _train_sample(spec, source, video)),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    else:
        snippets = videos.map(_plain(lambda video: _test_snippets(spec, source, video))).unbatch()
        views = snippets.map(_plain(lambda snippet: _test_views(spec, source, snippet)),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        samples = views.batch(spec.num_snippets).map(_plain(lambda *snippets: _regroup_views(spec, *snippets)))
    # Batching right after the parallel map lets tf.data fuse the two and copy each sample into its batch
    # while it is still in cache. Samples with an unreadable file are dropped from their batch afterwards (the
    # batch is one smaller), so the common case pays nothing for the check.
    batches = samples.batch(batch_size)
    if any(_native(spec, stream) for stream in spec.streams):
        # The compiled kernels decode a whole batch of views straight into the batch tensor (one pass over
        # each view instead of four); batches run in parallel, one per core.
        batches = batches.map(_plain(lambda x, label, names, complete: _native_batch(
            spec, x, label, names, complete)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    batches = batches.map(_plain(lambda x, label, names, complete, *readable: _finish_batch(
        spec, x, label, names, complete, *readable)))
    dataset = batches.prefetch(2 if spec.training else 1)
    if not spec.strict:
        # Unreadable files are reported as the consumer takes their batch, after the read-ahead, so that
        # what `model.fit` counts during an epoch is what that epoch trained on.
        dataset = dataset.map(_plain(lambda x, label, names, complete, *readable: _report(
            x, label, names, complete, stats, *readable)))
        if not spec.readable_mask:
            dataset = dataset.filter(_plain(lambda x, label: tf.size(label) > 0))
    options = tf.data.Options()
    options.deterministic = bool(deterministic) or not spec.training
    # Per-element ops are small; running each on one thread avoids intra-op hand-offs between the cores
    # that the parallel map already keeps busy.
    options.threading.max_intra_op_parallelism = 1
    dataset = dataset.with_options(options)
    dataset.decode_stats = stats
    return dataset


def _finish_batch(spec, x, label, names, complete, readable=None):
    """Per batch: x as the dataset yields it (a tensor for one stream, a dict for two), without the samples
    whose files failed the check unless `readable_mask` keeps them; then, unless strict (where an
    unreadable file raises), the batch's names and flags for `_report`."""
    x = x if len(spec.streams) > 1 else x[spec.streams[0]]
    if spec.strict:  # a file that failed the check already raised; one a kernel could not decode raises here
        with tf.control_dependencies([assert_readable(names, complete)]):
            return tf.nest.map_structure(tf.identity, (x, label) if readable is None else (x, label, readable))
    if spec.readable_mask:
        return x, label, names, complete, readable
    keep = tf.reduce_all(complete, axis=1)
    x, label = tf.cond(tf.reduce_all(keep), lambda: (x, label),
                       lambda: tf.nest.map_structure(lambda t: tf.boolean_mask(t, keep), (x, label)))
    return x, label, names, complete


def _report(x, label, names, complete, stats, readable=None):
    """Reports a batch's unreadable files to `stats` and yields `(x, label[, readable])`."""
    with tf.control_dependencies([keep_or_report(names, complete, stats, per_sample=True)]):
        return tf.nest.map_structure(tf.identity, (x, label) if readable is None else (x, label, readable))


def _native_batch(spec, x, label, names, complete):
    """Per batch: each natively made stream's pending entry `{"contents", "window", "flip"}` -> its views;
    the files a kernel could not decode are marked in `complete`."""
    segments = spec.num_segments or 1
    # Samples with a file that failed the check (dropped next) decode nothing: their window is zeros.
    keep = tf.repeat(tf.reduce_all(complete, axis=1), segments)
    views = dict(x)
    flags, offset = [], 0
    for stream in spec.streams:
        files = segments * _files(spec, stream)  # this stream's files per sample, in `complete`'s order
        flags.append(complete[:, offset:offset + files])
        offset += files
        if not _native(spec, stream):
            continue
        pending = x[stream]  # contents (B, [S,] 2L) for flow, (B, [S]) for rgb
        windows = tf.repeat(pending["window"], segments, axis=0)
        flips = tf.repeat(pending["flip"], segments)
        if stream == "flow":
            zero, scale = augment.flow_affine(spec.flow_normalization)
            made, failed = spec.native_flow(tf.reshape(pending["contents"], [-1, spec.channels(stream)]), windows,
                                            flips, keep, image_size=spec.image_size, zero=zero, scale=scale,
                                            **spec.native_decode_attrs())
        else:
            scale, shift, bgr = augment.rgb_affine(spec.rgb_normalization)
            made, failed = spec.native_rgb(tf.reshape(pending["contents"], [-1]), windows, flips, keep,
                                           image_size=spec.image_size, scale=scale, shift=shift, bgr=bgr,
                                           **spec.native_decode_attrs())
        flags[-1] = flags[-1] & tf.logical_not(tf.reshape(failed, [-1, files]))
        view = [spec.image_size, spec.image_size, spec.channels(stream)]
        views[stream] = tf.reshape(made, [-1, *view] if spec.num_segments is None else [-1, segments, *view])
    return views, label, names, tf.concat(flags, 1)


# --- Training samples ---------------------------------------------------------------------------------------

def _train_sample(spec, source, video):
    seed = sampling.sample_seed(spec.seed, video["epoch_key"], video["key"])
    starts = sampling.train_starts(spec.items(video), sampling.sub_seed(seed, sampling.SAMPLING),
                                   num_segments=spec.num_segments or 1, length=spec.length)
    flip = augment.random_flip(sampling.sub_seed(seed, sampling.FLIP))
    crop_seed = sampling.sub_seed(seed, sampling.CROP)
    data, names = _locate_and_load(spec, source, video, starts)
    checks = {stream: _check(spec, stream, tf.reshape(data[stream], [-1])) for stream in spec.streams}

    def window(stream):
        return augment.multiscale_crop_window(_frame_shape(spec, checks[stream][1]), crop_seed, scales=spec.scales,
                                              max_distort=spec.max_distort, more_fixed_crops=spec.more_fixed_crops)

    def build():
        views = {}
        for stream in spec.streams:
            flat = tf.reshape(data[stream], [-1])
            crop = window(stream)
            if _native(spec, stream):  # decoded per batch by `_native_batch`
                views[stream] = crop
            else:
                views[stream] = _stream_views(spec, stream, _decode_window(spec, flat, stream, crop), flip)
        return views

    def placeholder():
        zeros = _zeros(spec)
        return {stream: tf.zeros([4], tf.int32) if _native(spec, stream) else zeros[stream]
                for stream in spec.streams}

    complete = tf.concat([checks[stream][0] for stream in spec.streams], 0)
    sample, complete = guarded(complete, _concat(names, spec), build, placeholder, spec.strict)
    for stream in spec.streams:
        if _native(spec, stream):
            contents = data[stream] if spec.num_segments else data[stream][0]
            sample[stream] = {"contents": contents, "window": sample[stream], "flip": flip}
        elif spec.num_segments is None:
            sample[stream] = sample[stream][0]
    return sample, video["label"], _concat(names, spec), complete


def _frame_shape(spec, stored):
    """Height and width of the frames crop windows are taken on: the protocol size, else `stored` (the
    size the sample's readable frames share)."""
    return tf.constant(spec.frame_size, tf.int32) if spec.frame_size else stored


def _decode_window(spec, data, stream, window):
    """Decodes `window` of each JPEG in `data` (one video's frames of one size), on the frames resized
    to `spec.frame_size` when they are stored at another size."""
    channels = _channels(stream)
    decode = lambda: decode_frames(data, channels, window, spec.dct_method)  # noqa: E731
    if spec.frame_size is None:
        return decode()
    stored = frame_shape(data[0])
    same = tf.reduce_all(tf.equal(stored, tf.constant(spec.frame_size, tf.int32)))

    def resized():
        frames = frame_resize.cv_resize(decode_frames(data, channels, None, spec.dct_method), spec.frame_size,
                                        channels_last=channels == 3)
        return augment.crop_images(frames, window) if channels == 3 else augment.crop_planes(frames, window)

    return tf.cond(same, decode, resized)


def _native(spec, stream):
    return (spec.native_flow if stream == "flow" else spec.native_rgb) is not None


def _check(spec, stream, data):
    """The check before decoding of one stream's files of a sample: (readable bool `(k,)`, size `(2,)`).

    Where a kernel makes the views, libjpeg's header parser gives the sizes (one cheap op for all files)
    in place of the header walk of `check_frames`, and the kernel reports any file it then cannot decode."""
    if not _native(spec, stream):
        return check_frames(data)
    sizes = spec.native_sizes(data)
    readable = jpeg_looks_complete(data) & tf.reduce_all(sizes > 0, 1)
    size = common_size(sizes, readable)
    return readable & tf.reduce_all(tf.equal(sizes, size[None]), 1), size


def _stream_views(spec, stream, frames, flip):
    """Decoded frames of a sample's S snippets -> float views `(S, size, size, C)`."""
    if stream == "rgb":
        return augment.rgb_view(frames, flip, spec.image_size, spec.rgb_normalization)
    planes = tf.reshape(frames, tf.concat([[-1, 2 * spec.stack_length], tf.shape(frames)[1:]], 0))
    planes = tf.ensure_shape(planes, [None, 2 * spec.stack_length, None, None])
    return augment.flow_view(planes, flip, spec.image_size, spec.flow_normalization)


def _zeros(spec):
    segments = spec.num_segments or 1
    return {stream: tf.zeros([segments, spec.image_size, spec.image_size, spec.channels(stream)])
            for stream in spec.streams}


def _channels(stream):
    return _CHANNELS.get(stream, 1)


def _locate_and_load(spec, source, video, starts):
    """Bytes and names of the sampled files per stream: rgb `(S,)`, flow `(S, 2L)`."""
    data, names = {}, {}
    for stream in spec.streams:
        locators, names[stream] = _locate(spec, source, video, stream, starts)
        data[stream] = source.load(locators)
    return data, names


def _locate(spec, source, video, stream, starts, overflow="loop"):
    if stream == "rgb":
        return source.locate(video, "rgb", sampling.rgb_indices(starts, video["num_frames"]))
    return source.locate(video, "flow", sampling.stack_indices(starts, spec.stack_length, video["num_flow"],
                                                               overflow=overflow))


def _concat(per_stream, spec):
    return tf.concat([tf.reshape(per_stream[stream], [-1]) for stream in spec.streams], 0)


# --- Test samples ------------------------------------------------------------------------------------------------

def _test_snippets(spec, source, video):
    """One video -> its `num_snippets` snippets' locators and names (unbatched next)."""
    starts = sampling.test_starts(spec.items(video), spec.num_snippets, length=spec.length, rule=spec.test_sampling)
    snippets = {"label": tf.fill([spec.num_snippets], video["label"])}
    for stream in spec.streams:
        stream_starts = starts[:, None] if stream == "rgb" else starts
        locators, names = _locate(spec, source, video, stream, stream_starts,
                                  overflow=sampling.test_overflow(spec.test_sampling))
        snippets[f"{stream}_locators"] = tf.reshape(locators, [spec.num_snippets, -1])
        snippets[f"{stream}_names"] = tf.reshape(names, [spec.num_snippets, -1])
    return snippets


def _test_views(spec, source, snippet):
    """One snippet -> its `crops` views per stream, `(crops, size, size, C)`."""
    data = {stream: tf.ensure_shape(source.load(snippet[f"{stream}_locators"]), [_files(spec, stream)])
            for stream in spec.streams}
    names = {stream: snippet[f"{stream}_names"] for stream in spec.streams}
    mirrored = augment.test_crop_mirrored(spec.crops)
    checks = {stream: check_frames(data[stream]) for stream in spec.streams}

    def build():
        views = {}
        for stream in spec.streams:
            windows, _ = augment.test_crop_windows(_frame_shape(spec, checks[stream][1]), spec.image_size,
                                                   spec.crops)
            box = augment.bounding_window(windows)
            frames = _decode_window(spec, data[stream], stream, box)
            crops = []
            for c in range(spec.crops):
                if stream == "rgb":
                    crop = augment.crop_images(frames, windows[c], offset=box[:2])
                else:
                    crop = augment.crop_planes(frames, windows[c], offset=box[:2])
                crops.append(_stream_views(spec, stream, crop, mirrored[c])[0])
            views[stream] = tf.stack(crops)
        return views

    def zeros():
        return {stream: tf.zeros([spec.crops, spec.image_size, spec.image_size, spec.channels(stream)])
                for stream in spec.streams}

    complete = tf.concat([checks[stream][0] for stream in spec.streams], 0)
    views, complete = guarded(complete, _concat(names, spec), build, zeros, spec.strict)
    return views, snippet["label"], _concat(names, spec), complete


def _files(spec, stream):
    return 1 if stream == "rgb" else 2 * spec.stack_length


def _regroup_views(spec, views, labels, names, complete):
    """`num_snippets` snippets of one video -> `(V, size, size, C)` views per stream, one label, and with
    `readable_mask` which views were decoded (all crops of a snippet share its files)."""
    merged = {}
    for stream, value in views.items():
        shape = tf.shape(value)
        merged[stream] = tf.reshape(value, tf.concat([[-1], shape[2:]], 0))
    regrouped = (merged, labels[0], tf.reshape(names, [-1]), tf.reshape(complete, [-1]))
    if not spec.readable_mask:
        return regrouped
    return (*regrouped, tf.repeat(tf.reduce_all(complete, axis=1), spec.crops))
