"""Model selection never touches the test list: a real training run with held-out validation videos.

The split given to training has a test list whose frame folders are missing or hold files that are not
JPEGs: opening or reading any of them fails. Training must still succeed, choose best.keras on the
held-out training videos and score final.keras on them; `evaluate` given the run folder scores final.keras.
"""
import csv
import json
import pathlib
import shutil

import numpy as np
import pytest

from two_stream_tf import cli
from two_stream_tf.data.splits import load_split
from two_stream_tf.evaluation.scores import load_scores
from two_stream_tf.training import fit

MOBILENET = "weights/mobilenet_2_5_224_tf_no_top.h5"
SNIPPETS = 3


@pytest.fixture(scope="module")
def broken_test_list(synthetic_dataset, tmp_path_factory):
    """The synthetic dataset with its training videos intact and its test videos missing or not JPEGs."""
    root = tmp_path_factory.mktemp("broken_test_list")
    splits, frames = root / "splits", root / "frames"
    source_frames = pathlib.Path(synthetic_dataset.frames_dir)
    shutil.copytree(synthetic_dataset.split_dir, splits, ignore=shutil.ignore_patterns("videos", "frames"))
    split = load_split(splits, 1)
    for entry in split.train:
        shutil.copytree(source_frames / entry.video, frames / entry.video)
    for number, entry in enumerate(split.test):
        if number % 2:
            continue  # odd test videos have no frame folder at all
        source = source_frames / entry.video
        (frames / entry.video).mkdir(parents=True)
        for path in source.iterdir():
            (frames / entry.video / path.name).write_bytes(b"not a JPEG")
    return splits, frames, split


def _config(splits, frames, model_dir, weights, **extra):
    values = dict(stream="spatial", frames_root=str(frames), split_dir=str(splits), model_dir=str(model_dir),
                  backbone="mobilenet", backbone_kwargs={"alpha": 0.25}, weights=str(weights), freeze_backbone=True,
                  image_size=64, dropout=0.2, batch_size=8, epochs=3, steps_per_epoch=6, optimizer="adam",
                  learning_rate=0.005, weight_decay=0.0, lr_schedule="constant", strategy="one_device", seed=0,
                  validation_split=0.125, protocol_snippets=SNIPPETS, protocol_crops=1, index_cache=False,
                  verbose=0)
    values.update(extra)
    return fit.TrainConfig(**values)


