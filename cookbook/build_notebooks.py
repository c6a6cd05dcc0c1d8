"""Write each cookbook notebook from its percent-format script, outputs stripped.

    python cookbook/build_notebooks.py          # NN_name.py -> NN_name.ipynb, for every script
    python cookbook/build_notebooks.py --check  # exit 1 if a committed notebook is out of date

Edit the script, not the notebook. In a script, ``# %%`` starts a code cell and
``# %% [markdown]`` a markdown cell whose lines are ``# `` comments; comment lines before
the first marker (a header, ``# ruff: noqa``) stay out of the notebook.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
MARKERS = {"# %%": "code", "# %% [markdown]": "markdown"}
METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}


def parse_cells(text: str) -> list[tuple[str, str]]:
    """The (cell type, source) pairs of a percent-format script, blank edge lines dropped."""
    cells: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            if line.rstrip() not in MARKERS:
                raise ValueError(f"line {number}: unknown cell marker {line!r}")
            cells.append((MARKERS[line.rstrip()], []))
        elif (not cells or cells[-1][0] == "markdown") and line.strip():
            if not line.startswith("#"):
                raise ValueError(f"line {number}: code outside a code cell")
            if cells:  # a markdown line; before the first marker: the header, dropped
                cells[-1][1].append(line[2:] if line.startswith("# ") else line[1:])
        elif cells:
            cells[-1][1].append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build(script: Path) -> str:
    """The notebook text ``script`` produces (cell ids numbered: rebuilds diff cleanly)."""
    cells = [
        (new_markdown_cell if kind == "markdown" else new_code_cell)(source, id=f"cell-{i}")
        for i, (kind, source) in enumerate(parse_cells(script.read_text(encoding="utf-8")))
    ]
    return nbformat.writes(new_notebook(cells=cells, metadata=METADATA)) + "\n"


def stale(folder: Path = HERE) -> list[str]:
    """Notebooks in ``folder`` that differ from what their script produces, or lack one."""
    scripts = sorted(folder.glob("[0-9]*.py"))
    orphans = {nb.name for nb in folder.glob("[0-9]*.ipynb")} - {s.stem + ".ipynb" for s in scripts}
    changed = {
        s.stem + ".ipynb"
        for s in scripts
        if not s.with_suffix(".ipynb").exists()
        or s.with_suffix(".ipynb").read_text(encoding="utf-8") != build(s)
    }
    return sorted(orphans | changed)


def main(args: list[str]) -> int:
    if args == ["--check"]:
        if names := stale():
            print(f"out of date, run python cookbook/build_notebooks.py: {names}", file=sys.stderr)
        return 1 if names else 0
    if args:
        sys.exit(__doc__)
    for script in sorted(HERE.glob("[0-9]*.py")):
        script.with_suffix(".ipynb").write_text(build(script), encoding="utf-8")
        print(f"wrote {script.stem}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
