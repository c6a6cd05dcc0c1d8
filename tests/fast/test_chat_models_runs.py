"""Runs and custom events: events reach the call's handlers on every path (chat_models/runs.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

from chat_fakes import (
    Recorder,
    make,
)
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.runnables import RunnableLambda

from langchain_aligned import SpeculativeRejection
from langchain_aligned.chat_models import runs as chat_runs
from langchain_aligned.decoding.base import EVENT_DONE


def test_events_reach_handlers_and_astream_events():
    recorder = Recorder()
    reply = make(
        strategy=SpeculativeRejection(n=4, decision_tokens=2), callbacks=[recorder]
    ).invoke("why is the sun red")
    assert "aligned.scored" in recorder.events and "aligned.done" in recorder.events
    # Catches on_llm_end reporting another message (or stale stats) than the caller gets.
    ended = recorder.ends[0].generations[0][0].message
    assert ended.content == reply.content
    assert ended.response_metadata["alignment"] == reply.response_metadata["alignment"]
    assert ended.response_metadata["alignment"]["strategy"] == "speculative_rejection"

    async def collect():
        # Inside a chain the streamed model's events attach to the parent run (a model
        # streamed on its own has no run to attach them to; see docs/chat_model.md).
        chain = RunnableLambda(lambda text: text) | make(
            strategy=SpeculativeRejection(n=4, decision_tokens=2)
        )
        return [
            e["name"]
            async for e in chain.astream_events("why is the sun red", version="v2")
            if e["event"] == "on_custom_event"
        ]

    names = asyncio.run(collect())
    assert "aligned.done" in names


def test_events_reach_handlers_on_every_path():
    class AsyncRecorder(AsyncCallbackHandler):
        def __init__(self):
            self.events = []

        async def on_custom_event(self, name, data, **kwargs):
            self.events.append(name)

    strategy = SpeculativeRejection(n=4, decision_tokens=2)
    sync_streaming = Recorder()
    make(strategy=strategy, streaming=True).invoke("why", config={"callbacks": [sync_streaming]})
    assert "aligned.round" in sync_streaming.events and "aligned.done" in sync_streaming.events
    for use_stream in (False, True):
        recorder = AsyncRecorder()
        model = make(strategy=strategy, streaming=use_stream)
        asyncio.run(model.ainvoke("why", config={"callbacks": [recorder]}))
        assert "aligned.round" in recorder.events and "aligned.done" in recorder.events


def test_async_calls_with_a_synchronous_handler_do_not_wait_on_each_other(monkeypatch):
    # LangChain runs synchronous handlers in the loop's default executor. Decoding must
    # not sit in that pool: with a 2-thread default pool and 4 concurrent calls, decoding
    # threads there would wait for event handlers that can never get a thread.
    monkeypatch.setattr(chat_runs, "EVENT_TIMEOUT_SECONDS", 2.0)  # a stall fails fast
    runs: dict[Any, list[str]] = {}

    class RunRecorder(BaseCallbackHandler):
        def on_custom_event(self, name, data, *, run_id, **kwargs):
            runs.setdefault(run_id, []).append(name)

    llm = make(strategy=SpeculativeRejection(n=4, decision_tokens=2), callbacks=[RunRecorder()])
    prompts = ["why is the sun red", "hello", "what", "the cat sat"]

    async def run():
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=2)
        )
        return await asyncio.gather(*(llm.ainvoke(p) for p in prompts))

    start = time.perf_counter()
    asyncio.run(run())
    # Every call's events arrived, none dropped after a timeout.
    assert sorted(names.count(EVENT_DONE) for names in runs.values()) == [1, 1, 1, 1]
    assert time.perf_counter() - start < 60  # a stall would cost 2 s per event
