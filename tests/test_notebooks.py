"""Execute every notebook in notebooks/ in small mode (LRPGRAPH_NB_SMALL=1) with nbclient
and check the outputs that show it did its job: figures rendered as PNG, the kernel ran
this venv's python, and the printed numbers."""

import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name):
    """Execute notebooks/<name> from the repository root; returns (all text output, #PNGs)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = os.environ.get("LRPGRAPH_NB_SMALL")
    os.environ["LRPGRAPH_NB_SMALL"] = "1"  # the kernel inherits the environment
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(ROOT)}})
        client.execute()  # raises CellExecutionError on any failing cell
    finally:
        if old is None:
            os.environ.pop("LRPGRAPH_NB_SMALL", None)
        else:
            os.environ["LRPGRAPH_NB_SMALL"] = old
    text, pngs = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text.append(out["text"])
            data = out.get("data", {})
            pngs += "image/png" in data
            if "text/plain" in data:
                text.append(data["text/plain"])
    text = "".join(text)
    m = re.search(r"^python: (.+)$", text, re.M)
    assert m, "the notebook did not print its python"
    assert Path(m.group(1).strip()).resolve() == Path(sys.executable).resolve()
    return text, pngs


def test_sglrp_paper_figure():
    text, pngs = run_notebook("sglrp_paper_figure.ipynb")
    assert "small mode" in text
    assert "4 methods: Grad-CAM, Guided Grad-CAM, LRP, SGLRP" in text
    assert "target 340 (zebra)" in text and "target 386 (elephant)" in text
    # on the top-1 class (positive logit) every method gives a non-zero map
    m = re.search(r"^top-1 \((\d+)\) non-zero maps: (.*)$", text, re.M)
    assert m, text
    assert m.group(2) == "{'Grad-CAM': True, 'Guided Grad-CAM': True, 'LRP': True, 'SGLRP': True}"
    for name in ("zebra (340)", "elephant (386)"):
        assert f"{name} non-zero maps: {{'Grad-CAM': True, 'Guided Grad-CAM': True" in text
    assert pngs == 4  # the input and the method grids for 340, 386 and the top-1 class


def test_quickstart():
    text, pngs = run_notebook("quickstart.ipynb")
    shares = re.findall(r"positive mass on the target object: ([0-9.]+), ([0-9.]+)", text)
    assert len(shares) == 3
    vals = [float(v) for pair in shares for v in pair]
    assert all(0.0 <= v <= 1.0 for v in vals)
    # the shipped model looks at the target object: SGLRP's positive relevance lies mostly on it
    assert min(float(v) for v in shares[1]) > 0.5, shares
    assert pngs == 2  # the grid and the overlay


def test_custom_rule():
    text, pngs = run_notebook("custom_rule.ipynb")
    diff = float(re.search(r"relative L1 difference between the maps: ([0-9.]+)", text).group(1))
    assert diff > 0.05  # the rule on block1_conv1 changes the map
    assert pngs == 1
