"""A newcomer's first script runs on vLLM in process (issue 28, defect 9): top-level
code, no ``if __name__ == "__main__":`` guard, a real vLLM engine, in a subprocess.

vLLM's spawned engine process re-imports the main script; without the library's choice
of an in-process engine core (:mod:`langchain_aligned.engines.vllm_startup`) this
script fails inside vLLM's engine start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = """
import rewards
from langchain_aligned import AlignedChatModel, BestOfN

llm = AlignedChatModel(
    model="smollm2-135m-instruct",
    engine="vllm",
    strategy=BestOfN(n=2),
    reward=rewards.FunctionScorer(lambda conversation, reply: float(len(reply)), per_item=True),
    max_new_tokens=12,
    seed=0,
)
reply = llm.invoke("Give me one tip for sleeping better.")
print("REPLY:", reply.response_metadata["alignment"]["reward"] > 0, bool(reply.content))
"""


def test_an_unguarded_script_builds_the_engine_and_answers(tmp_path):
    script = tmp_path / "first_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    # The tier's vLLM settings (conftest) travel in the environment; the user's choice
    # of engine-core process does not exist yet in a newcomer's shell.
    environment = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "REPLY: True True" in done.stdout, done.stdout[-2000:]
