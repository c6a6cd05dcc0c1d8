"""The committed cookbook notebooks are what their percent-format scripts produce.

Each ``cookbook/NN_name.ipynb`` is built from ``cookbook/NN_name.py`` by
``python cookbook/build_notebooks.py``: editing a script without rebuilding fails here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
_spec = importlib.util.spec_from_file_location("build_notebooks", COOKBOOK / "build_notebooks.py")
assert _spec is not None and _spec.loader is not None
build_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_notebooks)

SCRIPTS = sorted(COOKBOOK.glob("[0-9]*.py"))

SCRIPT = """\
# A header comment, left out of the notebook.
# ruff: noqa: E402

# %% [markdown]
# # Title
#
# Some *prose*.

# %%
import os

SMALL = os.environ.get("COOKBOOK_SMALL") == "1"


# %%
def f():
    return 1


print(f())
"""

CELLS = [
    ("markdown", "# Title\n\nSome *prose*."),
    ("code", 'import os\n\nSMALL = os.environ.get("COOKBOOK_SMALL") == "1"'),
    ("code", "def f():\n    return 1\n\n\nprint(f())"),
]


def test_every_notebook_has_a_script():
    notebooks = sorted(p.stem for p in COOKBOOK.glob("*.ipynb"))
    assert notebooks, f"no notebooks in {COOKBOOK}"
    assert notebooks == [p.stem for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_committed_notebook_is_built_from_its_script(script):
    committed = script.with_suffix(".ipynb").read_text(encoding="utf-8")
    assert committed == build_notebooks.build(script), (
        f"{script.name} changed: run python cookbook/build_notebooks.py"
    )


def test_nothing_is_stale():
    assert build_notebooks.stale() == []


def test_script_cells_round_trip(tmp_path):
    assert build_notebooks.parse_cells(SCRIPT) == CELLS
    script = tmp_path / "01_example.py"
    script.write_text(SCRIPT)
    notebook = nbformat.reads(build_notebooks.build(script), as_version=4)
    nbformat.validate(notebook)
    assert [(c.cell_type, c.source) for c in notebook.cells] == CELLS
    assert [c.id for c in notebook.cells] == ["cell-0", "cell-1", "cell-2"]
    assert all(c.outputs == [] and c.execution_count is None for c in notebook.cells[1:])
    assert notebook.metadata.kernelspec.name == "python3"


def test_stale_finds_edited_missing_and_orphan_notebooks(tmp_path):
    script = tmp_path / "01_example.py"
    script.write_text(SCRIPT)
    assert build_notebooks.stale(tmp_path) == ["01_example.ipynb"]  # never built
    script.with_suffix(".ipynb").write_text(build_notebooks.build(script))
    assert build_notebooks.stale(tmp_path) == []
    script.write_text(SCRIPT.replace("return 1", "return 2"))
    assert build_notebooks.stale(tmp_path) == ["01_example.ipynb"]  # edited, not rebuilt
    script.unlink()
    assert build_notebooks.stale(tmp_path) == ["01_example.ipynb"]  # notebook without script


@pytest.mark.parametrize(
    "text",
    ["x = 1\n# %%\ny = 2\n", "# %% [markdown]\nnot a comment\n", "# %% [raw]\n# text\n"],
    ids=["code-before-first-marker", "markdown-not-a-comment", "unknown-marker"],
)
def test_malformed_scripts_are_rejected(text):
    with pytest.raises(ValueError):
        build_notebooks.parse_cells(text)
