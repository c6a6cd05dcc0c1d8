"""Where vLLM's engine core runs (issue 28, defect 9): in this process exactly when a
spawned one would re-run the calling script's top-level code.

Each case runs a real script in a fresh interpreter, since what is decided depends on
the process's main module; vLLM itself is not needed (its real start from an unguarded
script is on the vLLM tier, tests/vllm/test_vllm_startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = """
import json, os
from langchain_aligned.engines.vllm_startup import choose_engine_core, unguarded_main_line
def report():
    line = unguarded_main_line()
    choose_engine_core()
    print(json.dumps({"line": line, "env": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")}))
"""

SCRIPTS = {
    # What a newcomer writes: the call is top-level code.
    "unguarded": (PROBE + "report()\n", True),
    "guarded": (PROBE + 'if __name__ == "__main__":\n    report()\n', False),
    "guarded, reversed": (PROBE + 'if "__main__" == __name__:\n    report()\n', False),
    "guarded, through main()": (
        PROBE + 'def main():\n    report()\nif __name__ == "__main__":\n    main()\n',
        False,
    ),
    # Another `if` is not a guard: spawn would run it again.
    "other if": (PROBE + "if True:\n    report()\n", True),
}


def calling_line(source: str) -> int:
    """The script's line (1-based) of the last call to report()."""
    lines = source.splitlines()
    return max(i for i, text in enumerate(lines, 1) if text.strip() == "report()")


def run_script(tmp_path, source: str, env: dict[str, str] | None = None) -> dict:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    environment = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", SCRIPTS)
def test_the_engine_core_stays_in_process_only_for_unguarded_top_level_code(tmp_path, case):
    source, unguarded = SCRIPTS[case]
    seen = run_script(tmp_path, source)
    assert seen["line"] == (calling_line(source) if unguarded else None)
    assert seen["env"] == ("0" if unguarded else None)


def test_a_users_own_setting_is_kept(tmp_path):
    source = SCRIPTS["unguarded"][0]
    seen = run_script(tmp_path, source, {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    assert seen == {"line": calling_line(source), "env": "1"}


def test_no_main_script_spawns_safely():
    # `python -c` (like a notebook or the REPL) has no script for spawn to re-import.
    code = PROBE + "report()\n"
    environment = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"line": None, "env": None}


def test_a_worker_thread_sees_the_scripts_top_level_call(tmp_path):
    # The chat model may build its engine on a worker thread while the main thread
    # waits in the script's top-level invoke().
    source = PROBE.replace(
        "def report():", "def report():\n    return in_thread()\ndef check():"
    ) + (
        "import threading\n"
        "def in_thread():\n"
        "    worker = threading.Thread(target=check)\n"
        "    worker.start()\n"
        "    worker.join()\n"
        "report()\n"
    )
    seen = run_script(tmp_path, source)
    assert seen == {"line": calling_line(source), "env": "0"}
