"""Run a cookbook notebook top to bottom in a fresh kernel of this interpreter.

Shared by the slow test tier (``tests/slow/test_cookbook.py``, small settings) and
``benchmarks/bench_cookbook.py`` (timing with the notebooks' default settings).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

COOKBOOK = Path(__file__).resolve().parent
# The notebooks, not their percent-format sources (``NN_name.py``, built by build_notebooks.py).
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
KERNEL = "langchain-aligned-cookbook"


def run_notebook(path: Path, *, small: bool, timeout: int = 600) -> tuple[float, list[Any]]:
    """Execute ``path``; return (seconds, error outputs). ``small`` sets COOKBOOK_SMALL=1."""
    notebook = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("COOKBOOK_SMALL", "MPLBACKEND", "JUPYTER_PATH")}
    with tempfile.TemporaryDirectory() as jupyter_path:
        # The kernel must be this interpreter (the venv), not whatever `python` is on
        # PATH: write a kernel spec that names it explicitly.
        spec_dir = Path(jupyter_path) / "kernels" / KERNEL
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "langchain-aligned cookbook",
                    "language": "python",
                }
            )
        )
        os.environ["JUPYTER_PATH"] = jupyter_path
        os.environ["MPLBACKEND"] = "Agg"
        if small:
            os.environ["COOKBOOK_SMALL"] = "1"
        else:
            os.environ.pop("COOKBOOK_SMALL", None)
        try:
            client = NotebookClient(
                notebook,
                timeout=timeout,
                kernel_name=KERNEL,
                resources={"metadata": {"path": str(COOKBOOK)}},
            )
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    return seconds, errors
