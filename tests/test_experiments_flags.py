"""Flags of the training / evaluation / fusion entry points: validation messages, exit status, recipes."""
import os
import pathlib
import re
import subprocess
import sys

import pytest
from absl import flags

from two_stream_tf import cli
from two_stream_tf.commands import _training_flags, train

PROJECT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = sorted((PROJECT / "experiments" / "configs").glob("*.cfg"))


@pytest.fixture()
def folders(tmp_path):
    frames, splits = tmp_path / "frames", tmp_path / "splits"
    frames.mkdir()
    splits.mkdir()
    return frames, splits, tmp_path / "run"


def _train(capsys, *argv):
    status = cli.main(["train", *argv])
    return status, capsys.readouterr().err


def _base(folders, **overrides):
    frames, splits, run = folders
    values = dict(stream="spatial", frames_root=frames, split_dir=splits, model_dir=run, backbone="mobilenet",
                  epochs=1)
    values.update(overrides)
    return [f"--{k}={v}" for k, v in values.items() if v is not None]


@pytest.mark.parametrize("override, message", [
    (dict(batch_size=-4), "flag --batch_size=-4: -4 is not a positive integer"),
    (dict(batch_size=0), "flag --batch_size=0: 0 is not a positive integer"),
    (dict(backbone="resnet9000"), "--backbone: unknown backbone 'resnet9000'; registered backbones: densenet121,"),
    (dict(strategy="gpus"), "flag --strategy=gpus: value should be one of <auto|one_device|mirrored|multi_worker|tpu>"),
    (dict(stream="audio"), "flag --stream=audio: value should be one of <spatial|temporal|fusion>"),
    (dict(split=4), "flag --split=4: 4 is not an integer in the range [1, 3]"),
    (dict(learning_rate="fast"), "flag --learning_rate=fast: could not convert string to float: 'fast'"),
    (dict(epochs=None), "--epochs or --train_steps is required"),
    (dict(train_steps=10), "--epochs=1 and --train_steps=10 both given; give one"),
    (dict(image_size=16), "flag --image_size=16: 16 is not integer >= 32"),
    (dict(backbone="xception", image_size=64), "--image_size=64 is smaller than backbone xception's minimum 71"),
    (dict(backbone_kwargs="alpha"), "--backbone_kwargs: expected key=value, got 'alpha'"),
    (dict(lr_boundaries="3000,1500"), "--lr_boundaries: steps must be positive and increasing, got 3000,1500"),
    (dict(weights="missing.h5"), "--weights: file not found: missing.h5 (use imagenet, none, or a Keras weights file)"),
    (dict(label_smoothing=1.5), "flag --label_smoothing=1.5: 1.5 is not a number in the range [0.0, 0.99]"),
    (dict(stream="fusion"), "--spatial_model is required"),
    (dict(model_dir=None), "--model_dir is required"),
    (dict(unknown_flag=1), "Unknown command line flag 'unknown_flag'"),
    (dict(tf_data_service="dispatcher"), "--tf_data_service 'dispatcher' is not HOST:PORT"),
])
def test_bad_values_stop_with_a_message_naming_the_flag(capsys, folders, override, message):
    status, err = _train(capsys, *_base(folders, **override))
    assert status == 2
    assert err.startswith("two-stream train: error: ") and message in err, err
    assert "Traceback" not in err
    assert not folders[2].exists()  # nothing was written: the check came before any work


def test_missing_dataset_folders(capsys, folders, tmp_path):
    status, err = _train(capsys, *_base(folders, frames_root=tmp_path / "nowhere"))
    assert status == 2 and f"--frames_root: folder not found: {tmp_path / 'nowhere'}" in err
    status, err = _train(capsys, *_base(folders, split_dir=tmp_path / "no_splits"))
    assert status == 2 and f"--split_dir: folder not found: {tmp_path / 'no_splits'}" in err


