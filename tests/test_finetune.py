"""Starting from trained models and fine-tuning in stages: real runs of `fit.train` on the synthetic dataset
(MobileNet alpha 0.25 with the real ImageNet weights, 64x64 inputs, a few steps), block boundaries of the
registered backbones, models by URL, user callbacks, and matplotlib's backend left alone."""
import functools
import http.server
import os
import pathlib
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest

from two_stream_tf.errors import UserError
from two_stream_tf.models import get_backbone, list_backbones, remote
from two_stream_tf.training import finetune, fit, warm_start

PROJECT = pathlib.Path(__file__).resolve().parent.parent
MOBILENET_FILE = "weights/mobilenet_2_5_224_tf_no_top.h5"


def _config(synthetic_dataset, shared_data, model_dir, **overrides):
    values = dict(stream="spatial", frames_root=str(synthetic_dataset.frames_dir),
                  split_dir=str(synthetic_dataset.split_dir), model_dir=str(model_dir), backbone="mobilenet",
                  backbone_kwargs={"alpha": 0.25}, weights=str(shared_data / MOBILENET_FILE), image_size=64,
                  batch_size=4, steps_per_epoch=2, epochs=1, optimizer="sgd", learning_rate=0.05,
                  weight_decay=0.0, lr_schedule="constant", validation=False, tensorboard_images=False,
                  verbose=0, seed=0)
    values.update(overrides)
    return fit.TrainConfig(**values)


