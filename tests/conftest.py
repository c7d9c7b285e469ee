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