def test_multi_worker_needs_tf_config(capsys, folders, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    status, err = _train(capsys, *_base(folders, strategy="multi_worker"))
    assert status == 2 and "--strategy=multi_worker needs the TF_CONFIG environment variable" in err


def test_split_files_that_do_not_match_the_frames(capsys, shared_data, synthetic_dataset, tmp_path):
    # The real UCF-101 split lists videos that the synthetic frames folder does not have.
    status, err = _train(capsys, "--stream=temporal", f"--frames_root={synthetic_dataset.frames_dir}",
                         f"--split_dir={shared_data / 'ucf101_splits'}", f"--model_dir={tmp_path / 'run'}",
                         "--backbone=mobilenet", "--epochs=1", "--noindex_cache")
    assert status == 2
    first_line = err.splitlines()[0]
    assert first_line.startswith("two-stream train: error: --split_dir/--frames_root (split 1): 9537 of 9537 "
                                 "videos in "), first_line
    assert re.search(r"v_ApplyEyeMakeup_g08_c01: ", err) and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_split_dir_without_split_files(capsys, folders):
    status, err = _train(capsys, *_base(folders))
    assert status == 2
    assert "--split_dir/--frames_root (split 1): no split files in" in err


def test_flagfile_problems(capsys, folders, tmp_path):
    status, err = _train(capsys, f"--flagfile={tmp_path / 'nope.cfg'}")
    assert status == 2 and "--flagfile: Unable to open flagfile" in err and "nope.cfg" in err
    recipe = tmp_path / "bad.cfg"
    recipe.write_text("# a recipe\n--batch_size=-1\n")
    status, err = _train(capsys, f"--flagfile={recipe}", *_base(folders)[1:])
    assert status == 2 and "flag --batch_size=-1: -1 is not a positive integer" in err


def test_fuse_and_evaluate_flag_errors(capsys, tmp_path):
    assert cli.main(["fuse", "--scores=a.npz"]) == 2
    assert "two-stream fuse: error: --scores: give at least two score files, got 1" in capsys.readouterr().err
    assert cli.main(["fuse", f"--scores={tmp_path / 'a.npz'},{tmp_path / 'b.npz'}"]) == 2
    assert f"--scores: score file not found: {tmp_path / 'a.npz'}" in capsys.readouterr().err
    assert cli.main(["fuse", "--scores=a.npz,b.npz,c.npz", "--weights=tsn"]) == 2
    assert "--weights=tsn is RGB:flow = 1:1.5 for two score files, got 3 files" in capsys.readouterr().err
    assert cli.main(["evaluate", f"--checkpoint={tmp_path / 'none.keras'}"]) == 2
    assert f"--checkpoint: no model at {tmp_path / 'none.keras'}" in capsys.readouterr().err
    assert cli.main(["evaluate"]) == 2
    assert "--checkpoint (or --model_dir) is required" in capsys.readouterr().err


def test_experiment_script_exits_2_without_traceback(tmp_path):
    """The real entry point as a user runs it: a separate process, exit status 2, one line on stderr."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(
        [sys.executable, str(PROJECT / "experiments" / "train_temporal.py"), "--batch_size=-8",
         f"--frames_root={tmp_path}", f"--split_dir={tmp_path}", f"--model_dir={tmp_path / 'run'}", "--epochs=1"],
        capture_output=True, text=True, env=env, timeout=120)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == \
        "train_temporal.py: error: flag --batch_size=-8: -8 is not a positive integer"
    assert "Traceback" not in process.stderr


def test_experiment_script_refuses_the_other_stream(capsys, tmp_path):
    sys.path.insert(0, str(PROJECT / "experiments"))
    try:
        import train_spatial
    finally:
        sys.path.pop(0)
    status = _training_flags.run(train_spatial.main, ["--stream=temporal"], "train_spatial.py")
    assert status == 2
    assert "train_spatial.py: error: --stream=temporal: train_spatial.py trains the spatial stream" in \
        capsys.readouterr().err


def test_help_lists_the_flags(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--batch_size", "--strategy", "--backbone_kwargs", "--lr_schedule", "--[no]mixed_precision",
                 "--[no]jit_compile", "--[no]partial_bn", "--label_smoothing", "--clip_norm", "--model_dir"):
        assert flag in out


@pytest.mark.parametrize("recipe", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_every_recipe_parses_with_the_real_flags(recipe, tmp_path):
    text = recipe.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header and "REFERENCE.md" in text and re.search(r"\d+(\.\d+)? %", text), "header must quote numbers"
    assert "edit" in text.lower() and "/work" not in text and "/tmp" not in text
    fv = flags.FlagValues()
    _training_flags.define_all(fv)
    _training_flags.parse(fv, [f"--flagfile={recipe}"], "test")
    # Recipe paths are relative, meant to be edited.
    assert not os.path.isabs(fv.frames_root) and not os.path.isabs(fv.split_dir) and not os.path.isabs(fv.model_dir)
    # With the paths pointed at existing folders, every value passes the entry point's checks.
    (tmp_path / "f").mkdir()
    streams = []
    for name in ("spatial_model", "temporal_model"):  # a fusion recipe reads two trained streams
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.keras").write_bytes(b"")
        streams.append(f"--{name}={tmp_path / name}")
    fv = flags.FlagValues()
    _training_flags.define_all(fv)
    _training_flags.parse(fv, [f"--flagfile={recipe}", f"--frames_root={tmp_path / 'f'}",
                               f"--split_dir={tmp_path / 'f'}", f"--model_dir={tmp_path / 'run'}", *streams], "test")
    config = train.config_from_flags(fv)
    if recipe.stem.startswith(("ucf101", "hmdb51")):
        rgb = config.stream == "spatial"
        assert (config.num_segments, config.partial_bn, config.momentum, config.weight_decay) == (3, True, 0.9, 5e-4)
        assert config.dropout == (0.8 if rgb else 0.7) and config.batch_size == 128
        assert config.learning_rate == (0.001 if rgb else 0.005)
        assert config.lr_boundaries == ((1500, 3000) if rgb else (10000, 16000))
        assert config.train_steps == (3500 if rgb else 18000) and config.clip_norm == (40 if rgb else 20)
        assert rgb or config.stack_length == 5
        assert (fv.test_snippets, fv.test_crops) == (25, "10")
        # Validation comes from a held-out 1/8 of the training list, never from the test list.
        assert (config.validation_split, config.validation_list) == (0.125, None)
        assert "final.keras" in text and "--validation_split=0" in text
        assert f"split {config.split}" in header[0]


def test_recipes_cover_the_issue():
    names = {path.stem for path in CONFIGS}
    for dataset in ("ucf101", "hmdb51"):
        for backbone in ("xception", "inception_v3", "resnet50"):
            for stream in ("spatial", "temporal"):
                for split in (1, 2, 3):
                    assert f"{dataset}_{backbone}_{stream}_split{split}" in names
    assert {"synthetic_spatial", "synthetic_temporal", "synthetic_fusion"} <= names


# --- one spelling rule for every command: --flag_name and --flag-name ------------------------------------------

def _spellings(argv, name):
    """The same arguments with option `name` written with underscores, then with dashes."""
    under, dashed = name.replace("-", "_"), name.replace("_", "-")
    return ([arg.replace(f"--{name}", f"--{under}") for arg in argv],
            [arg.replace(f"--{name}", f"--{dashed}") for arg in argv])


def _both_spellings(capsys, command, argv, name):
    results = []
    for variant in _spellings(argv, name):
        status = cli.main([command, *variant])
        captured = capsys.readouterr()
        results.append((status, captured.out, captured.err))
    assert results[0] == results[1], results
    return results[0]


def test_every_command_takes_both_spellings(capsys, tmp_path):
    nowhere = tmp_path / "nowhere"
    (tmp_path / "frames").mkdir()
    cases = [
        ("train", ["--stream=spatial", f"--frames_root={tmp_path / 'frames'}", f"--split_dir={nowhere}",
                   f"--model_dir={tmp_path / 'run'}", "--epochs=1"], "split_dir", f"--split_dir: folder not found: {nowhere}"),
        ("train", ["--stream=spatial", f"--frames_root={tmp_path / 'frames'}", f"--split_dir={tmp_path / 'frames'}",
                   f"--model_dir={tmp_path / 'run'}", "--epochs=1", "--learning_rate=nan"], "learning_rate",
         "--learning_rate=nan: not a finite number"),
        ("evaluate", [f"--model_dir={nowhere}"], "model_dir", f"--model_dir: no model at {nowhere}"),
        ("fuse", [f"--scores={nowhere}/a.npz,{nowhere}/b.npz", f"--fit_on={nowhere}/c.npz"], "fit_on",
         "--fit_on: 1 validation file(s) for 2 score files"),
        ("index", [str(tmp_path / "frames"), f"--split-dir={nowhere}"], "split-dir", str(nowhere)),
        ("pack", [str(tmp_path / "frames"), f"--split-dir={nowhere}", f"--output={tmp_path / 'out'}"], "split-dir",
         str(nowhere)),
        ("prepare", [str(tmp_path / "frames"), str(tmp_path / "out"), f"--video-root={nowhere}"], "video-root",
         f"argument --video-root: {nowhere} is not a folder"),
        ("synth", [f"--output={tmp_path / 'out'}", "--videos-per-class=1"], "videos-per-class",
         "argument --videos-per-class: 1 is out of range"),
        ("data-service", ["dispatcher", "--job-gc-timeout=-1"], "job-gc-timeout",
         "argument --job-gc-timeout: '-1' must be positive"),
        ("predict", [str(nowhere / "clip.avi"), "--model=m.keras", "--top-k=0"], "top-k",
         "argument --top-k/--top_k: 0 is out of range"),
        ("quickstart", ["--no-progress", "--seed=-1"], "no-progress", "argument --seed: -1 must be >= 0"),
    ]
    for command, argv, name, message in cases:
        status, _, err = _both_spellings(capsys, command, argv, name)
        assert status == 2 and message in err, (command, err)
        assert "Traceback" not in err and not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_argparse_commands_map_every_option_to_its_declared_spelling():
    import importlib
    for name in cli.available_commands():
        module = importlib.import_module(f"two_stream_tf.commands.{name.replace('-', '_')}")
        if not hasattr(module, "build_parser"):
            continue  # an absl command: see test_absl_commands_take_dashes_in_flagfiles_too
        parsers = [module.build_parser()]
        for action in parsers[0]._actions:  # subcommands (data-service dispatcher / worker)
            if isinstance(action.choices, dict):
                parsers.extend(action.choices.values())
        for parser in parsers:
            for option in parser._option_string_actions:
                if option.startswith("--") and ("-" in option[2:] or "_" in option[2:]):
                    for spelling in (option[:2] + option[2:].replace("-", "_"), option[:2] + option[2:].replace("_", "-")):
                        assert parser._declared_spelling([spelling])[0] in parser._option_string_actions, \
                            (name, spelling)


def test_absl_commands_take_dashes_in_flagfiles_too(tmp_path):
    recipe = tmp_path / "recipe.cfg"
    recipe.write_text("--stream=temporal\n--split-dir=splits\n--no-index-cache\n--lr-boundaries=10,20\n")
    fv = flags.FlagValues()
    _training_flags.define_all(fv)
    _training_flags.parse(fv, [f"--flagfile={recipe}", "--frames-root=frames", "--stack-length=5"], "test")
    assert (fv.stream, fv.split_dir, fv.index_cache, fv.lr_boundaries, fv.frames_root, fv.stack_length) == \
        ("temporal", "splits", False, ["10", "20"], "frames", 5)
    with pytest.raises(_training_flags.UserError, match="Unknown command line flag 'split-dirs'"):
        _training_flags.parse(flags.FlagValues(), ["--split-dirs=x"], "test")


def test_experiment_script_takes_the_dashed_spelling(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(
        [sys.executable, str(PROJECT / "experiments" / "train_temporal.py"), "--batch-size=-8",
         f"--frames-root={tmp_path}", f"--split-dir={tmp_path}", f"--model-dir={tmp_path / 'run'}", "--epochs=1"],
        capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == \
        "train_temporal.py: error: flag --batch_size=-8: -8 is not a positive integer"


@pytest.mark.parametrize("override, message", [
    (dict(learning_rate="nan"), "--learning_rate=nan: not a finite number"),
    (dict(learning_rate="inf"), "--learning_rate=inf: not a finite number"),
    (dict(momentum="nan"), "--momentum=nan: not a finite number"),
    (dict(backbone_kwargs="alpha=abc"), "--backbone_kwargs=alpha=abc: backbone mobilenet: alpha='abc' is not a "
                                        "number (default 1.0)"),
    (dict(backbone_kwargs="alpah=0.25"), "--backbone_kwargs=alpah=0.25: backbone mobilenet takes no argument "
                                         "'alpah' (it takes alpha, depth_multiplier, dropout)"),
    (dict(trainable_layers="classifier@0,top:2@10"), "--trainable_layers=classifier@0,top:2@10: stage 'top:2@10' is "
                                                     "not classifier, blocks:N or all"),
    (dict(trainable_layers="classifier", freeze_backbone="true"), "--trainable_layers and --freeze_backbone both given"),
    (dict(init_from="no_such_run"), "--init_from: no trained model at no_such_run"),
])
def test_fine_tuning_and_number_flags_are_checked(capsys, folders, override, message):
    status, err = _train(capsys, *_base(folders, **override))
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not folders[2].exists()


def test_init_from_its_own_folder_is_refused(capsys, folders):
    run = folders[2]
    run.mkdir()
    (run / "final.keras").write_bytes(b"")
    status, err = _train(capsys, *_base(folders, init_from=run))
    assert status == 2 and f"--model_dir={run} is the --init_from run's folder" in err


def test_warmup_longer_than_the_run_is_refused(capsys, synthetic_dataset, tmp_path):
    argv = ["--stream=spatial", f"--frames_root={synthetic_dataset.frames_dir}",
            f"--split_dir={synthetic_dataset.split_dir}", f"--model_dir={tmp_path / 'run'}", "--backbone=mobilenet",
            "--noindex_cache", "--batch_size=16"]
    status, err = _train(capsys, *argv, "--epochs=2", "--warmup_steps=8")
    # 64 training videos in batches of 16: 4 steps per epoch, 8 in the run.
    assert status == 2 and err.strip().splitlines()[-1] == ("two-stream train: error: --warmup_steps=8 is not shorter "
                                                           "than the run (8 optimizer steps: --epochs=2 x 4 steps)")
    status, err = _train(capsys, *argv, "--train_steps=5", "--warmup-steps=5")
    assert status == 2 and "--warmup_steps=5 is not shorter than the run (5 optimizer steps: --train_steps=5)" in err
    assert not (tmp_path / "run").exists()
