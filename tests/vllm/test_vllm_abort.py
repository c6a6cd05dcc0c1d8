"""Every way out of a strategy leaves nothing running on a real vLLM engine (issue 28,
defect 1): a reward that raises in a round, a callback that raises, cancellation.

A request left running on vLLM holds its KV blocks and decodes for nobody; these tests
read vLLM's own view of its requests (the in-process engine's unfinished requests, the
server's ``vllm:num_requests_running`` gauge).
"""

from __future__ import annotations

import time

import httpx
import pytest

from langchain_aligned import Hooks, SpeculativeRejection
from langchain_aligned.decoding import DecodeCancelled, SamplingParams, build_requests
from langchain_aligned.engines.select import open_engine
from langchain_aligned.errors import RewardError

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["Give me one tip for sleeping better.", "How can I save money on groceries?"]
# Long replies that ignore the end-of-sequence token: a request left running would
# still be decoding long after the call returned.
PARAMS = SamplingParams(temperature=0.8, max_new_tokens=1024, ignore_eos=True)


class FailingInRounds:
    """A reward that raises on its first partial scoring (every candidate alive)."""

    name = "failing-in-rounds"

    def score(self, conversation, completions):
        raise RuntimeError("the reward model is down")


class Words:
    name = "words"

    def score(self, conversation, completions):
        return [float(len(set(text.split()))) for text in completions]


def _raise_in_round(name, data):
    if name == "aligned.round":
        raise KeyError("a handler failed")


def _stop_after(polls):
    calls = []
    return lambda: calls.append(1) or len(calls) > polls


EXIT_PATHS = {
    "reward error": (FailingInRounds(), Hooks(), RewardError),
    "callback error": (Words(), Hooks(on_event=_raise_in_round), KeyError),
    "cancellation": (Words(), Hooks(should_stop=_stop_after(12)), DecodeCancelled),
}


def _leave_by(engine, path):
    reward, hooks, error = EXIT_PATHS[path]
    requests = build_requests(engine, QUESTIONS, PARAMS, seed=0)
    with pytest.raises(error):
        SpeculativeRejection(n=4, decision_tokens=4).run(
            engine, requests, reward=reward, hooks=hooks
        )


@pytest.mark.parametrize("path", EXIT_PATHS)
def test_in_process_engine_runs_nothing_after_a_failed_call(vllm_engine, path):
    _leave_by(vllm_engine, path)
    assert vllm_engine.llm.llm_engine.get_num_unfinished_requests() == 0
    # The engine is still usable, and its next call is unaffected.
    requests = build_requests(vllm_engine, QUESTIONS[:1], SamplingParams(max_new_tokens=8), seed=0)
    (result,) = SpeculativeRejection(n=2).run(vllm_engine, requests, reward=Words())
    assert result.token_ids


def _running_on(url: str) -> float:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_running")
    )


@pytest.mark.parametrize("path", EXIT_PATHS)
def test_the_server_runs_nothing_after_a_failed_call(vllm_server, path):
    engine = open_engine(MODEL, "openai", {"base_url": vllm_server})
    _leave_by(engine, path)
    # The server notices a closed stream within a step or two; a leaked request would
    # decode its 1024 tokens (minutes on this CPU).
    deadline = time.monotonic() + 20
    while _running_on(vllm_server) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running_on(vllm_server) == 0
