"""Decoding in worker threads: concurrency and cancellation (chat_models/workers.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from chat_fakes import (
    PAIR,
    core,
    make,
    user,
)

from langchain_aligned import AlignedChatModel, Sampling
from langchain_aligned.decoding import DecodeCancelled, Hooks


def test_threads_and_tasks_each_get_their_own_answer():
    prompts = [
        "hello world",
        "why is the sun red",
        "what",
        "the cat sat",
        "good answer",
        "yes no",
        "red blue",
        "sun moon",
    ]
    model = make(strategy=Sampling())
    expected = [model.invoke(p).content for p in prompts]
    got: dict[int, str] = {}

    def worker(i):
        got[i] = model.invoke(prompts[i]).content

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(8)] == expected

    async def run_tasks():
        return await asyncio.gather(*(model.ainvoke(p) for p in prompts))

    assert [r.content for r in asyncio.run(run_tasks())] == expected


class SlowSampling(Sampling):
    """Sampling slowed down (10 ms per streamed token), recording how each run ended."""

    def __init__(self, outcomes: list) -> None:
        object.__setattr__(self, "outcomes", outcomes)

    def run(self, engine, requests, *, reward=None, hooks=None):
        on_text = hooks.on_text if hooks is not None else None

        def slow(request, delta):
            time.sleep(0.01)
            on_text(request, delta)

        slowed = Hooks(
            on_event=hooks.on_event if hooks else None,
            on_text=slow if on_text is not None else None,
            should_stop=hooks.should_stop if hooks else None,
        )
        try:
            results = super().run(engine, requests, reward=reward, hooks=slowed)
        except DecodeCancelled:
            self.outcomes.append(("cancelled", time.perf_counter()))
            raise
        self.outcomes.append(("done", time.perf_counter()))
        return results


def test_cancelled_astream_stops_decoding_promptly():
    outcomes: list = []
    model = AlignedChatModel(
        model=PAIR, strategy=SlowSampling(outcomes), max_tokens=200, seed=0, temperature=1.0
    )

    async def main():
        first = asyncio.Event()

        async def consume():
            async for _chunk in model.astream("hello"):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        cancelled_at = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):  # the worker notices within a forward pass or two
            if outcomes:
                break
            await asyncio.sleep(0.01)
        return cancelled_at

    cancelled_at = asyncio.run(main())
    assert outcomes and outcomes[0][0] == "cancelled"
    assert outcomes[0][1] - cancelled_at < 0.5  # 200 tokens would take > 2 s
    # Still usable, and a cancelled run leaves no state behind in the next reply.
    assert model.invoke("hello").content == core(model, user("hello")).text
