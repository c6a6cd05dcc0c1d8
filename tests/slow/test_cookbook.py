"""Every cookbook notebook runs top to bottom in a fresh kernel (slow tier).

Notebooks read ``COOKBOOK_SMALL=1`` (set by the runner here) to pick small settings;
their run time with default settings is measured by ``benchmarks/bench_cookbook.py``.
Each notebook is built from its script ``cookbook/NN_name.py`` by
``python cookbook/build_notebooks.py`` (``tests/fast/test_cookbook_build.py`` checks it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cookbook"))
from runner import COOKBOOK, NOTEBOOKS, run_notebook


def test_cookbook_has_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {COOKBOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: outputs must be stripped in git"
    _, errors = run_notebook(path, small=True, timeout=600)
    assert not errors
