"""Every cookbook notebook runs top to bottom in a fresh kernel (slow tier).

Notebooks read ``COOKBOOK_SMALL=1`` (set here) to pick small settings, so each runs
in well under three minutes on a 2-core CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))


def test_cookbook_has_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {COOKBOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("COOKBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: outputs must be stripped in git"
    # The kernel must be this interpreter (the venv), not whatever `python` is on PATH:
    # write a kernel spec that names it explicitly.
    spec_dir = tmp_path / "kernels" / "langchain-aligned-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "langchain-aligned tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="langchain-aligned-test",
        resources={"metadata": {"path": str(COOKBOOK)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
