"""Sharing forward passes across the inputs of batch / abatch (chat_models/batching.py)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from typing import Any

import pytest
from chat_fakes import (
    CountingScorer,
    FailsOn,
    Recorder,
    alignment,
    core,
    make,
    user,
)
from langchain_core.callbacks import BaseCallbackHandler

from langchain_aligned import BestOfN, Sampling, SpeculativeRejection
from langchain_aligned.chat_models import batching
from langchain_aligned.decoding import AlignmentStats, Hooks, Result
from langchain_aligned.decoding.base import EVENT_DONE, EVENT_SCORED
from langchain_aligned.errors import InvalidInputError


@pytest.mark.parametrize("use_async", [False, True])
def test_batch_shares_forward_passes_and_matches_invoke(use_async):
    llm = make(strategy=BestOfN(n=2))
    prompts = ["why is the sun red", "what is a tiny model", "hello"]
    recorder = Recorder()
    config = {"callbacks": [recorder]}
    together = asyncio.run(llm.abatch(prompts, config)) if use_async else llm.batch(prompts, config)
    alone = [llm.invoke(p) for p in prompts]
    for shared, single in zip(together, alone, strict=True):
        # Same seed, own generators per candidate: sharing passes changes no reply.
        assert shared.content == single.content
        assert alignment(shared)["candidate_rewards"] == alignment(single)["candidate_rewards"]
        assert shared.usage_metadata == single.usage_metadata
        # One prefill for all six candidates (3 prompts × n=2), not one per prompt.
        assert alignment(shared)["prefill_passes"] == 1
        assert alignment(shared)["peak_batch_size"] == 6
    # Every input keeps its own run: one on_llm_end each, events routed to it.
    assert len(recorder.ends) == 3
    assert recorder.events.count(EVENT_DONE) == 3


def test_streaming_batch_streams_each_input_its_own_reply():
    # streaming=True makes each input's run stream internally; the shared decode must
    # route every text delta to its own input.
    prompts = ["why is the sun red", "hello"]
    for strategy in (Sampling(), BestOfN(n=2)):
        llm = make(strategy=strategy, streaming=True)
        together = llm.batch(prompts)
        assert [m.content for m in together] == [
            make(strategy=strategy).invoke(p).content for p in prompts
        ]
        # Catches per-input routing or seeding bugs that invoke shares (both would agree).
        reward = CountingScorer() if strategy.needs_reward else None
        assert [m.content for m in together] == [
            core(llm, user(p), reward=reward).text for p in prompts
        ]


def test_batch_with_a_failing_input_fails_only_that_input():
    llm = make(strategy=BestOfN(n=2))
    too_long = "word " * 400  # longer than the tiny model's 256-position context
    inputs = ["why is the sun red", too_long, "hello"]
    out = llm.batch(inputs, return_exceptions=True)
    assert isinstance(out[1], InvalidInputError) and "256" in str(out[1])
    assert [alignment(m)["candidate_rewards"] for m in (out[0], out[2])] == [
        alignment(llm.invoke(p))["candidate_rewards"] for p in (inputs[0], inputs[2])
    ]
    with pytest.raises(InvalidInputError):
        llm.batch(inputs)
    # Catches a failed batch leaving state behind that changes later replies.
    expected = core(llm, user("still usable"), reward=CountingScorer())
    assert llm.invoke("still usable").content == expected.text


def test_batch_under_max_concurrency_and_with_speculative_rejection():
    # max_concurrency=2 lets only two inputs in at a time: they are decoded in
    # groups of at most two, and every input still gets its own answer.
    llm = make(strategy=BestOfN(n=2))
    prompts = ["a", "b c", "d e f", "g"]
    out = llm.batch(prompts, {"max_concurrency": 2})
    assert [m.content for m in out] == [llm.invoke(p).content for p in prompts]
    assert all(alignment(m)["peak_batch_size"] <= 4 for m in out)
    # Speculative Rejection keeps each prompt's schedule and rejections, in one batch.
    spr = make(strategy=SpeculativeRejection(n=2, rejection_rate=0.5, decision_tokens=2))
    out = spr.batch(prompts[:2])
    assert [alignment(m)["peak_batch_size"] for m in out] == [4, 4]
    alone = [spr.invoke(p) for p in prompts[:2]]
    assert [m.content for m in out] == [m.content for m in alone]
    assert [alignment(m)["rounds"] for m in out] == [alignment(m)["rounds"] for m in alone]


def test_a_batch_failing_mid_decode_never_repeats_output():
    # Best-of-N scores the batch's requests in the order the inputs arrived (which
    # varies from run to run): those scored before the failing one have sent events;
    # they must get the error rather than be decoded (and send events) a second time.
    # Those that saw nothing are decoded alone and answered as if invoked.
    runs: dict[Any, list[str]] = {}

    class RunRecorder(BaseCallbackHandler):
        def on_custom_event(self, name, data, *, run_id, **kwargs):
            runs.setdefault(run_id, []).append(name)

    llm = make(strategy=BestOfN(n=2), reward=FailsOn("boom"))
    prompts = ["why is the sun red", "boom goes the model", "hello"]
    run_ids = [uuid.uuid4() for _ in prompts]
    configs = [{"callbacks": [RunRecorder()], "run_id": run_id} for run_id in run_ids]
    out = llm.batch(prompts, configs, return_exceptions=True)
    assert isinstance(out[1], Exception) and "boom" in str(out[1])
    assert all(names.count(EVENT_DONE) <= 1 for names in runs.values())
    assert all(names.count(EVENT_SCORED) <= 1 for names in runs.values())
    for index in (0, 2):
        if isinstance(out[index], Exception):
            assert EVENT_SCORED in runs.get(run_ids[index], [])  # it had seen output
            continue
        # Catches a re-decoded input getting another seed or a misattributed reward.
        reply = out[index]
        expected = core(llm, user(prompts[index]), reward=CountingScorer())
        assert reply.content == expected.text
        score = CountingScorer().score(user(prompts[index]), [reply.content])[0]
        assert alignment(reply)["reward"] == score and alignment(reply)["seed"] == 3
        assert reply.usage_metadata["output_tokens"] == alignment(reply)["tokens_returned"]
    assert (
        llm.invoke("still usable").content
        == core(llm, user("still usable"), reward=CountingScorer()).text
    )


class Named:
    """A call for the rendezvous: calls with the same group share a decode."""

    def __init__(self, name: str, group: str = "g") -> None:
        self.name, self.group = name, group

    def group_key(self) -> str:
        return self.group


def test_rendezvous_routes_output_and_isolates_a_failure():
    # A fake decode (the rendezvous takes any callable): the shared decode streams one
    # delta to every member in turn, then fails if a "bad" call is in the group; alone,
    # a call is answered by its name.
    groups: list[list[str]] = []

    def decode(calls, hooks):
        groups.append([c.name for c in calls])
        if len(calls) > 1:
            for index, call in enumerate(calls):
                if call.name == "bad":
                    raise RuntimeError("bad call")
                hooks.on_text(index, call.name)
        elif calls[0].name == "bad":
            raise RuntimeError("bad call")
        return [Result(c.name, [], "stop", AlignmentStats(strategy="fake")) for c in calls]

    seen: dict[str, list[str]] = {}

    def submit(name: str, outcomes: dict) -> None:
        hooks = Hooks(on_text=lambda request, delta: seen.setdefault(name, []).append(delta))
        try:
            outcomes[name] = batching.submit(Named(name), hooks, decode).text
        except RuntimeError as exc:
            outcomes[name] = exc

    for _ in range(5):  # arrival order varies: check the rule whatever it was
        groups.clear()
        seen.clear()
        outcomes: dict = {}
        with batching.sharing_batches(3):
            # Each thread runs in a copy of this context, as LangChain's batch threads do.
            threads = [
                threading.Thread(target=contextvars.copy_context().run, args=(submit, n, outcomes))
                for n in ("a", "bad", "c")
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        shared = groups[0]
        assert sorted(shared) == ["a", "bad", "c"]  # one shared decode for the batch
        before_bad = shared[: shared.index("bad")]
        assert isinstance(outcomes["bad"], RuntimeError)
        for name in ("a", "c"):
            if name in before_bad:  # its caller saw output of the shared decode
                assert isinstance(outcomes[name], RuntimeError) and seen[name] == [name]
            else:  # decoded again alone, seen once
                assert outcomes[name] == name and [name] in groups[1:]
                assert name not in seen
        # Routing: each member saw only its own deltas, as its request 0.
        assert all(deltas == [name] for name, deltas in seen.items())


def test_without_a_batch_a_call_is_decoded_alone():
    calls = []

    def decode(group, hooks):
        calls.append(len(group))
        return [Result("x", [], "stop", AlignmentStats(strategy="fake")) for _ in group]

    assert batching.submit(Named("a"), Hooks(), decode).text == "x" and calls == [1]
