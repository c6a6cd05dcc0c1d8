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
