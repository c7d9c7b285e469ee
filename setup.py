"""Packaging for two_stream_tf: two-stream action recognition on TensorFlow 2 / Keras 3."""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "two_stream_tf" / "__init__.py").read_text()).group(1)

BEAM = ["apache-beam>=2.50"]
NOTEBOOK = ["nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6"]
TEST = ["pytest>=7", "pytest-xdist>=3", "pytest-timeout>=2"] + BEAM + NOTEBOOK

setup(
    name="two_stream_tf",
    version=VERSION,
    description="Two-stream ConvNets and Temporal Segment Networks for video action recognition "
    "on TensorFlow 2 / Keras 3: data preparation, tf.data pipelines, models, training, evaluation.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["two_stream_tf", "two_stream_tf.*"]),
    # The training-view kernels' source: compiled against the installed TensorFlow on first use; the
    # library that keeps TensorFlow's servers on one listening address, compiled the same way.
    package_data={"two_stream_tf.data.native": ["views.cc"], "two_stream_tf": ["listen_address.c"]},
    # Resuming a training run relies only on Keras' public surface (callback hooks, fit's initial_epoch,
    # model.variables, optimizer.iterations, .weights.h5 files holding extra entries of this package's
    # own), tested with TensorFlow 2.21 / Keras 3.15; the bounds keep to the major versions it belongs to.
    install_requires=[
        "tensorflow>=2.16,<3",
        "keras>=3.0,<4",
        "numpy>=1.23",
        "opencv-contrib-python-headless>=4.8",
        "absl-py>=1.0",
        "h5py>=3.0",
        "tqdm>=4.60",
        "matplotlib>=3.5",
    ],
    extras_require={
        "test": TEST,
        "beam": BEAM,
        "notebook": NOTEBOOK,
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "all": sorted(set(TEST + BEAM + NOTEBOOK)),
    },
    entry_points={"console_scripts": ["two-stream=two_stream_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Multimedia :: Video",
    ],
)
