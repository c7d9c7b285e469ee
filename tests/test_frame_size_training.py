"""`--frame_size`: frames stored at another size are resized before cropping in training, and tested so.

TSN crops 340×256 frames; dumps stored at another size (320×240) give other views unless they are resized
first. The synthetic frames are stored at 128×96; a run with `--frame_size=80x60` must crop the frames
resized to 80×60, record the size in its config, and `evaluate` must test on the same resized frames.
"""
import json

import numpy as np

from two_stream_tf import cli
from two_stream_tf.data import pipelines
from two_stream_tf.data.index import build_index
from two_stream_tf.data.splits import load_split
from two_stream_tf.training import fit


def test_training_and_evaluation_crop_frames_resized_to_frame_size(synthetic_dataset, tmp_path, capsys):
    model_dir = tmp_path / "run"
    common = [f"--frames_root={synthetic_dataset.frames_dir}", f"--split_dir={synthetic_dataset.split_dir}",
              "--stream=spatial", "--backbone=mobilenet", "--backbone_kwargs=alpha=0.25", "--weights=none",
              "--image_size=48", "--frame_size=80x60", "--test_snippets=2", "--test_crops=1"]
    assert cli.main(["train", *common, f"--model_dir={model_dir}", "--batch_size=8", "--epochs=1",
                     "--steps_per_epoch=2", "--optimizer=adam", "--learning_rate=0.001", "--novalidation",
                     "--notensorboard_images", "--noindex_cache", "--verbose=0", "--strategy=one_device"]) == 0
    run = json.loads((model_dir / fit.CONFIG_NAME).read_text())
    assert run["frame_size"] == [60, 80]

    # The run's training batches are the pipeline's with the frames resized to (60, 80) before cropping,
    # and not those of the frames as stored.
    config = fit.TrainConfig(**{k: v for k, v in run.items() if k in fit.TrainConfig.__dataclass_fields__})
    split = load_split(synthetic_dataset.split_dir, 1)
    index = build_index(synthetic_dataset.frames_dir, split.train[:8], split.classes, cache=False)
    made = fit.dataset_fn(config, index, training=True, rgb_normalization="tf", image_size=48, batch_size=8)
    x, _ = next(iter(made(None)))
    options = dict(training=True, batch_size=8, image_size=48, seed=config.seed, rgb_normalization="tf",
                   deterministic=config.deterministic)
    resized, _ = next(iter(pipelines.spatial_dataset(index, frame_size=(60, 80), **options)))
    stored, _ = next(iter(pipelines.spatial_dataset(index, **options)))
    np.testing.assert_allclose(x.numpy(), resized.numpy(), atol=1e-6)
    assert np.abs(x.numpy() - stored.numpy()).max() > 0.1

    # evaluate takes the size from the run's config unless --test_frame_size says otherwise.
    capsys.readouterr()
    assert cli.main(["evaluate", f"--checkpoint={model_dir}", "--max_videos=4", "--test_snippets=2",
                     "--test_crops=1", f"--output_dir={tmp_path / 'eval'}"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["protocol"]["frame_size"] == [60, 80]
    assert cli.main(["evaluate", f"--checkpoint={model_dir}", "--max_videos=4", "--test_snippets=2",
                     "--test_crops=1", "--test_frame_size=", f"--output_dir={tmp_path / 'as_stored'}"]) == 0
    metrics = json.loads((tmp_path / "as_stored" / "metrics.json").read_text())
    assert metrics["protocol"]["frame_size"] is None
