"""The streamed engine seam (langchain_aligned.engines.streamed): streams consumed in
lockstep give exactly the transformers engine's results.

The streams here come from this library's own transformers engine, one request per
candidate, each sampled with the candidate's seed and sent ahead by a random number of
tokens, the way a vLLM engine or server sends them. Every strategy that runs on the
seam must then return what it returns on the batched engine, token for token, with
the same rounds: the lockstep, the reply rules, the aborts and the statistics are
what differs, so they are what these tests see.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from scorers import CountingScorer, RaisingScorer
from tiny import tiny_pair

from langchain_aligned import BestOfN, Hooks, Sampling, SpeculativeRejection
from langchain_aligned.decoding import SamplingParams, build_requests, engine_for
from langchain_aligned.decoding.params import make_generator
from langchain_aligned.engines import StreamedEngine, TokenDelta
from langchain_aligned.engines.base import Candidate, DecodeCancelled
from langchain_aligned.errors import EngineError, RewardError
from langchain_aligned.models import load_model

HANDLE = load_model(tiny_pair(0))
PROMPTS = ["why is the sun red", "hello world", "what is a good answer"]


class LocalStreams(StreamedEngine):
    """A streamed engine whose requests run on the transformers engine, one row each,
    and arrive ahead of the lockstep by 1–3 tokens in a random order."""

    name = "local-streams"

    def __init__(self, rng: random.Random, finish_reason: str | None = None) -> None:
        super().__init__(HANDLE)
        self.inner = engine_for(HANDLE)
        self.rng = rng
        self.requests: dict[int, tuple] = {}
        self.aborted: list[Candidate] = []
        self.started = 0
        self.forced_reason = finish_reason

    def start_requests(self, state, params):
        for candidate in state.candidates:
            shadow = Candidate(
                candidate.request,
                candidate.index,
                list(state.prompts[id(candidate)]),
                generator=None if params.greedy else make_generator(candidate.seed),
            )
            # The engine knows the length cap it is given, not the stop strings.
            limited = dataclasses.replace(
                params, stop=(), max_new_tokens=self.room(candidate, params)
            )
            self.requests[id(candidate)] = (shadow, self.inner.prefill([shadow]), limited)
            self.started += 1

    def wait_for_tokens(self, state):
        # In candidate order, so the random schedule repeats (``running`` is a set of ids).
        keys = sorted(
            (key for key in state.running if key in self.requests),
            key=lambda key: (self.requests[key][0].request, self.requests[key][0].index),
        )
        for key in self.rng.sample(keys, k=self.rng.randint(1, len(keys))):
            shadow, inner_state, params = self.requests[key]
            tokens_before, logprobs_before = len(shadow.token_ids), len(shadow.token_logprobs)
            for _ in range(self.rng.randint(1, 3)):
                if inner_state.num_rows:
                    self.inner.step(inner_state, params)
            reason = shadow.finish_reason
            if self.forced_reason and len(shadow.token_ids) >= 2:
                reason = self.forced_reason
            if reason is not None:
                del self.requests[key]
            state.receive(
                key,
                TokenDelta(
                    shadow.token_ids[tokens_before:],
                    shadow.token_logprobs[logprobs_before:],
                    reason,
                ),
            )

    def abort_requests(self, state, candidates):
        for candidate in candidates:
            self.requests.pop(id(candidate), None)
            self.aborted.append(candidate)


def _results(engine, strategy, seed, **params):
    options = {"temperature": 1.0, "top_k": 20, "max_new_tokens": 24, **params}
    requests = build_requests(engine, PROMPTS, SamplingParams(**options), seed=seed)
    return strategy.run(engine, requests, reward=CountingScorer(), hooks=Hooks())


STRATEGIES = [
    Sampling(),
    BestOfN(n=4),
    SpeculativeRejection(n=6, rejection_rate=0.5, decision_tokens=3),
    SpeculativeRejection(n=8, rejection_rate=0.7, decision_tokens=2),
    SpeculativeRejection(n=6, rejection_rate=0.5, memory_budget_slots=90),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: repr(s)[:60])
@pytest.mark.parametrize("seed", range(3))
def test_streams_in_lockstep_give_the_transformers_engines_results(strategy, seed):
    streams = LocalStreams(random.Random(seed))
    expected = _results(engine_for(HANDLE), strategy, seed)
    got = _results(streams, strategy, seed)
    for a, b in zip(expected, got, strict=True):
        assert b.token_ids == a.token_ids and b.text == a.text
        assert b.finish_reason == a.finish_reason
        assert b.stats.candidate_rewards == a.stats.candidate_rewards
        assert b.stats.rounds == a.stats.rounds
        assert b.stats.tokens_generated == a.stats.tokens_generated
    # Every request either ended on its own or was aborted: none is left running.
    assert streams.requests == {}


def test_rejected_candidates_are_aborted_at_their_round():
    streams = LocalStreams(random.Random(0))
    results = _results(streams, SpeculativeRejection(n=8, decision_tokens=3), seed=1)
    rejected = sum(r.rejected for result in results for r in result.stats.rounds)
    assert rejected > 0 and streams.started == 8 * len(PROMPTS)
    # Only rejected candidates are aborted (a finished one ended on its own), and a
    # rejected candidate's request was aborted unless its stream had already ended.
    assert streams.aborted and all(not c.finished for c in streams.aborted)
    assert len(streams.aborted) <= rejected
    assert streams.requests == {}
    decision_tokens = {r.decision_token for result in results for r in result.stats.rounds}
    assert all(len(c.token_ids) in decision_tokens for c in streams.aborted)


@pytest.mark.parametrize("seed", range(3))
def test_stop_strings_cut_where_the_transformers_engine_cuts(seed):
    for strategy in (Sampling(), BestOfN(n=3)):
        expected = _results(engine_for(HANDLE), strategy, seed, stop=("the",), max_new_tokens=30)
        streams = LocalStreams(random.Random(seed))
        got = _results(streams, strategy, seed, stop=("the",), max_new_tokens=30)
        assert [r.text for r in got] == [r.text for r in expected]
        assert [r.finish_reason for r in got] == [r.finish_reason for r in expected]
        assert streams.requests == {}


def test_cancelling_aborts_every_request():
    streams = LocalStreams(random.Random(0))
    steps = []
    requests = build_requests(streams, PROMPTS, SamplingParams(max_new_tokens=24), seed=0)
    hooks = Hooks(should_stop=lambda: steps.append(1) or len(steps) > 5)
    with pytest.raises(DecodeCancelled):
        BestOfN(n=4).run(streams, requests, reward=CountingScorer(), hooks=hooks)
    assert streams.requests == {}


def test_a_request_the_engine_aborts_is_an_engine_error():
    streams = LocalStreams(random.Random(0), finish_reason="abort")
    with pytest.raises(EngineError, match="finish_reason='abort' after"):
        _results(streams, BestOfN(n=2), seed=0)


class _CallbackFailed(Exception):
    """Raised by a test callback."""


def _raise_in_round(name, data):
    if name == "aligned.round":
        raise _CallbackFailed("handler failed")


def _cancel_after_first_round():
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 4

    return should_stop


EXIT_PATHS = {
    # A reward that raises in the first round (step 3), with every candidate alive.
    "reward error": (dict(reward=RaisingScorer()), RewardError),
    # A callback of the round event raises (step 4, after the reward call).
    "callback error": (dict(hooks=Hooks(on_event=_raise_in_round)), _CallbackFailed),
    # The caller cancels while the survivors decode.
    "cancellation": (dict(hooks=Hooks(should_stop=_cancel_after_first_round())), DecodeCancelled),
}


@pytest.mark.parametrize("path", EXIT_PATHS)
def test_every_way_out_of_speculative_rejection_aborts_what_is_still_running(path):
    # Defect 1 of issue 28: a reward that raised in a round left the alive requests
    # running on the engine (on a server: KV blocks held, tokens decoded for nobody).
    streams = LocalStreams(random.Random(0))
    requests = build_requests(streams, PROMPTS, SamplingParams(max_new_tokens=24), seed=0)
    options, error = EXIT_PATHS[path]
    options = {"reward": CountingScorer(), "hooks": Hooks(), **options}
    with pytest.raises(error):
        SpeculativeRejection(n=4, decision_tokens=3).run(streams, requests, **options)
    assert streams.started == 4 * len(PROMPTS)
    # Nothing is left running: every request ended on its own or was aborted.
    assert streams.requests == {}
    assert streams.aborted