class _Recorder(keras.callbacks.Callback):
    """Copies of every weight, the optimizer step and the learning rate at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.epochs, self.weights, self.steps, self.rates = [], [], [], []

    def on_train_begin(self, logs=None):
        self.initial = {v.path: np.array(v) for v in self.model.weights}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.weights.append({v.path: np.array(v) for v in self.model.weights})
        self.steps.append(int(self.model.optimizer.iterations))
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _moved(before, after):
    return {path for path in after if not np.array_equal(before[path], after[path])}


def _layer_of(path):
    # "spatial_mobilenet/backbone/conv_dw_13/depthwise_kernel" -> "conv_dw_13"
    return path.split("/")[-2]


# --- schedules -----------------------------------------------------------------------------------------

def test_schedule_text_round_trips_and_bad_schedules_are_named():
    stages = finetune.parse_stages("classifier, blocks:2@10 ,all@20")
    assert stages == (finetune.Stage(0, "classifier"), finetune.Stage(10, "blocks", 2), finetune.Stage(20, "all"))
    assert finetune.format_stages(stages) == "classifier@0,blocks:2@10,all@20"
    assert [finetune.stage_at(stages, epoch).what for epoch in (0, 9, 10, 19, 20, 99)] == \
        ["classifier", "classifier", "blocks", "blocks", "all", "all"]
    for text, message in [("top@0", "stage 'top@0' is not classifier, blocks:N or all"),
                          ("blocks:0@0", "stage 'blocks:0@0' unfreezes no block"),
                          ("classifier@2", "the first stage must start at epoch 0"),
                          ("classifier,all", "stage 'all' needs @EPOCH"),
                          ("classifier,all@5,blocks:1@5", "stage blocks:1@5 must start after stage all@5"),
                          ("", "the schedule is empty")]:
        with pytest.raises(UserError, match=message):
            finetune.parse_stages(text)
    with pytest.raises(UserError, match=r"stage all@3 starts after the run's 3 epoch\(s\)"):
        finetune.check_stages(finetune.parse_stages("classifier,all@3"), epochs=3)


# Blocks per registered backbone and what the top ones hold, counted in the Keras architectures.
EXPECTED_BLOCKS = {
    "xception": (14, "block14", {"SeparableConv2D": 2}, "block13", {"SeparableConv2D": 2, "Conv2D": 1}),
    "inception_v3": (11, "mixed10", {"Conv2D": 9}, "mixed9", {"Conv2D": 9}),
    "resnet50": (16, "conv5_block3", {"Conv2D": 3}, "conv5_block2", {"Conv2D": 3}),
    "mobilenet": (13, "13", {"DepthwiseConv2D": 1, "Conv2D": 1}, "12", {"DepthwiseConv2D": 1, "Conv2D": 1}),
    "mobilenet_v3_small": (11, "expanded_conv_10", {"Conv2D": 5, "DepthwiseConv2D": 1}, "expanded_conv_9",
                           {"Conv2D": 4, "DepthwiseConv2D": 1}),
    "vgg16": (5, "block5", {"Conv2D": 3}, "block4", {"Conv2D": 3}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BLOCKS))
def test_block_boundaries_hold_each_blocks_own_layers(name):
    spec = get_backbone(name)
    side = max(spec.min_input_size, 64)
    backbone = spec.build((side, side, 3), weights=None)
    blocks = spec.blocks(backbone)
    count, top, top_layers, second, second_layers = EXPECTED_BLOCKS[name]
    assert len(blocks) == count and blocks[-1].name == top and blocks[-2].name == second

    def kinds(block):
        found = {}
        for layer in block.layers:
            kind = type(layer).__name__
            if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
                found[kind] = found.get(kind, 0) + 1
        return found

    assert kinds(blocks[-1]) == top_layers and kinds(blocks[-2]) == second_layers
    # Blocks follow one another without overlap, up to the backbone's last layer.
    positions = [backbone.layers.index(block.layers[0]) for block in blocks]
    assert positions == sorted(positions) and blocks[-1].layers[-1] is backbone.layers[-1]
    assert len({id(layer) for block in blocks for layer in block.layers}) == sum(len(b.layers) for b in blocks)


def test_every_registered_backbone_says_whether_it_has_blocks():
    # All registered Keras applications have registered blocks; an added backbone without may refuse.
    assert all(get_backbone(name).block_pattern for name in list_backbones())
    import dataclasses
    bare = dataclasses.replace(get_backbone("mobilenet"), name="my_net", block_pattern=None)
    with pytest.raises(UserError, match="backbone my_net has no registered blocks; fine-tune it whole"):
        bare.blocks(None)


# --- staged fine-tuning in a real run --------------------------------------------------------------------

def test_stages_move_the_classifier_then_the_top_block_then_everything(synthetic_dataset, shared_data, tmp_path):
    recorder = _Recorder()
    config = _config(synthetic_dataset, shared_data, tmp_path / "run", epochs=3, lr_schedule="step",
                     lr_boundaries=(3,), trainable_layers="classifier@0,blocks:1@1,all@2")
    result = fit.train(config, callbacks=[recorder])
    assert recorder.epochs == [0, 1, 2]
    names = [{_layer_of(path) for path in moved} for moved in
             (_moved(recorder.initial, recorder.weights[0]), _moved(recorder.weights[0], recorder.weights[1]),
              _moved(recorder.weights[1], recorder.weights[2]))]
    # Epoch 1: the classifier alone (frozen BatchNormalization layers keep even their statistics).
    assert names[0] == {"logits"}
    # Epoch 2: the classifier and MobileNet's last block (depthwise + pointwise convolution, their BN).
    assert names[1] == {"logits", "conv_dw_13", "conv_dw_13_bn", "conv_pw_13", "conv_pw_13_bn"}
    # Epoch 3: every layer, the stem's first convolution included.
    assert {"conv1", "conv1_bn", "conv_dw_1", "conv_pw_12", "conv_pw_13", "logits"} <= names[2]
    # One optimizer throughout: its step counter and the step schedule run on across the recompiles.
    assert recorder.steps == [2, 4, 6]
    assert recorder.rates == pytest.approx([0.05, 0.005, 0.005])
    assert fit.load_run_config(result.model_dir)["trainable_layers"] == "classifier@0,blocks:1@1,all@2"


class _CrashAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_a_resumed_run_continues_in_its_stage_with_the_optimizer_state(synthetic_dataset, shared_data, tmp_path):
    config = _config(synthetic_dataset, shared_data, tmp_path / "run", epochs=3, trainable_layers="classifier,all@1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit.train(config, callbacks=[_CrashAfter(1)])  # the backup of epoch 2 (stage "all") is written first
    recorder = _Recorder()
    result = fit.train(config, callbacks=[recorder])
    assert result.resumed_from_epoch == 2 and recorder.epochs == [2]
    # The step counter came back from the backup (4 steps done) and went on; the whole model trains.
    assert recorder.steps == [6]
    moved = {_layer_of(path) for path in _moved(recorder.initial, recorder.weights[0])}
    assert {"conv1", "conv_dw_1", "conv_pw_13", "logits"} <= moved


def test_a_schedule_the_backbone_or_run_cannot_follow_is_refused(synthetic_dataset, shared_data, tmp_path):
    with pytest.raises(UserError, match="backbone mobilenet has 13 blocks, fewer than 14; use 'all'"):
        fit.train(_config(synthetic_dataset, shared_data, tmp_path / "a", epochs=2,
                          trainable_layers="classifier,blocks:14@1"))
    with pytest.raises(UserError, match=r"stage all@2 starts after the run's 2 epoch\(s\)"):
        fit.train(_config(synthetic_dataset, shared_data, tmp_path / "b", epochs=2, trainable_layers="classifier,all@2"))
    with pytest.raises(UserError, match="trainable_layers and freeze_backbone both given"):
        fit.train(_config(synthetic_dataset, shared_data, tmp_path / "c", trainable_layers="classifier",
                          freeze_backbone=True))


# --- user callbacks, warm-up and learning-rate checks -------------------------------------------------------

def test_early_stopping_ends_the_run_and_the_final_model_is_saved(synthetic_dataset, shared_data, tmp_path):
    recorder = _Recorder()
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)  # no epoch improves enough
    result = fit.train(_config(synthetic_dataset, shared_data, tmp_path / "run", epochs=6), callbacks=[stop, recorder])
    assert recorder.epochs == [0, 1] and stop.stopped_epoch == 1
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert os.path.isfile(result.final_path)


def test_warmup_longer_than_the_run_and_nan_rates_are_refused(synthetic_dataset, shared_data, tmp_path):
    with pytest.raises(UserError, match=r"warmup_steps=4 is not shorter than the run \(4 optimizer steps\)"):
        fit.train(_config(synthetic_dataset, shared_data, tmp_path / "a", epochs=2, warmup_steps=4))
    with pytest.raises(UserError, match="learning_rate=nan is not a finite number"):
        fit.train(_config(synthetic_dataset, shared_data, tmp_path / "b", learning_rate=float("nan")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- init_from ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(synthetic_dataset, shared_data, tmp_path_factory):
    """A finished spatial run (8 classes) whose final model later runs start from."""
    model_dir = tmp_path_factory.mktemp("source") / "run"
    return fit.train(_config(synthetic_dataset, shared_data, model_dir, epochs=1, learning_rate=0.5))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        _QuietHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def model_server(trained_run):
    """An HTTP server on 127.0.0.1 serving the trained run's folder."""
    handler = functools.partial(_QuietHandler, directory=trained_run.model_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _QuietHandler.requests = []
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_same_classes_take_every_weight(trained_run, synthetic_dataset, shared_data, tmp_path):
    source = keras.saving.load_model(trained_run.final_path, compile=False)
    config = _config(synthetic_dataset, shared_data, tmp_path / "new", init_from=trained_run.model_dir)
    model = fit.build_model(config, num_classes=8, image_size=64, classes=synthetic_dataset.classes)
    for mine, theirs in zip(model.weights, source.weights):
        np.testing.assert_array_equal(np.array(mine), np.array(theirs))
    # The source is a trained model, not ImageNet: its classifier differs from a fresh one's.
    fresh = fit.build_model(_config(synthetic_dataset, shared_data, tmp_path / "fresh"), 8, 64)
    assert not np.allclose(np.array(fresh.get_layer("logits").kernel), np.array(model.get_layer("logits").kernel))


def test_other_classes_get_a_new_classifier_and_every_other_weight(trained_run, synthetic_dataset, shared_data,
                                                                   tmp_path):
    source = keras.saving.load_model(trained_run.final_path, compile=False)
    start = warm_start.initialize_from(
        fit.build_model(_config(synthetic_dataset, shared_data, tmp_path / "x"), 3, 64), trained_run.final_path,
        classes=synthetic_dataset.classes[:3])
    assert start.reheaded and start.source_classes == 8
    config = _config(synthetic_dataset, shared_data, tmp_path / "new", init_from=trained_run.final_path)
    model = fit.build_model(config, num_classes=3, image_size=64, classes=synthetic_dataset.classes[:3])
    for mine, theirs in zip(model.get_layer("backbone").weights, source.get_layer("backbone").weights):
        np.testing.assert_array_equal(np.array(mine), np.array(theirs))
    assert model.get_layer("logits").kernel.shape == (256, 3)
    # Eight classes again, but other names (from the source's train_config.json): a new classifier too.
    renamed = [f"other_{name}" for name in synthetic_dataset.classes]
    model = fit.build_model(config, num_classes=8, image_size=64, classes=renamed)
    assert not np.array_equal(np.array(model.get_layer("logits").kernel),
                              np.array(source.get_layer("logits").kernel))


@pytest.mark.parametrize("overrides, message", [
    (dict(stream="temporal", stack_length=2), "a spatial (RGB) stream model; this run trains the temporal (flow) stream"),
    (dict(image_size=96), "takes 64x64 RGB inputs; this run builds 96x96 RGB (set image_size to 64)"),
    (dict(backbone_kwargs={"alpha": 0.5}, weights=None), "its backbone (spatial_mobilenet) is not this run's "
                                                         "(spatial_mobilenet): conv1/kernel is (3, 3, 3, 8), here "
                                                         "(3, 3, 3, 16)"),
    (dict(backbone="mobilenet_v2", backbone_kwargs={}, weights=None), "is not this run's (spatial_mobilenet_v2"),
])
def test_a_model_of_another_kind_is_refused(trained_run, synthetic_dataset, shared_data, tmp_path, overrides, message):
    config = _config(synthetic_dataset, shared_data, tmp_path / "new", init_from=trained_run.model_dir, **overrides)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit.build_model(config, num_classes=8, image_size=config.image_size, classes=synthetic_dataset.classes)


def test_a_run_from_a_url_reheads_and_trains_only_the_classifier(trained_run, synthetic_dataset, shared_data,
                                                                 model_server, tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "DEFAULT_CACHE_DIR", str(tmp_path / "cache"))
    server, address = model_server
    source = keras.saving.load_model(trained_run.final_path, compile=False)
    subset = list(synthetic_dataset.classes[:4])
    config = _config(synthetic_dataset, shared_data, tmp_path / "new", init_from=f"{address}/final.keras",
                     image_size=None, class_subset=subset, trainable_layers="classifier")
    result = fit.train(config)
    trained = keras.saving.load_model(result.final_path, compile=False)
    assert trained.input_shape == (None, 64, 64, 3)  # the size came from the model at the URL
    for mine, theirs in zip(trained.get_layer("backbone").weights, source.get_layer("backbone").weights):
        np.testing.assert_array_equal(np.array(mine), np.array(theirs))  # copied, then frozen
    assert trained.get_layer("logits").kernel.shape == (256, 4)
    assert _QuietHandler.requests == ["/final.keras"]
    cached = tmp_path / "cache" / remote.CACHE_SUBDIR / remote.cached_name(f"{address}/final.keras")
    assert cached.is_file()
    # Cached: with the server gone, the same URL still loads, and nothing more was asked of it.
    server.shutdown()
    server.server_close()  # connections are refused from now on
    assert warm_start.resolve_source(f"{address}/final.keras") == str(cached)
    with pytest.raises(UserError, match=r"model URL http://127.0.0.1:\d+/best.keras: download failed"):
        warm_start.resolve_source(f"{address}/best.keras")


def test_file_urls_and_bad_urls(trained_run, tmp_path):
    url = pathlib.Path(trained_run.final_path).as_uri()
    path = remote.fetch_model(url, cache_dir=str(tmp_path))
    assert open(path, "rb").read() == open(trained_run.final_path, "rb").read()
    assert remote.is_url(url) and not remote.is_url(trained_run.final_path)
    with pytest.raises(UserError, match="model URL file:///nowhere/model.keras: download failed"):
        remote.fetch_model("file:///nowhere/model.keras", cache_dir=str(tmp_path))
    with pytest.raises(UserError, match="must name a .keras file"):
        remote.fetch_model("http://127.0.0.1:9/model.h5", cache_dir=str(tmp_path))


def test_evaluate_and_predict_take_a_model_url(trained_run, synthetic_dataset, model_server, tmp_path, monkeypatch,
                                               capsys):
    from two_stream_tf import cli
    monkeypatch.setattr(remote, "DEFAULT_CACHE_DIR", str(tmp_path / "cache"))
    _, address = model_server
    url = f"{address}/final.keras"
    status = cli.main(["evaluate", f"--checkpoint={url}", "--stream=spatial",
                       f"--frames_root={synthetic_dataset.frames_dir}", f"--split_dir={synthetic_dataset.split_dir}",
                       "--test_snippets=2", "--test_crops=1", "--max_videos=4", "--noindex_cache",
                       f"--output_dir={tmp_path / 'eval'}"])
    out = capsys.readouterr().out
    assert status == 0 and "on 4 test videos" in out
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert cli.main(["evaluate", f"--checkpoint={url}"]) == 2
    assert "--output_dir is required when --checkpoint is a URL" in capsys.readouterr().err
    video = str(next(pathlib.Path(synthetic_dataset.videos_dir).rglob("*.avi")))
    status = cli.main(["predict", video, "--model", url, "--snippets=2", "--json", "--quiet",
                       "--size=80x64", "--rgb-normalization=tf"])
    out = capsys.readouterr().out
    assert status == 0 and '"type": "video"' in out
    assert _QuietHandler.requests == ["/final.keras"]  # evaluate downloaded it; predict read the cache


# --- the library leaves matplotlib's backend alone -------------------------------------------------------

def test_plotting_leaves_the_matplotlib_backend_unchanged(tmp_path):
    script = f"""
import matplotlib
matplotlib.use("svg")
import numpy as np
import two_stream_tf, two_stream_tf.training, two_stream_tf.evaluation
from two_stream_tf.evaluation import plots
from two_stream_tf.training import callbacks
plots.save_confusion_png({str(tmp_path / 'c.png')!r}, np.eye(3, dtype=int) * 4, ["a", "b", "c"], title="t")
array = plots.figure_to_array(plots.confusion_figure(np.eye(2, dtype=int), ["a", "b"]))
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), array.shape[2], len(plt.get_fignums()))
"""
    env = dict(os.environ, PYTHONPATH=str(PROJECT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("MPLBACKEND", None)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr
    assert process.stdout.split() == ["svg", "3", "0"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- errors ---------------------------------------------------------------------------------------------

def test_user_errors_are_value_errors():
    assert issubclass(UserError, ValueError)
    with pytest.raises(ValueError, match="stage 'top@0' is not classifier"):
        finetune.parse_stages("top@0")


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha="abc"), "backbone mobilenet: alpha='abc' is not a number (default 1.0)"),
    (dict(alpha=-1.0), "backbone mobilenet (alpha=-1.0) with weights='{file}': Invalid value for argument `filters`"),
    (dict(alpha=0.5), "weights file {file} does not fit backbone mobilenet (alpha=0.5): Shape mismatch"),
])
def test_backbone_arguments_and_weights_files_are_blamed_apart(shared_data, kwargs, message):
    weights = str(shared_data / MOBILENET_FILE)
    with pytest.raises(UserError) as caught:
        get_backbone("mobilenet").build((64, 64, 3), weights=weights, **kwargs)
    assert str(caught.value).startswith(message.format(file=weights)), str(caught.value)
