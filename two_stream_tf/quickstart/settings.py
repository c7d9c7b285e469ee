"""What the quickstart builds and how long it trains: `QuickstartSettings` and the `FULL` and `FAST` presets."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class QuickstartSettings:
    """The quickstart's dataset, models, training and test protocol.

    Data:
      num_classes, videos_per_class, num_frames, frame_size: the synthetic dataset (`write_synthetic_dataset`);
        frames are extracted at `frame_size` (width, height). Six classes: two triangle looks
        rising and falling and a kite bouncing and swinging; the default eight add a second kite look, which
        costs minutes more training. More clips per class means more groups (UCF-101's "gGG":
        clips sharing a look and a background), which keeps a network trained from scratch from memorising
        backgrounds.
      flow_method: optical flow of the extraction and of the annotated sample ("dis": fast on a CPU).
    Model and training (`training.fit.TrainConfig`; the same for both streams unless said):
      backbone, backbone_kwargs, weights (None, "imagenet" or a Keras weights file of the backbone),
      image_size, num_segments (TSN segments per sample; None: one snippet, as the two-stream paper, which
      here learns more per second of CPU than 3 segments), stack_length (flow pairs per stack), batch_size,
      steps_per_epoch, spatial_epochs, temporal_epochs, optimizer, learning_rate, lr_schedule, dropout.
      recalibration_batches: training batches the batch-norm statistics are recomputed on after training
        (`two_stream_tf.quickstart.batch_norm`); 0 skips it.
    Testing:
      test_snippets, test_crops: the test protocol (25 x 10 as published).
    seed: data, sampling and weight initialisation.
    """

    num_classes: int = 6
    videos_per_class: int = 40
    num_frames: int = 16
    frame_size: tuple = (128, 96)
    flow_method: str = "dis"
    backbone: str = "mobilenet"
    backbone_kwargs: dict = dataclasses.field(default_factory=lambda: {"alpha": 0.25})
    weights: object = None
    image_size: int = 64
    num_segments: int = None
    stack_length: int = 5
    batch_size: int = 32
    steps_per_epoch: int = 50
    spatial_epochs: int = 10
    temporal_epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 0.01
    lr_schedule: str = "cosine"
    dropout: float = 0.5
    recalibration_batches: int = 20
    test_snippets: int = 25
    test_crops: int = 10
    seed: int = 0

    def to_json(self):
        """The settings as plain JSON values."""
        values = dataclasses.asdict(self)
        values["frame_size"] = list(self.frame_size)
        return values


FULL = QuickstartSettings()
# Checks that everything runs and writes its files, in a minute or two; the accuracies mean nothing.
FAST = QuickstartSettings(num_classes=4, videos_per_class=4, num_frames=12, frame_size=(64, 48), image_size=32,
                          num_segments=2, stack_length=3, batch_size=8, steps_per_epoch=2, spatial_epochs=1,
                          temporal_epochs=1, recalibration_batches=2)
