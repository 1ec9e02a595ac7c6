"""The example notebook runs top to bottom in a real Jupyter kernel, in a folder without any data set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "five_regularizers.ipynb"


def kernel_spec(folder: Path) -> str:
    """A kernel spec for this interpreter with this checkout first on the path (an installed `python3`
    spec could point at another Python); returns its name."""
    spec = folder / "kernels" / "regbench-test"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "regbench tests",
        "language": "python",
        "env": {"PYTHONPATH": str(REPO)},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return "regbench-test"


def test_example_notebook_executes_in_a_jupyter_kernel(tmp_path, monkeypatch):
    jupyter = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    work = tmp_path / "work"  # a fresh folder: no data/, so the notebook uses its stand-ins
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=kernel_spec(jupyter), resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "Model flowers_model_1 train started:\n    Epoch 2: cost=" in text
    assert "Model flowers_cnn_4 test report: accuracy = " in text and "Near 0 parameters = " in text
    assert "Model office31_cnn_1 test report: accuracy = " in text and "+" in text.split("office31_cnn_1 test")[1][:40]
    assert "\r" not in text and "\x1b" not in text  # streamed lines only: no progress bar, no terminal codes
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr
    # figures inline: fm1 shows its samples and the histogram, fm2 and fm3 a histogram each, fcnn1 samples,
    # and the live curves of the arrays cell (redrawn each epoch: the last drawing stays)
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 6
    assert "{'name': 'arrays', 'train': 240, 'val': 15, 'test': 45} test accuracy" in text  # from memory, no file
    runs = sorted(p.name for p in (work / "runs").iterdir())
    assert len(runs) == 12 and runs[0].startswith("arrays_demo-")
    assert "| flowers_model_3-" in text  # the last cell's comparison table
