"""absl flags shared by `two-stream train` and `two-stream evaluate`, their checks, and the flag runner.

Both commands take the same flags, so one recipe (a flagfile in `experiments/configs/`) drives training
and the test protocol: `two-stream train --flagfile=R.cfg`, then `two-stream evaluate --flagfile=R.cfg`.
Flags are parsed into a private `absl.flags.FlagValues` per call (no global state), turned into plain
values, checked, and handed to library functions, which never read flags.

Every check runs before any work and raises `UserError` with a message that starts with the flag.

Flags are defined with underscores (`--split_dir`); the dashed spelling (`--split-dir`, `--no-index-cache`)
is accepted too, on the command line and in flagfiles, as in the argparse commands.
"""
import math
import os
import sys

from absl import flags

from two_stream_tf.errors import UserError

STREAMS = ("spatial", "temporal", "fusion")
LAYOUT_NAMES = ("auto", "tsn", "denseflow", "twostreamfusion", "mmaction2")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def define_data_flags(fv):
    """Dataset flags: frames, layout, split files, classes."""
    flags.DEFINE_string("frames_root", None, "Folder of the frame folders (RGB frames and flow images).",
                        flag_values=fv)
    flags.DEFINE_enum("layout", "auto", LAYOUT_NAMES, "Frame layout of --frames_root (auto: detect).",
                      flag_values=fv)
    flags.DEFINE_string("split_dir", None, "Folder of the split files (UCF-101 classInd.txt/trainlist0N.txt/"
                        "testlist0N.txt, or HMDB-51 <class>_test_splitN.txt).", flag_values=fv)
    flags.DEFINE_integer("split", 1, "Split number.", lower_bound=1, upper_bound=3, flag_values=fv)
    flags.DEFINE_enum("dataset", "auto", ("auto", "ucf101", "hmdb51"), "Kind of split files.", flag_values=fv)
    flags.DEFINE_string("class_subset", None, "Classes to keep: comma-separated names, or a classInd-style "
                        "file; labels become 0..k-1 in this order.", flag_values=fv)
    flags.DEFINE_boolean("index_cache", True, "Cache the frame counts of --frames_root in a JSON file there.",
                         flag_values=fv)
    flags.DEFINE_string("frame_size", "", "Resize frames stored at another size to WIDTHxHEIGHT (as OpenCV does) "
                        "before cropping, in training and validation (TSN: 340x256); empty: crop frames as stored. "
                        "evaluate uses it unless --test_frame_size is given.", flag_values=fv)
    flags.DEFINE_boolean("strict", False, "Stop with an error naming the file at the first unreadable frame "
                         "(empty, truncated, damaged header, another size than its stack) instead of skipping its "
                         "training sample or leaving its test view out of the video's score.", flag_values=fv)


