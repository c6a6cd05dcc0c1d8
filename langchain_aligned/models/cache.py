"""The per-machine cache: converted embedded models, distilled and aligned drafts.

Its root is ``$LANGCHAIN_ALIGNED_CACHE`` or ``~/.cache/langchain_aligned``. Work that
fills it (a GGUF conversion, a draft's training) runs once per machine: a file lock
makes exactly one process do it while the others wait for its result, and a folder is
written under a temporary name and renamed when complete, so a crash never leaves a
half-written folder that later loads would trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["cache_dir", "file_lock", "write_folder"]


def cache_dir() -> Path:
    """Directory holding the cache (created on demand)."""
    root = os.environ.get("LANGCHAIN_ALIGNED_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "langchain_aligned"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (several processes may fill the cache at
    once: one does the work, the others wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Fill ``folder`` by ``write(tmp)`` into a temporary sibling, then rename it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    try:
        write(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
