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