def test_training_selects_on_held_out_videos_and_never_reads_the_test_list(broken_test_list, shared_data,
                                                                           tmp_path, capsys):
    splits, frames, split = broken_test_list
    model_dir = tmp_path / "run"
    config = _config(splits, frames, model_dir, shared_data / MOBILENET)
    result = fit.train(config)

    # 64 training videos of 8 classes in groups of 2 clips: one group per class is held out.
    train_index, val_index = fit.open_indices(config)
    assert (len(train_index), len(val_index)) == (48, 16)
    held = {entry.video for entry in val_index}
    assert not held & {entry.video for entry in train_index}
    assert held <= {entry.video for entry in split.train}
    listed = (model_dir / fit.VALIDATION_LIST_NAME).read_text().split()
    assert {name.split("/")[1][:-4] for name in listed} == held and len(listed) == 16

    # Every validation of the log measured the 16 held-out videos (top-1 in steps of 1/16).
    with open(model_dir / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    val_top1 = [float(row["val_top1"]) for row in rows]
    assert len(val_top1) == 3 and all(abs(16 * v - round(16 * v)) < 1e-4 for v in val_top1)
    assert result.best_path == str(model_dir / "best.keras")

    # final.keras scored on the held-out videos by the protocol, for fitting fusion weights.
    scores = load_scores(result.validation_scores_path)
    assert result.validation_scores_path == str(model_dir / "evaluation_split1_validation" / "scores.npz")
    assert set(scores.videos) == held and np.bincount(scores.labels).tolist() == [2] * 8
    np.testing.assert_allclose(scores.scores.sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((model_dir / "evaluation_split1_validation" / "metrics.json").read_text())
    assert metrics["protocol"]["model"].endswith("final.keras") and metrics["protocol"]["subset"] == "validation"

    # evaluate given the run folder scores final.keras; on the validation subset it repeats training's scores.
    out = tmp_path / "again"
    assert cli.main(["evaluate", f"--checkpoint={model_dir}", "--subset=validation", f"--test_snippets={SNIPPETS}",
                     "--test_crops=1", f"--output_dir={out}"]) == 0
    assert f"{model_dir / 'final.keras'} on 16 validation videos" in capsys.readouterr().out
    again = load_scores(out / "scores.npz")
    assert list(again.videos) == list(scores.videos)
    np.testing.assert_allclose(again.scores, scores.scores, atol=1e-5)
    # best.keras only when asked for by name.
    assert cli.main(["evaluate", f"--checkpoint={model_dir / 'best.keras'}", "--subset=validation",
                     "--test_snippets=1", "--test_crops=1", "--max_videos=8", f"--output_dir={tmp_path / 'best'}"]) == 0
    best = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert best["protocol"]["model"].endswith("best.keras") and best["num_videos"] == 8
    # --max_videos is stratified: 8 videos of 8 classes, one each.
    assert sorted(load_scores(tmp_path / "best" / "scores.npz").labels.tolist()) == list(range(8))

    # The test list really is unreadable: evaluating on it stops with the broken videos named.
    capsys.readouterr()
    assert cli.main(["evaluate", f"--checkpoint={model_dir}", "--test_snippets=1", "--test_crops=1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("two-stream evaluate: error: --split_dir/--frames_root (split 1): 16 of 32 videos in ")
    assert f"{split.test[1].video}: missing folder" in error


def test_corrupt_checkpoint_and_file_output_dir_are_one_line_errors(broken_test_list, tmp_path, capsys):
    splits, frames, _ = broken_test_list
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"PK\x03\x04 cut short")
    common = [f"--frames_root={frames}", f"--split_dir={splits}", "--stream=spatial"]
    assert cli.main(["evaluate", f"--checkpoint={corrupt}", *common]) == 2
    error = capsys.readouterr().err
    assert error == (f"two-stream evaluate: error: --checkpoint: {corrupt} is not a .keras model (not a zip archive: "
                     "damaged, incomplete or another kind of file)\n")
    assert cli.main(["evaluate", f"--checkpoint={tmp_path}", *common]) == 2
    assert "--checkpoint: no model at" in capsys.readouterr().err
    assert cli.main(["evaluate", f"--checkpoint={corrupt}", f"--output_dir={corrupt}", *common]) == 2
    assert capsys.readouterr().err == (f"two-stream evaluate: error: --output_dir: {corrupt} is a file; give a "
                                       "folder for the scores and metrics\n")


def test_validation_flags_reach_the_config_and_conflicts_are_refused(broken_test_list, tmp_path, capsys):
    splits, frames, split = broken_test_list
    listed = tmp_path / "val.txt"
    listed.write_text("".join(f"{entry.path}\n" for entry in split.train[::8]))
    flags = [f"--frames_root={frames}", f"--split_dir={splits}", "--stream=spatial", f"--model_dir={tmp_path / 'm'}",
             "--epochs=1"]
    from absl import flags as absl_flags

    from two_stream_tf.commands import _training_flags as common
    from two_stream_tf.commands.train import config_from_flags, open_indices_for_flags
    fv = absl_flags.FlagValues()
    common.define_all(fv)
    common.parse(fv, flags + [f"--validation_list={listed}"], "train")
    config = config_from_flags(fv)
    assert (config.validation_list, config.validation_split) == (str(listed), 0.0)
    train_index, val_index = open_indices_for_flags(config)
    assert [e.video for e in val_index] == [e.video for e in split.train[::8]] and len(train_index) == 56

    assert cli.main(["train", *flags, "--validation_split=0.2", f"--validation_list={listed}"]) == 2
    assert "--validation_split=0.2 and --validation_list=" in capsys.readouterr().err
    assert cli.main(["train", *flags, f"--validation_list={tmp_path / 'nope.txt'}"]) == 2
    assert "--validation_list: file not found" in capsys.readouterr().err
    listed.write_text(f"{split.test[0].path}\n")
    assert cli.main(["train", *flags, f"--validation_list={listed}"]) == 2
    error = capsys.readouterr().err
    assert "--validation_list (split 1)" in error and "val.txt:1: video not in the training list (it is a test video)" \
        in error
    assert not (tmp_path / "m").exists()  # nothing started


def test_a_run_folder_means_final_keras_then_the_latest_checkpoint_then_best(tmp_path):
    from two_stream_tf.training.checkpoints import find_model_file
    (tmp_path / "best.keras").write_bytes(b"b")
    assert find_model_file(tmp_path) == str(tmp_path / "best.keras")  # nothing else there
    (tmp_path / "002.0.9000.0.9000.keras").write_bytes(b"2")
    (tmp_path / "004.0.9000.0.8000.keras").write_bytes(b"4")
    assert find_model_file(tmp_path) == str(tmp_path / "004.0.9000.0.8000.keras")  # a run still going
    (tmp_path / "final.keras").write_bytes(b"f")
    assert find_model_file(tmp_path) == str(tmp_path / "final.keras")
    assert find_model_file(tmp_path / "best.keras") == str(tmp_path / "best.keras")  # asked for by name
    assert find_model_file(tmp_path / "missing") is None


def test_validation_subset_of_a_run_without_held_out_videos_is_refused(broken_test_list, tmp_path, capsys):
    import zipfile
    splits, frames, _ = broken_test_list
    run = tmp_path / "run"
    run.mkdir()
    with zipfile.ZipFile(run / "final.keras", "w") as archive:  # never loaded: the check comes first
        archive.writestr("config.json", "{}")
    (run / "train_config.json").write_text(json.dumps({
        "stream": "spatial", "frames_root": str(frames), "split_dir": str(splits), "split": 1,
        "validation_split": 0.0, "validation_list": None, "seed": 0}))
    assert cli.main(["evaluate", f"--checkpoint={run}", "--subset=validation"]) == 2
    assert capsys.readouterr().err == (f"two-stream evaluate: error: --subset=validation: the run in {run} held out "
                                       "no validation videos (it was trained without --validation_split or "
                                       "--validation_list); give one of them\n")
