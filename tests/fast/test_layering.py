"""The core (models, decoding, rewards) imports no LangChain; only the chat model,
callbacks and middleware modules do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANGCHAIN_MODULES = ("chat_models", "callbacks", "middleware", "demo")

SCRIPT = """
import importlib, pkgutil, sys
import langchain_aligned, rewards
names = []
for package in (langchain_aligned, rewards):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.rsplit(".", 1)[-1] in {skip!r}:
            continue
        importlib.import_module(info.name)
        names.append(info.name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("langchain_core", "langchain", "langgraph", "langsmith"))
print(len(names), leaked)
"""


def test_core_imports_no_langchain():
    script = SCRIPT.replace("{skip!r}", repr(set(LANGCHAIN_MODULES)))
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
        if path.stem in LANGCHAIN_MODULES and path.parent.name == "langchain_aligned":
            continue
        text = path.read_text()
        if (
            "from langchain" in text.replace("from langchain_aligned", "")
            or "import langchain_core" in text
        ):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
