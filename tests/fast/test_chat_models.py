"""AlignedChatModel behaviour beyond the standard suites."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from scorers import CountingScorer
from tiny import tiny_pair

from langchain_aligned import AlignedChatModel, BestOfN, Sampling, SpeculativeRejection
from langchain_aligned.errors import InvalidInputError

PAIR = tiny_pair(0)


def make(**kwargs):
    params = {
        "model": PAIR,
        "strategy": BestOfN(n=3),
        "reward": CountingScorer(),
        "max_tokens": 12,
        "seed": 3,
    }
    params.update(kwargs)
    return AlignedChatModel(**params)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Recorder(BaseCallbackHandler):
    def __init__(self):
        self.events = []
        self.ends = []

    def on_custom_event(self, name, data, **kwargs):
        self.events.append(name)

    def on_llm_end(self, response, **kwargs):
        self.ends.append(response)


def test_construction_loads_nothing_and_validates():
    model = AlignedChatModel()  # the embedded default: no weights loaded here
    assert isinstance(model.strategy, SpeculativeRejection)
    for bad, needle in [
        ({"temperature": -1}, "temperature=-1"),
        ({"top_p": 2.0}, "top_p=2.0"),
        ({"max_tokens": 0}, "max_new_tokens=0"),
        ({"strategy": "bon"}, "strategy='bon'"),
    ]:
        with pytest.raises(InvalidInputError, match=needle):
            AlignedChatModel(**bad)


def test_metadata_on_invoke_and_stream_agree():
    model = make()
    reply = model.invoke("hello world")
    alignment = reply.response_metadata["alignment"]
    assert alignment["strategy"] == "best_of_n" and len(alignment["candidate_rewards"]) == 3
    assert reply.response_metadata["model_provider"] == "langchain_aligned"
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.usage_metadata["output_tokens"] == alignment["tokens_returned"]
    chunks = list(model.stream("hello world"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk  # ints summed, floats only once: merging must not raise
    assert merged.content == reply.content
    assert merged.response_metadata["alignment"]["reward"] == alignment["reward"]
    assert merged.usage_metadata["input_tokens"] == reply.usage_metadata["input_tokens"]


def test_greedy_degrades_and_says_so():
    reply = make(temperature=0).invoke("hello world")
    assert reply.response_metadata["alignment"]["num_candidates"] == 1
    assert "greedy" in reply.response_metadata["alignment"]["note"]


def test_events_reach_handlers_and_astream_events():
    recorder = Recorder()
    make(strategy=SpeculativeRejection(n=4, decision_tokens=2), callbacks=[recorder]).invoke(
        "why is the sun red"
    )
    assert "aligned.scored" in recorder.events and "aligned.done" in recorder.events
    assert recorder.ends[0].generations[0][0].message.response_metadata["alignment"]

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


def test_astream_cancellation_stops_promptly():
    model = make(strategy=Sampling(), max_tokens=200, seed=0)

    async def consume():
        async for _chunk in model.astream("hello"):
            break

    asyncio.run(consume())  # returns without decoding 200 tokens first
    assert model.invoke("hello").content is not None  # still usable


def test_tools_reach_the_prompt_and_tool_histories_render():
    model = make(strategy=Sampling())
    bound = model.bind_tools([add], tool_choice="add")
    reply = bound.invoke("add 1 and 2")
    assert isinstance(reply, AIMessage)
    history = [
        SystemMessage("be good"),
        HumanMessage("add 1 and 2"),
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        ToolMessage("3", tool_call_id="c1"),
    ]
    assert isinstance(bound.invoke(history), AIMessage)  # a conversation ending with a tool result


def test_tool_calls_are_parsed_with_ids():
    from langchain_aligned.chat_models import _split_tool_calls

    text, calls = _split_tool_calls(
        'Sure. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    )
    assert text == "Sure."
    assert calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1, "b": 2} and calls[0]["id"]


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([], "empty"),
        ([HumanMessage(content=[{"type": "image_url", "image_url": {"url": "x"}}])], "image_url"),
        ([HumanMessage("hi"), ToolMessage("3", tool_call_id="nope")], "tool_call_id='nope'"),
    ],
)
def test_bad_input_is_named_and_model_stays_usable(messages, needle):
    model = make(strategy=Sampling())
    with pytest.raises(InvalidInputError, match=needle):
        model.invoke(messages)
    assert model.invoke("hello").content is not None


def test_unrenderable_tool_is_named():
    with pytest.raises(InvalidInputError, match="tool 0"):
        make().bind_tools([object()])
