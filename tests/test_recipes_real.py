"""The published UCF-101 / HMDB-51 recipes train on real video without collapsing silently.

The 46 real UCF-101 clips in ../shared/data (42 classes, chance 2.4 %) go through the project's own
preparation (DIS flow, the first 24 frames at 128x96) once per module, all listed for training. Every
recipe flagfile in experiments/configs is read with the real flag parser; recipes with the same optimisation
settings form one group (the spatial and the temporal TSN settings), and one recipe per group trains
through `two-stream train` with only what a test on 2 CPU cores must change: MobileNet α 0.25 from the real
ImageNet file as backbone, 112-pixel crops, 40 steps of 8 videos (the recipe's step boundaries at the same
fractions of the run), no validation.

- spatial: the recipe's rate taken for the 8 videos of a step (16x TSN's rate per video, what the recipe
  ran at on 8 videos before it carried --reference_batch_size; the run that ended at exactly chance before
  the classifier got TSN's init) fits the training clips: ten times chance by the test protocol.
- temporal: at the recipe's own rate per video the health checks find nothing wrong; at 16x it the flow
  backbone switches off and --stop_on_collapse ends the run naming the rate and partial BN.
"""
import json
import pathlib

import pytest

from two_stream_tf.commands import _training_flags as common

PROJECT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = PROJECT / "experiments" / "configs"
MOBILENET = "weights/mobilenet_2_5_224_tf_no_top.h5"
BATCH = 8
# What the test changes (above) or what does not touch optimisation; everything else must match in a group.
NOT_COMPARED = {"frames_root", "split_dir", "dataset", "split", "model_dir", "backbone", "backbone_kwargs",
                "weights", "image_size", "train_steps", "lr_boundaries", "validation_freq", "checkpoint_every",
                "test_snippets", "test_crops", "flagfile"}


def _recipe_values(path):
    from absl import flags
    fv = flags.FlagValues()
    common.define_all(fv)
    common.parse(fv, [f"--flagfile={path}"], "recipe")
    return {name: fv[name].value for name in fv if fv[name].present}


def _recipe_groups():
    """{settings key: [recipe paths]} over every UCF-101 / HMDB-51 flagfile."""
    groups = {}
    for path in sorted(CONFIGS.glob("ucf101_*.cfg")) + sorted(CONFIGS.glob("hmdb51_*.cfg")):
        values = _recipe_values(path)
        key = tuple(sorted((k, str(v)) for k, v in values.items() if k not in NOT_COMPARED))
        groups.setdefault(key, []).append(path)
    return groups


GROUPS = _recipe_groups()


def test_every_recipe_is_in_one_of_the_two_tsn_setting_groups():
    streams = sorted(dict(key)["stream"] for key in GROUPS)
    assert streams == ["spatial", "temporal"], [dict(key) for key in GROUPS]
    assert sum(len(paths) for paths in GROUPS.values()) == 36
    for key in GROUPS:
        settings = dict(key)
        # The rate is the one TSN gives for its global batch of 128, scaled linearly to --batch_size.
        assert settings["reference_batch_size"] == settings["batch_size"] == "128"
        assert settings["learning_rate"] == ("0.001" if settings["stream"] == "spatial" else "0.005")


