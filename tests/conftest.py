"""Shared fixtures: the real data in ../shared/data, quiet TensorFlow, temporary folders."""
import os
import pathlib

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The real UCF-101 / HMDB-51 files beside the project; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at ../shared/data (looked in {SHARED_DATA.parent.name}/)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """The default small synthetic dataset (8 classes × 12 videos, 32 frames, 128×96), written once.

    Gives a `two_stream_tf.data.synthetic.SyntheticDataset`: `.root`, `.videos_dir` (AVIs in class folders),
    `.frames_dir` (TSN frame folders with ground-truth flow), `.split_dir` (classInd/trainlist01/testlist01),
    `.classes`, `.videos`. Treat it as read-only: other tests share it.
    """
    from two_stream_tf.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic_dataset"), progress=False)
