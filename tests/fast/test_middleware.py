"""AlignmentMiddleware picks the best of n replies of any chat model."""

from __future__ import annotations

import asyncio

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import rewards
from langchain_aligned import AlignmentMiddleware
from langchain_aligned.errors import InvalidInputError

LENGTH = rewards.FunctionScorer(lambda c, texts: [float(len(t)) for t in texts], name="length")


def _fake():
    replies = [
        AIMessage(content="bad"),
        AIMessage(content="the best answer here"),
        AIMessage(content="ok"),
    ]
    return GenericFakeChatModel(messages=iter(replies))


def test_sync_picks_highest_reward():
    agent = create_agent(_fake(), [], middleware=[AlignmentMiddleware(reward=LENGTH, n=3)])
    last = agent.invoke({"messages": [("user", "hi")]})["messages"][-1]
    assert last.content == "the best answer here"
    assert last.response_metadata["alignment"]["candidate_rewards"] == [3.0, 20.0, 2.0]


def test_async_picks_highest_reward():
    agent = create_agent(_fake(), [], middleware=[AlignmentMiddleware(reward=LENGTH, n=3)])
    last = asyncio.run(agent.ainvoke({"messages": [("user", "hi")]}))["messages"][-1]
    assert last.content == "the best answer here"


def test_tool_call_validity_decides():
    from rewards.tool_call import ToolCallScorer

    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
            },
        },
    }
    replies = [
        AIMessage(content="I think it is 3"),
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "x"}]),
    ]
    middleware = AlignmentMiddleware(reward=ToolCallScorer([tool]), n=2)
    responses = iter([type("R", (), {"result": [m]})() for m in replies])
    request = type("Req", (), {"messages": [], "system_message": None, "model": None})()
    best = middleware.wrap_model_call(request, lambda _request: next(responses))
    assert best.result[0].tool_calls[0]["name"] == "add"


def test_bad_config():
    with pytest.raises(InvalidInputError, match="n=0"):
        AlignmentMiddleware(reward=LENGTH, n=0)
    with pytest.raises(InvalidInputError, match="reward"):
        AlignmentMiddleware(reward=None)


def test_agent_tools_join_the_reward_and_stats_are_filled():
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    replies = [
        AIMessage(content="a longer answer with no call in it"),
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        AIMessage(content="3"),
        AIMessage(content="the answer is 3"),
    ]

    class ToolFake(GenericFakeChatModel):
        def bind_tools(self, tools, **kwargs):
            return self

    agent = create_agent(
        ToolFake(messages=iter(replies)),
        [add],
        middleware=[AlignmentMiddleware(reward=LENGTH, n=2)],
    )
    messages = agent.invoke({"messages": [("user", "add 1 and 2")]}, {"recursion_limit": 6})[
        "messages"
    ]
    # ToolCallScorer (weight 10) beats the length reward: the call is made and answered.
    call = next(m for m in messages if getattr(m, "tool_calls", None))
    assert call.tool_calls[0]["name"] == "add"
    assert call.response_metadata["alignment"]["strategy"] == "middleware_best_of_n"
    assert any(m.type == "tool" and m.content == "3" for m in messages)


def test_events_reach_handlers():
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.events = []

        def on_custom_event(self, name, data, **kwargs):
            self.events.append((name, data))

    recorder = Recorder()
    agent = create_agent(_fake(), [], middleware=[AlignmentMiddleware(reward=LENGTH, n=3)])
    agent.invoke({"messages": [("user", "hi")]}, {"callbacks": [recorder]})
    names = [name for name, _ in recorder.events]
    assert names == ["aligned.scored", "aligned.done"]
    assert recorder.events[0][1]["rewards"] == [3.0, 20.0, 2.0]

    async def collect():
        agent = create_agent(_fake(), [], middleware=[AlignmentMiddleware(reward=LENGTH, n=3)])
        return [
            e["name"]
            async for e in agent.astream_events({"messages": [("user", "hi")]}, version="v2")
            if e["event"] == "on_custom_event"
        ]

    assert asyncio.run(collect()) == ["aligned.scored", "aligned.done"]
