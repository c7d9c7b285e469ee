"""The notebooks run top to bottom on a CPU, as a reader (or CI) runs them, and show what they promise.

Each notebook is executed by nbclient in its own folder, with a Jupyter kernel on this Python interpreter
(`sys.executable`): the kernel spec is written for the test, so no `jupyter kernelspec install` is needed
beyond having ipykernel installed (`pip install -e ".[test]"`).
"""
import base64
import pathlib
import re
import sys

import cv2
import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT = 600


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A kernel spec "python3" that starts ipykernel with this interpreter."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(str(kernels / "python3"))
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def _execute(name, kernel_spec_manager):
    from jupyter_client.manager import KernelManager
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
    assert manager.kernel_spec.argv[0] == sys.executable
    client = nbclient.NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return notebook


def _outputs(notebook):
    """(all text printed by code cells, list of decoded PNG images shown)."""
    text, images = [], []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"a cell raised: {output.get('ename')}: {output.get('evalue')}"
            if output.output_type == "stream":
                text.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                text.append(output.data.get("text/plain", ""))
                if "image/png" in output.data:
                    data = np.frombuffer(base64.b64decode(output.data["image/png"]), np.uint8)
                    images.append(cv2.imdecode(data, cv2.IMREAD_COLOR))
    return "\n".join(text), images


def _percentages(line):
    return [float(token) for token in line.replace("%", " ").split() if token.replace(".", "").isdigit()
            and "." in token]


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} holds outputs"
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= {"walkthrough.ipynb", "live_demo.ipynb"}


@pytest.mark.slow
def test_walkthrough_runs_and_reports_accuracies(kernel_spec_manager):
    notebook = _execute("walkthrough.ipynb", kernel_spec_manager)
    text, images = _outputs(notebook)
    num_train, num_test = map(int, re.search(r"(\d+) training and (\d+) test videos", text).groups())
    assert num_train > num_test > 0
    # Each stream's test-protocol line, over every test video, and the fused table.
    for stream in ("spatial", "temporal"):
        line = next(line for line in text.splitlines() if line.startswith(f"{stream} accuracy: top-1"))
        top1, top5, mean_class = _percentages(line)[:3]
        assert 0 <= top1 <= top5 <= 100 and 0 <= mean_class <= 100
        assert f"({num_test} videos)" in line
    assert "| Spatial" in text and "| Fusion" in text and "fusion accuracy with TSN's weights 1:1.5" in text
    # The batch figure, the training curves and the confusion matrix were drawn.
    assert len(images) >= 3 and all(image is not None and image.std() > 0 for image in images)


@pytest.mark.slow
def test_live_demo_runs_and_shows_annotated_frames(kernel_spec_manager):
    notebook = _execute("live_demo.ipynb", kernel_spec_manager)
    text, images = _outputs(notebook)
    assert "top-" in text and "1. " in text
    assert "annotated video:" in text
    assert len(images) >= 1 and all(image is not None and image.std() > 0 for image in images)
