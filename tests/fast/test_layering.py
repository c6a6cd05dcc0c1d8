"""The core (models, decoding, rewards) imports no LangChain; only the LangChain layer
(the ``chat_models`` package, callbacks, middleware, demo) does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANGCHAIN_LAYER = ("chat_models", "callbacks", "middleware", "demo")
"""Modules and packages of ``langchain_aligned`` that may import LangChain."""

SCRIPT = """
import importlib, pkgutil, sys
import langchain_aligned, rewards
names = []
def walk(package):
    # Not pkgutil.walk_packages: it imports every subpackage, the LangChain layer's too.
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        parts = info.name.split(".")
        if parts[0] == "langchain_aligned" and parts[1] in {skip!r}:
            continue
        module = importlib.import_module(info.name)
        names.append(info.name)
        if info.ispkg:
            walk(module)
walk(langchain_aligned)
walk(rewards)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("langchain_core", "langchain", "langgraph", "langsmith"))
print(len(names), leaked)
"""


def test_core_imports_no_langchain():
    script = SCRIPT.replace("{skip!r}", repr(set(LANGCHAIN_LAYER)))
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    count, leaked = out.stdout.strip().split(" ", 1)
    assert int(count) >= 20  # every core module was imported
    assert leaked == "[]", f"core modules imported LangChain: {leaked}"


def test_only_the_langchain_layer_mentions_langchain_imports():
    offenders = []
    for path in list((ROOT / "langchain_aligned").rglob("*.py")) + list(
        (ROOT / "rewards").rglob("*.py")
    ):
        top = path.relative_to(ROOT).parts
        if top[0] == "langchain_aligned" and Path(top[1]).stem in LANGCHAIN_LAYER:
            continue
        text = path.read_text()
        if (
            "from langchain" in text.replace("from langchain_aligned", "")
            or "import langchain_core" in text
        ):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_no_module_imports_another_modules_private_name():
    # Shared parts live under public names in one place (e.g. decoding's strategy
    # parts); an underscore name belongs to its own module.
    import ast

    offenders = []
    for folder in ("langchain_aligned", "rewards", "benchmarks", "cookbook"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    offenders += [
                        f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}"
                        for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")
                    ]
    assert offenders == []


BLOCK_LANGCHAIN_ALIGNED = """
import importlib, pkgutil, sys

class Absent:
    # langchain_aligned is not installed: importing it fails, as on a machine with
    # only the rewards package.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "langchain_aligned":
            raise ImportError(f"{name} is not on the path")
        return None

sys.meta_path.insert(0, Absent())
import rewards
names = []
for info in pkgutil.walk_packages(rewards.__path__, "rewards."):
    importlib.import_module(info.name)
    names.append(info.name)
print(len(names))
"""


def test_rewards_imports_without_langchain_aligned():
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_LANGCHAIN_ALIGNED],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) >= 15  # every rewards module was imported


def test_rewards_never_imports_langchain_aligned_not_even_lazily():
    # What a scorer needs from a model comes through rewards.causal_lm's protocol;
    # langchain_aligned registers its loader as an entry point instead of being imported.
    import ast

    offenders = []
    for path in (ROOT / "rewards").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}"
                for name in names
                if name.split(".")[0] == "langchain_aligned"
            ]
    assert offenders == []


def import_graph() -> dict[str, set[str]]:
    """Every module of langchain_aligned and rewards → the modules of both it imports,
    lazy imports inside functions included (read from the syntax tree)."""
    import ast

    paths = {}
    for package in ("langchain_aligned", "rewards"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            paths[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                base = package[: len(package) - node.level + 1] if node.level else []
                prefix = ".".join([*base, *([node.module] if node.module else [])])
                # `from package import module` imports the module; `from module
                # import name` the module itself.
                candidates = [
                    f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in paths else prefix
                    for alias in node.names
                ]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in paths:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_either_package():
    graph = import_graph()
    assert len(graph) > 60 and "langchain_aligned.engines.base" in graph
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle():
    graph = import_graph()
    # Put back the cycle this house once had: the seam's select importing generate.
    graph["langchain_aligned.engines.select"].add("langchain_aligned.decoding.generate")
    assert [
        "langchain_aligned.decoding.generate",
        "langchain_aligned.engines.select",
    ] in cycles(graph)
