"""Where vLLM's engine core runs: in its own process (vLLM's default) or in this one.

vLLM starts its engine core in a new process with ``spawn``, and ``spawn`` re-imports
the main script in that process. A script that builds the engine in top-level code,
outside an ``if __name__ == "__main__":`` block — what a newcomer writes first — then
builds it again in the child, which fails inside vLLM ("An attempt has been made to
start a new process before the current process has finished its bootstrapping
phase"). Notebooks, ``python -c`` and the REPL have no script to re-import; guarded
scripts skip the block in the child: both are safe.

So before the first engine is built, :func:`choose_engine_core` looks at what is
calling: if it is a script's unguarded top-level code, the engine core runs in this
process (vLLM's ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, which needs no re-import);
otherwise vLLM's default stays (its own process, which overlaps the engine's
scheduling with this process's work). A value the user set is never changed.
"""

from __future__ import annotations

import ast
import logging
import os
import sys
import threading
from types import FrameType

__all__ = ["MULTIPROCESSING_ENV", "choose_engine_core", "unguarded_main_line"]

logger = logging.getLogger(__name__)

MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
"""vLLM's switch: ``"1"`` (its default) runs the engine core in a spawned process,
``"0"`` in the calling process."""


def _main_module_frame(main_globals: dict[str, object]) -> FrameType | None:
    """The frame running the main module's top-level code, if it is on the stack of
    this thread or of the main thread (the engine may be built on a worker thread
    while the main thread waits in the script's top-level call)."""
    stacks: list[FrameType | None] = [sys._getframe(1)]
    stacks.append(sys._current_frames().get(threading.main_thread().ident or -1))
    for frame in stacks:
        while frame is not None:
            if frame.f_globals is main_globals and frame.f_code.co_name == "<module>":
                return frame
            frame = frame.f_back
    return None


def _is_main_guard(node: ast.stmt) -> bool:
    """Whether ``node`` is ``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    operands = [test.left, test.comparators[0]]
    names = [o.id for o in operands if isinstance(o, ast.Name)]
    constants = [o.value for o in operands if isinstance(o, ast.Constant)]
    return names == ["__name__"] and constants == ["__main__"]


def unguarded_main_line() -> int | None:
    """The line of the main script that is calling, when that line is top-level code
    outside an ``if __name__ == "__main__":`` block (the code ``spawn`` would run again);
    None when the caller is safe to spawn from (no main script, a guarded block, or the
    main module is not on the call stack)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        # A notebook, `python -c` or the REPL: spawn re-imports nothing.
        return None
    frame = _main_module_frame(vars(main))
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        # The script cannot be read back: assume the worst, it is unguarded.
        return line
    for node in tree.body:
        end = node.end_lineno if node.end_lineno is not None else node.lineno
        if node.lineno <= line <= end:
            return None if _is_main_guard(node) else line
    return line


def choose_engine_core() -> None:
    """Run vLLM's engine core in this process when a spawned one would re-run the
    calling script (see the module docstring); leave a user's own setting alone."""
    if MULTIPROCESSING_ENV in os.environ:
        return
    line = unguarded_main_line()
    if line is None:
        return
    os.environ[MULTIPROCESSING_ENV] = "0"
    logger.info(
        "vLLM's engine core runs in this process (%s=0): the engine is built by top-level "
        "code of %s (line %d), which vLLM's spawned engine process would run again. Put "
        'that code under `if __name__ == "__main__":` to keep vLLM\'s own process.',
        MULTIPROCESSING_ENV,
        getattr(sys.modules.get("__main__"), "__file__", "the main script"),
        line,
    )