def define_model_flags(fv):
    """Model flags: stream, backbone, input."""
    flags.DEFINE_enum("stream", None, STREAMS, "Which model: the spatial (RGB) stream, the temporal (flow) "
                      "stream, or a fusion of two trained streams.", flag_values=fv)
    flags.DEFINE_string("backbone", "xception", "Backbone name (see two_stream_tf.models.list_backbones()).",
                        flag_values=fv)
    flags.DEFINE_list("backbone_kwargs", [], "Extra backbone arguments as key=value, e.g. alpha=0.25.",
                      flag_values=fv)
    flags.DEFINE_string("weights", "imagenet", "Backbone weights: imagenet, none, or a Keras weights file "
                        "(the temporal stream gets TSN's cross-modality init from them).", flag_values=fv)
    flags.DEFINE_integer("image_size", None, "Input side in pixels (default: the backbone's).", lower_bound=32,
                         flag_values=fv)
    flags.DEFINE_float("dropout", None, "Dropout before the classifier (default: the stream's; TSN uses "
                       "0.8 RGB / 0.7 flow).", lower_bound=0.0, upper_bound=0.99, flag_values=fv)
    flags.DEFINE_boolean("partial_bn", False, "Freeze all batch normalisation layers but the first (TSN).",
                         flag_values=fv)
    flags.DEFINE_boolean("freeze_backbone", False, "Train only the classifier on a frozen backbone (Keras' "
                         "transfer-learning recipe; a temporal stream also trains its first convolution; the fusion "
                         "head always trains on frozen streams).", flag_values=fv)
    flags.DEFINE_integer("num_segments", 0, "TSN segments per video in training (0: one snippet, classic "
                         "two-stream).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("stack_length", 10, "Flow pairs per stack (10 classic, 5 TSN).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("spatial_model", None, "--stream=fusion: trained spatial stream (.keras or model_dir).",
                        flag_values=fv)
    flags.DEFINE_string("temporal_model", None, "--stream=fusion: trained temporal stream (.keras or model_dir).",
                        flag_values=fv)
    flags.DEFINE_string("fusion", "recurrent", "--stream=fusion: how to fuse the frozen streams' features.",
                        flag_values=fv)
    flags.DEFINE_string("init_from", None, "Start a new run (in a new --model_dir) from a trained stream model: "
                        "a .keras file, a run folder or a URL of a .keras file. The same classes keep every "
                        "weight; other classes get a new classifier. Stream, --stack_length, --image_size "
                        "(default: the model's) and --backbone must match it.", flag_values=fv)
    flags.DEFINE_string("trainable_layers", None, "Fine-tune in stages: comma-separated WHAT@EPOCH, WHAT one of "
                        "classifier, blocks:N (the classifier and the backbone's top N blocks), all; EPOCH the "
                        "0-based epoch the stage starts at. E.g. classifier@0,blocks:2@10 (default: every "
                        "layer trains).", flag_values=fv)


def define_training_flags(fv):
    """Optimisation, distribution and run flags."""
    flags.DEFINE_integer("batch_size", 32, "Global batch size (split across replicas).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("epochs", None, "Epochs to train (or give --train_steps).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("train_steps", None, "Optimizer steps to train; epochs = ceil(train_steps / "
                         "steps_per_epoch).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the training list).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("optimizer", "sgd", OPTIMIZERS, "Optimizer.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 0.001, "Base learning rate, for a global batch of "
                       "--reference_batch_size when that is given.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("reference_batch_size", 0, "The global batch --learning_rate is given for: the rate "
                         "used is learning_rate x batch_size / reference_batch_size (TSN's linear rule; the "
                         "UCF-101/HMDB-51 recipes give 0.001 RGB / 0.005 flow for 128). 0: use --learning_rate "
                         "as given, whatever the batch.", lower_bound=0, flag_values=fv)
    flags.DEFINE_float("momentum", 0.9, "SGD / RMSprop momentum.", lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_float("weight_decay", 5e-4, "Weight decay (not on biases and BN).", lower_bound=0.0,
                       flag_values=fv)
    flags.DEFINE_enum("lr_schedule", "step", ("constant", "step", "cosine"), "Learning-rate schedule.",
                      flag_values=fv)
    flags.DEFINE_list("lr_boundaries", [], "--lr_schedule=step: optimizer steps where the rate is multiplied "
                      "by --lr_decay.", flag_values=fv)
    flags.DEFINE_float("lr_decay", 0.1, "--lr_schedule=step: the factor.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up steps.", lower_bound=0, flag_values=fv)
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.", lower_bound=0.0, upper_bound=0.99,
                       flag_values=fv)
    flags.DEFINE_float("clip_norm", 0.0, "Clip gradients to this global norm (0: off; TSN 40 RGB / 20 flow).",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_boolean("mixed_precision", False, "Mixed precision (float16 on GPU, bfloat16 on TPU/CPU).",
                         flag_values=fv)
    flags.DEFINE_boolean("jit_compile", False, "Compile the training step with XLA.", flag_values=fv)
    flags.DEFINE_enum("strategy", "auto", ("auto", "one_device", "mirrored", "multi_worker", "tpu"),
                      "tf.distribute strategy (multi_worker reads TF_CONFIG).", flag_values=fv)
    flags.DEFINE_string("tpu", None, "--strategy=tpu: TPU name or address.", flag_values=fv)
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (0: no split), e.g. "
                         "to try --strategy=mirrored without GPUs.", lower_bound=0, flag_values=fv)
    flags.DEFINE_string("model_dir", None, "Folder for checkpoints, backups, logs and the flags used: a local "
                        "folder or any tf.io.gfile path (gs://bucket/run). One run per folder; rerunning the "
                        "same command resumes it.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed (weights, sampling, augmentation).", flag_values=fv)
    flags.DEFINE_boolean("deterministic", False, "Deterministic tf.data order (slower).", flag_values=fv)
    flags.DEFINE_integer("shuffle_buffer", None, "tf.data shuffle buffer in videos (default: the pipeline's).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("data_threads", 0, "tf.data private thread pool size (0: shared default).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_string("tf_data_service", None, "Run the training input pipeline on the workers of this tf.data "
                        "service dispatcher (grpc://HOST:PORT; start it with `two-stream data-service`).",
                        flag_values=fv)
    define_validation_flags(fv)
    flags.DEFINE_integer("checkpoint_every", 1, "Epochs between periodic checkpoints.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("keep_checkpoints", 0, "Keep only the newest N periodic checkpoints (0: all); "
                         "best.keras and final.keras are never deleted.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("backup_every_steps", 0, "Back up the training state every this many steps (0: at "
                         "the end of each epoch).", lower_bound=0, flag_values=fv)
    flags.DEFINE_boolean("tensorboard_images", True, "Write sample inputs and confusion matrices to "
                         "TensorBoard.", flag_values=fv)
    flags.DEFINE_boolean("health_checks", True, "Watch training for collapse (NaN/inf, a dead backbone, "
                         "identical scores for every input, validation at chance) and warn naming the likely "
                         "cause; also written to <model_dir>/health.log.", flag_values=fv)
    flags.DEFINE_integer("health_every_steps", 50, "Optimizer steps between health checks (each runs the model "
                         "on one fixed batch of 8 training inputs).", lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("stop_on_collapse", False, "Stop training (exit status 2) at the first health "
                         "warning instead of only warning.", flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "Keras fit verbosity (1: progress bar, 2: one line per epoch).",
                         lower_bound=0, upper_bound=2, flag_values=fv)


def define_validation_flags(fv):
    """Held-out validation flags: which training videos are held out, and what is done with them.

    The test list is never used for validation: best.keras and fitted fusion weights come from these videos.
    """
    flags.DEFINE_float("validation_split", 0.0, "Hold out this stratified fraction of the training videos for "
                       "validation (whole UCF-101 groups per class, drawn with --seed; 0.125 as the TF-slim "
                       "two-stream project; 0: none).", lower_bound=0.0, upper_bound=0.95, flag_values=fv)
    flags.DEFINE_string("validation_list", None, "Hold out the training videos of this list file for validation "
                        "(<class>/<video>.avi [label] lines, as trainlist0N.txt).", flag_values=fv)
    flags.DEFINE_boolean("validation", True, "Validate on the held-out videos every --validation_freq epochs (one "
                         "centre snippet per segment); best.keras is the best of these validations.", flag_values=fv)
    flags.DEFINE_integer("validation_freq", 1, "Epochs between validations.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("validation_videos", 0, "Validate on a stratified subset of this many held-out videos "
                         "(0: all).", lower_bound=0, flag_values=fv)
    flags.DEFINE_boolean("validation_scores", True, "After training, score final.keras on the held-out videos by "
                         "the test protocol (--test_snippets x --test_crops) into <model_dir>/"
                         "evaluation_split<N>_validation/, for `two-stream fuse --fit_on`.", flag_values=fv)


def validation_values(fv):
    """(validation_split, validation_list) of the flags, checked.

    Raises:
      UserError: both given, or a validation list that is not a file.
    """
    if fv.validation_split and fv.validation_list:
        raise UserError(f"--validation_split={fv.validation_split:g} and --validation_list={fv.validation_list} "
                        "both given; give one")
    if fv.validation_list and not os.path.isfile(fv.validation_list):
        raise UserError(f"--validation_list: file not found: {fv.validation_list}")
    return fv.validation_split, fv.validation_list or None


def define_protocol_flags(fv):
    """Test-protocol flags, used by `evaluate`."""
    flags.DEFINE_integer("test_snippets", 25, "Snippets per test video (evenly spaced).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_enum("test_crops", "10", ("1", "3", "10"), "Crops per snippet: 1 centre, 3 along the long "
                      "side, 10 = 4 corners + centre and their mirrors.", flag_values=fv)
    flags.DEFINE_enum("test_sampling", "centered", ("centered", "tsn"), "Test snippet starts: centered = "
                      "floor(tick/2 + j*tick), stacks looping back (tsn-pytorch, mmaction2); tsn = TSN's Caffe "
                      "eval_net.py, j*((N-L)//(n-1)), stacks clamped at the last pair.", flag_values=fv)
    flags.DEFINE_enum("score_aggregation", "softmax_mean", ("softmax_mean", "logit_mean"), "How a video's view "
                      "scores are combined: the mean of the softmax outputs (tsn-pytorch, mmaction2), or the softmax "
                      "of the mean logits (TSN's Caffe eval_net).", flag_values=fv)
    flags.DEFINE_string("test_frame_size", "", "evaluate: resize frames stored at another size to WIDTHxHEIGHT "
                        "before cropping, exactly as OpenCV (TSN: 340x256); empty: crop frames as stored.",
                        flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "evaluate: model to test (.keras file, a model_dir: its "
                        "final.keras, or URL of a .keras file; give <model_dir>/best.keras for the best by "
                        "validation).", flag_values=fv)
    flags.DEFINE_enum("subset", "test", ("test", "validation", "train"), "evaluate: which videos: the test list, "
                      "the run's held-out validation videos, or its training videos.", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "evaluate: where to write scores and metrics (default "
                        "<model_dir>/evaluation_split<N>_<subset>).", flag_values=fv)
    flags.DEFINE_integer("max_videos", 0, "evaluate: score a stratified subset of N videos, every class "
                         "represented when N allows (drawn with --seed; 0: all).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", 1, "evaluate: videos per step.", lower_bound=1, flag_values=fv)


def frame_size(value, flag="test_frame_size"):
    """`"340x256"` (width x height, as OpenCV and TSN write it) → `(256, 340)` (height, width); "" → None.

    Raises:
      UserError: not two positive integers separated by "x".
    """
    text = (value or "").strip().lower()
    if not text:
        return None
    parts = text.split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise UserError(f"--{flag}: expected WIDTHxHEIGHT such as 340x256, got {value!r}")
    return int(parts[1]), int(parts[0])


def define_all(fv):
    define_data_flags(fv)
    define_model_flags(fv)
    define_training_flags(fv)
    define_protocol_flags(fv)


def parse(fv, argv, prog):
    """Parses `argv` (without the program name) into `fv`.

    Returns:
      None after printing help for `-h/--help/--helpfull`, else `fv`.

    Raises:
      UserError: unknown flags, bad values, unreadable flagfiles, positional arguments.
    """
    if any(arg in ("-h", "--help", "--helpshort", "--helpfull", "-help") for arg in argv):
        print(f"usage: {prog} [--flagfile=recipe.cfg] [--flag=value ...]  (--flag_name or --flag-name)\n")
        print(fv.get_help(include_special_flags=False))
        return None
    try:
        # Flagfiles are read here, so the dashed spelling in them is understood too.
        expanded = fv.read_flags_from_files([prog] + list(argv), force_gnu=False)
        rest = fv(underscore_flag_names(fv, expanded))
    except flags.CantOpenFlagFileError as error:
        raise UserError(f"--flagfile: {str(error).replace('ERROR:: ', '')}") from None
    except flags.Error as error:
        raise UserError(str(error)) from None
    if len(rest) > 1:
        raise UserError(f"unexpected argument(s) {' '.join(rest[1:])!r}: flags are written --name=value")
    return fv


def underscore_flag_names(fv, argv):
    """`argv` with `--flag-name[=v]` (and `--noflag-name`) written `--flag_name` where `fv` defines it.

    Only arguments up to a `--` separator are flags; unknown names stay as given, so absl reports them.
    """
    known = set(fv)
    result = list(argv[:1])
    for position, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            result.extend(argv[position:])
            break
        if arg.startswith("-") and "-" in arg.lstrip("-").split("=", 1)[0]:
            dashes = "--" if arg.startswith("--") else "-"
            name, equals, value = arg[len(dashes):].partition("=")
            spelled = name.replace("-", "_")
            negated = spelled[2:].lstrip("_") if spelled.startswith("no") else None  # --no-index-cache
            if spelled in known:
                arg = f"{dashes}{spelled}{equals}{value}"
            elif negated in known and not equals:
                arg = f"{dashes}no{negated}"
        result.append(arg)
    return result


def check_finite_numbers(fv):
    """Raises UserError naming the first float flag given as nan or inf (absl's bounds let them through)."""
    for name in sorted(fv):
        flag = fv[name]
        if isinstance(flag.value, float) and not math.isfinite(flag.value):
            raise UserError(f"--{name}={flag.value}: not a finite number")


def require(fv, *names):
    """Raises UserError naming the first of `names` that was not given."""
    for name in names:
        if fv[name].value in (None, ""):
            raise UserError(f"--{name} is required")


def parse_kwargs(values, flag="backbone_kwargs"):
    """`["alpha=0.25", "depth_multiplier=1"]` → `{"alpha": 0.25, "depth_multiplier": 1}` (ints, floats,
    booleans and None are converted; anything else stays a string)."""
    result = {}
    for item in values:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"--{flag}: expected key=value, got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        lowered = text.lower()
        if lowered in ("true", "false"):
            value = lowered == "true"
        elif lowered == "none":
            value = None
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        result[key] = value
    return result


def parse_int_list(values, flag):
    """`["1500", "3000"]` → `[1500, 3000]`, increasing and positive."""
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        raise UserError(f"--{flag}: expected comma-separated integers, got {','.join(values)!r}") from None
    if any(n <= 0 for n in numbers) or numbers != sorted(set(numbers)):
        raise UserError(f"--{flag}: steps must be positive and increasing, got {','.join(values)}")
    return numbers


def class_subset(value):
    """The `--class_subset` value as the split readers take it: a file path, a list of names, or None."""
    if not value:
        return None
    if os.path.isfile(value):
        return value
    names = [name.strip() for name in value.split(",") if name.strip()]
    if len(names) == 1 and (os.sep in value or value.endswith(".txt")):
        raise UserError(f"--class_subset: file not found: {value}")
    return names


def check_folder(fv, name):
    """Raises UserError unless flag `name` names an existing folder (local or any tf.io.gfile path)."""
    from two_stream_tf import storage
    path = storage.check(fv[name].value, f"--{name}")
    if not storage.isdir(path):
        what = "not a folder" if storage.exists(path) else "folder not found"
        raise UserError(f"--{name}: {what}: {path}")


def check_model_dir(fv, name="model_dir"):
    """Checks, creating nothing, that flag `name` can hold a run; returns it absolute. Raises UserError
    naming the flag: a file, a folder under a file, not writable, an unknown scheme or unreachable store."""
    from two_stream_tf.training import run_folder
    return run_folder.check_usable(fv[name].value, what=f"--{name}")


def check_weights(value):
    """`--weights` as the model builders take it: "imagenet", None or an existing file."""
    if value in ("imagenet",):
        return value
    if value is None or value.lower() in ("none", ""):
        return None
    if not os.path.isfile(value):
        raise UserError(f"--weights: file not found: {value} (use imagenet, none, or a Keras weights file)")
    return value


def check_backbone_kwargs(spec, kwargs, values):
    """Checks `--backbone_kwargs` against the backbone builder's arguments (names and kinds of value)."""
    from two_stream_tf.models.backbones import check_builder_arguments
    try:
        check_builder_arguments(spec, kwargs)
    except UserError as error:
        raise UserError(f"--backbone_kwargs={','.join(values)}: {error}") from None


def check_backbone(name):
    """The `BackboneSpec` of `--backbone`."""
    from two_stream_tf import models
    try:
        spec = models.get_backbone(name)
    except UserError as error:
        raise UserError(f"--backbone: {error}") from None
    return spec


def run(main, argv, prog):
    """Runs a command's `main(argv)` as a script: UserError → message on stderr, exit status 2."""
    try:
        return int(main(argv) or 0)
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def strict_failure(error):
    """The `UserError` for a `--strict` run stopped by an unreadable frame, or None for other errors.

    Args:
      error: the exception the input pipeline raised (`tf.errors.InvalidArgumentError`).
    """
    from two_stream_tf.data.decode import unreadable_files

    files = unreadable_files(error)
    if not files:
        return None
    more = f" (and {len(files) - 1} more file(s) of the same sample)" if len(files) > 1 else ""
    return UserError(f"--strict: unreadable frame {files[0]}{more}: empty, truncated, a damaged JPEG header or "
                     "a frame of another size than the rest of its stack")

