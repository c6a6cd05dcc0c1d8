"""LangChain ⇄ chat-format messages and replies built from results (chat_models/messages.py)."""

from __future__ import annotations

import pytest
from chat_fakes import (
    ADD_CALL,
    Scripted,
    add,
    make,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_aligned.chat_models.messages import render_reply, split_tool_calls, to_hf_messages
from langchain_aligned.errors import InvalidInputError

_CALL_1 = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
_CALL_2 = '<tool_call>{"name": "add", "arguments": {"a": 3, "b": 4}}</tool_call>'
_BARE = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
_BROKEN = "<tool_call>{not json</tool_call>"
_UNKNOWN = '<tool_call>{"name": "mul", "arguments": {"a": 1}}</tool_call>'
_BAD_ARGS = '<tool_call>{"name": "add", "arguments": "{oops"}</tool_call>'

# (reply text, content left, arguments of the calls made)
SPLIT_CASES = [
    pytest.param("Sure. " + _CALL_1, "Sure.", [{"a": 1, "b": 2}], id="tagged-call"),
    pytest.param(_CALL_1 + "\n" + _CALL_2, "", [{"a": 1, "b": 2}, {"a": 3, "b": 4}], id="two"),
    pytest.param(
        'Ann is {"name": "Ann", "age": 3}.', 'Ann is {"name": "Ann", "age": 3}.', [], id="prose"
    ),
    pytest.param('{"name": "Ann", "age": 3}', '{"name": "Ann", "age": 3}', [], id="prose-json"),
    pytest.param("Try " + _UNKNOWN, "Try " + _UNKNOWN, [], id="unknown-tool"),
    pytest.param(
        "Try " + _BROKEN + " then " + _CALL_1,
        "Try " + _BROKEN + " then",
        [{"a": 1, "b": 2}],
        id="broken-and-good",
    ),
    pytest.param(
        _UNKNOWN + " " + _CALL_1 + " " + _BAD_ARGS,
        _UNKNOWN + "  " + _BAD_ARGS,
        [{"a": 1, "b": 2}],
        id="unknown-and-bad-arguments-stay",
    ),
    pytest.param(_BARE + "\nThat adds them.", "That adds them.", [{"a": 1, "b": 2}], id="bare"),
    pytest.param(
        "Adding:\n" + _BARE + "\nDone.", "Adding:\n\nDone.", [{"a": 1, "b": 2}], id="bare-mid"
    ),
    pytest.param(
        'Use {"name": "Ann"} here: ' + _BARE,
        'Use {"name": "Ann"} here:',
        [{"a": 1, "b": 2}],
        id="bare-after-prose-json",
    ),
    pytest.param("No call {at all}.", "No call {at all}.", [], id="no-call"),
]


def test_tool_calls_are_parsed_with_ids():
    text, calls = split_tool_calls(
        'Sure. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>', {"add"}
    )
    assert text == "Sure."
    assert calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1, "b": 2} and calls[0]["id"]


@pytest.mark.parametrize(("text", "content", "args"), SPLIT_CASES)
def test_split_tool_calls_cuts_out_exactly_the_calls_to_bound_tools(text, content, args):
    left, calls = split_tool_calls(text, {"add", "other"})
    assert left == content
    assert [c["args"] for c in calls] == args
    assert all(c["name"] == "add" and c["type"] == "tool_call" for c in calls)
    assert len({c["id"] for c in calls}) == len(calls)
    assert all(c["id"].startswith("call_") for c in calls)
    # Without the tool bound nothing is a call and the text stays whole.
    assert split_tool_calls(text, {"other"}) == (text, [])


@pytest.mark.parametrize(
    ("text", "content", "args"),
    [SPLIT_CASES[0], SPLIT_CASES[2], SPLIT_CASES[5], SPLIT_CASES[7]],
)
def test_aimessage_content_keeps_all_but_calls_to_bound_tools(text, content, args):
    bound = make(strategy=Scripted(text)).bind_tools([add])
    reply = bound.invoke("add 1 and 2")
    assert reply.content == content
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("add", a) for a in args]
    assert reply.response_metadata["finish_reason"] == ("tool_calls" if args else "stop")
    merged = None
    for chunk in bound.stream("add 1 and 2"):
        merged = chunk if merged is None else merged + chunk
    assert merged.content == content
    assert [c["args"] for c in merged.tool_calls] == args


def test_tool_calls_reach_aimessage_on_invoke_and_stream():
    bound = make(strategy=Scripted("Let me add. " + ADD_CALL)).bind_tools([add])
    reply = bound.invoke("add 1 and 2")
    assert reply.tool_calls[0]["name"] == "add" and reply.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert reply.tool_calls[0]["id"].startswith("call_")
    assert reply.content == "Let me add."
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    merged = None
    for chunk in bound.stream("add 1 and 2"):
        merged = chunk if merged is None else merged + chunk
    assert merged.tool_calls[0]["args"] == {"a": 1, "b": 2} and merged.tool_calls[0]["id"]


def test_lenient_conversion_keeps_what_strict_conversion_refuses():
    image = HumanMessage(content=[{"type": "text", "text": "see"}, {"type": "image_url"}])
    orphan = ToolMessage("3", tool_call_id="gone", name="add")
    for messages, needle in (([image], "image_url"), ([orphan], "tool_call_id='gone'")):
        with pytest.raises(InvalidInputError, match=needle):
            to_hf_messages(messages)
    assert to_hf_messages([image, orphan], strict=False) == [
        {"role": "user", "content": "see"},
        {"role": "tool", "content": "3", "tool_call_id": "gone", "name": "add"},
    ]


def test_render_reply_writes_calls_that_split_tool_calls_reads_back():
    reply = AIMessage(
        content="Adding.", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]
    )
    text = render_reply(reply)
    assert text == "Adding.\n" + ADD_CALL
    content, calls = split_tool_calls(text, {"add"})
    assert content == "Adding." and [(c["name"], c["args"]) for c in calls] == [
        ("add", {"a": 1, "b": 2})
    ]