@pytest.fixture(scope="module")
def real_clips(shared_data, tmp_path_factory):
    """Frames of the 46 real clips, and a split listing all of them for training (42 classes)."""
    from two_stream_tf.preparation.discovery import find_videos
    from two_stream_tf.preparation.runner import prepare_videos

    root = tmp_path_factory.mktemp("real_clips")
    videos = find_videos(str(shared_data / "videos" / "ucf101"))
    summary = prepare_videos(videos, str(root / "frames"), workers=2, progress=False, size=(128, 96),
                             flow_method="dis", max_frames=24)
    assert len(summary.extracted) == 46 and not summary.failed
    ids = sorted(pathlib.Path(v).stem for v in videos)
    classes = sorted({video.split("_")[1] for video in ids})
    split = root / "splits"
    split.mkdir()
    (split / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    entries = [(video.split("_")[1], video) for video in ids]
    (split / "trainlist01.txt").write_text("".join(f"{c}/{v}.avi {classes.index(c) + 1}\n" for c, v in entries))
    # Training never reads the test list, and a video may not be in both lists: an empty one will do.
    (split / "testlist01.txt").write_text("")
    return root, len(classes)


def _shrunk_boundaries(values, steps):
    fractions = [int(b) / int(values["train_steps"]) for b in values["lr_boundaries"]]
    return ",".join(str(max(1, round(f * steps))) for f in fractions)


def _train(stream, real_clips, shared_data, model_dir, steps, *extra):
    """Trains the group's first recipe with the test's changes; returns its flag values."""
    from two_stream_tf.commands import train

    root, _ = real_clips
    (recipe,) = [paths[0] for key, paths in GROUPS.items() if dict(key)["stream"] == stream]
    values = _recipe_values(recipe)
    overrides = [f"--frames_root={root / 'frames'}", f"--split_dir={root / 'splits'}", "--dataset=ucf101",
                 f"--model_dir={model_dir}", "--backbone=mobilenet", "--backbone_kwargs=alpha=0.25",
                 f"--weights={shared_data / MOBILENET}", "--image_size=112", f"--train_steps={steps}",
                 f"--lr_boundaries={_shrunk_boundaries(values, steps)}", f"--batch_size={BATCH}", "--novalidation",
                 "--validation_split=0",
                 "--notensorboard_images", "--verbose=0", f"--checkpoint_every={steps}", "--health_every_steps=10",
                 "--stop_on_collapse", *extra]
    assert train.main([f"--flagfile={recipe}", *overrides]) == 0
    run = json.loads((model_dir / "train_config.json").read_text())
    assert (run["partial_bn"], run["num_segments"], run["momentum"], run["weight_decay"]) == (True, 3, 0.9, 5e-4)
    assert (run["dropout"], run["clip_norm"]) == ((0.8, 40) if stream == "spatial" else (0.7, 20))
    return values


def _train_top1(model_dir, output):
    from two_stream_tf.commands import evaluate
    assert evaluate.main([f"--checkpoint={model_dir / 'final.keras'}", "--subset=train", "--test_snippets=3",
                          "--test_crops=1", f"--output_dir={output}", "--eval_batch_size=8"]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["num_videos"] == 46
    return metrics["top1"]


@pytest.mark.slow
def test_spatial_recipe_fits_real_training_clips(real_clips, shared_data, tmp_path):
    # The recipe's 0.001 taken for the 8 videos of a step: 16x TSN's rate per video, what the recipe ran
    # at on a batch of 8 before it carried --reference_batch_size, and the run that ended at chance before
    # the classifier got TSN's init. 40 such steps fit the clips; 40 at TSN's rate per video barely move.
    _, num_classes = real_clips
    _train("spatial", real_clips, shared_data, tmp_path / "run", 40, f"--reference_batch_size={BATCH}")
    assert not (tmp_path / "run" / "health.log").exists()
    top1 = _train_top1(tmp_path / "run", tmp_path / "train_scores")
    print(f"spatial: train top-1 {top1:.3f} after 40 steps (chance {1 / num_classes:.3f})")
    assert top1 >= 10 / num_classes


@pytest.mark.slow
def test_temporal_recipe_is_healthy_at_tsn_rate_and_stops_loudly_at_sixteen_times_it(real_clips, shared_data,
                                                                                    tmp_path):
    from two_stream_tf.training.health import TrainingCollapse

    # At the recipe's rate per video (0.005 for 128, so 0.0003125 for 8) the flow backbone stays on.
    _train("temporal", real_clips, shared_data, tmp_path / "tsn_rate", 40)
    assert not (tmp_path / "tsn_rate" / "health.log").exists()
    # The same rate for a batch of 8 (16x per video, as before the recipes scaled it): MobileNet's flow
    # features, 89 % off at the start under the frozen ImageNet statistics, switch off within a few dozen
    # steps, and --stop_on_collapse ends the run with the cause.
    with pytest.raises(TrainingCollapse) as stopped:
        _train("temporal", real_clips, shared_data, tmp_path / "high_rate", 40, f"--reference_batch_size={BATCH}",
               "--health_every_steps=5")
    message = str(stopped.value)
    assert any(f"(--stop_on_collapse): {kind}" in message for kind in ("dead backbone", "constant predictions"))
    assert "the learning rate 0.005 is too high for a global batch of 8" in message
    assert "16x its flow rate per video" in message and "partial BN" in message
    assert "TRAINING HEALTH" in (tmp_path / "high_rate" / "health.log").read_text()
    assert not (tmp_path / "high_rate" / "final.keras").exists()


@pytest.mark.slow
def test_the_classifier_init_is_what_kept_partial_bn_from_switching_mobilenet_off(real_clips, shared_data):
    """The measurement behind TSN's classifier init: the RGB recipe's settings (partial BN, lr 0.001 for a
    batch of 8, momentum 0.9, weight decay 5e-4, dropout 0.8, clipping 40), six steps, with Keras' Glorot
    classifier and with TSN's N(0, 0.001) one; only the classifier's initial weights differ."""
    import keras
    import numpy as np
    import tensorflow as tf

    from two_stream_tf.training import fit

    root, num_classes = real_clips
    config = fit.TrainConfig(stream="spatial", frames_root=str(root / "frames"), split_dir=str(root / "splits"),
                             model_dir="", backbone="mobilenet", backbone_kwargs={"alpha": 0.25},
                             weights=str(shared_data / MOBILENET), partial_bn=True, num_segments=3, dropout=0.8,
                             batch_size=BATCH, learning_rate=0.001, lr_schedule="constant", clip_norm=40,
                             index_cache=False, seed=0)
    (train_index,) = fit.open_indices(config, subsets=("train",))
    batches = list(fit.dataset_fn(config, train_index, training=True, rgb_normalization="tf", image_size=112,
                                  repeat=True)(None).take(7).as_numpy_iterator())
    fixed = batches[0][0].reshape((-1, 112, 112, 3))

    def run(classifier_init):
        keras.utils.set_random_seed(0)
        model = fit.compile_model(fit.build_model(config, num_classes, 112), config, 6, num_classes)
        classifier = model.get_layer("segment_logits")
        if classifier_init is not None:
            classifier.kernel.assign(classifier_init(classifier.kernel.shape))
        backbone = model.get_layer("backbone")
        probe = keras.Model(backbone.input, backbone.get_layer("conv_pw_13_relu").output)
        active = [float(np.mean(probe(fixed, training=False).numpy() > 0))]
        x, y = batches[1]
        with tf.GradientTape() as tape:
            first_loss = model.loss(y, model(x, training=True))
        first_norm = float(tf.linalg.global_norm(tape.gradient(first_loss, model.trainable_variables)))
        for x, y in batches[1:]:
            model.train_on_batch(x, y)
        active.append(float(np.mean(probe(fixed, training=False).numpy() > 0)))
        return float(first_loss), first_norm, active

    glorot = run(keras.initializers.GlorotUniform(seed=0))
    tsn = run(None)  # the streams' own init
    print(f"Glorot: first loss {glorot[0]:.2f}, gradient norm {glorot[1]:.0f}, active {glorot[2]}; "
          f"TSN: first loss {tsn[0]:.2f}, gradient norm {tsn[1]:.0f}, active {tsn[2]}")
    assert glorot[0] > 2 * np.log(num_classes) and glorot[1] > 50
    assert glorot[2][0] > 0.2 and glorot[2][1] < 0.05  # switched off in six steps
    assert abs(tsn[0] - np.log(num_classes)) < 0.1 and tsn[1] < 30
    assert tsn[2][1] > 0.2  # still on
