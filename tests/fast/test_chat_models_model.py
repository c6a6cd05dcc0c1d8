"""The chat model's fields, validation and entry points (chat_models/model.py)."""

from __future__ import annotations

import pytest
from chat_fakes import (
    CountingScorer,
    add,
    core,
    make,
    user,
)
from langchain_core.messages import HumanMessage, ToolMessage

from langchain_aligned import AlignedChatModel, Sampling, SpeculativeRejection
from langchain_aligned.errors import InvalidInputError


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
    # Catches a layer that drops the seed/max_tokens/strategy or scores other text.
    expected = core(model, user("hello world"), reward=CountingScorer())
    assert reply.content == expected.text
    assert alignment["candidate_rewards"] == expected.stats.candidate_rewards
    assert alignment["seed"] == reply.response_metadata["seed"] == 3
    assert alignment["reward"] == CountingScorer().score(user("hello world"), [reply.content])[0]
    assert reply.usage_metadata["input_tokens"] == expected.stats.prompt_tokens
    chunks = list(model.stream("hello world"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk  # ints summed, floats only once: merging must not raise
    assert merged.content == reply.content
    assert merged.response_metadata["alignment"]["reward"] == alignment["reward"]
    assert merged.usage_metadata["input_tokens"] == reply.usage_metadata["input_tokens"]


@pytest.mark.parametrize("entry", ["invoke", "stream", "ainvoke", "astream"])
async def test_every_entry_point_decodes_through_the_one_stream(entry, monkeypatch):
    # One decode path (issue 27): invoke aggregates the stream that stream yields, so
    # every entry point goes through the same bridge, and gives the same reply.
    from langchain_aligned.chat_models import workers

    bridged = []
    for name in ("decode_in_thread", "decode_in_worker"):
        original = getattr(workers, name)

        def counting(*args, _original=original, _name=name, **kwargs):
            bridged.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(workers, name, counting)
    model = make()
    if entry == "invoke":
        text = model.invoke("hello world").content
    elif entry == "ainvoke":
        text = (await model.ainvoke("hello world")).content
    elif entry == "stream":
        text = "".join(str(c.content) for c in model.stream("hello world"))
    else:
        text = "".join([str(c.content) async for c in model.astream("hello world")])
    assert len(bridged) == 1
    assert bridged[0] == ("decode_in_worker" if entry.startswith("a") else "decode_in_thread")
    assert text == core(model, user("hello world"), reward=CountingScorer()).text


def test_greedy_degrades_and_says_so():
    model = make(temperature=0)
    reply = model.invoke("hello world")
    assert reply.response_metadata["alignment"]["num_candidates"] == 1
    assert "greedy" in reply.response_metadata["alignment"]["note"]
    # Catches temperature=0 not reaching the decoder: the reply is the greedy decode.
    greedy = make(strategy=Sampling(), temperature=0, seed=99)
    assert reply.content == core(greedy, user("hello world")).text


def test_stop_strings_cut_the_reply():
    full = make(strategy=Sampling(), max_tokens=60, seed=5).invoke("hello").content
    # A stop string taken from the reply itself, so the cut always happens.
    word = full.split()[len(full.split()) // 2]
    model = make(strategy=Sampling(), max_tokens=60, stop=[word], seed=5)
    reply = model.invoke("hello")
    assert word not in reply.content
    assert full.startswith(reply.content.rstrip())
    assert len(reply.content) < len(full)
    assert reply.response_metadata["finish_reason"] == "stop"
    streamed = "".join(c.content for c in model.stream("hello"))
    assert streamed == reply.content
    # Stop strings passed per call work too.
    per_call = make(strategy=Sampling(), max_tokens=60, seed=5).invoke("hello", stop=[word])
    assert per_call.content == reply.content


def test_stream_metadata_floats_once_ints_summable():
    chunks = list(make().stream("hello world"))
    with_alignment = [c for c in chunks if c.response_metadata.get("alignment")]
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_alignment) == 1 and with_alignment[0] is chunks[-1]
    assert len(with_usage) == 1  # only one chunk carries input_tokens
    assert chunks[-1].chunk_position == "last"


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
    # Catches a failed call leaving state behind (e.g. a stale tool/seed) in later replies.
    assert model.invoke("hello").content == core(model, user("hello")).text


def test_unrenderable_tool_is_named():
    with pytest.raises(InvalidInputError, match="tool 0"):
        make().bind_tools([object()])


def test_unknown_tool_choice_is_named():
    with pytest.raises(InvalidInputError, match="tool_choice='mul'"):
        make().bind_tools([add], tool_choice="mul")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "function", "function": {"name": "add"}}, "add"),
        ({"type": "tool", "name": "add"}, "add"),
        ({"type": "auto"}, None),
        ({"type": "any"}, "any"),
        ({"type": "required"}, "any"),
        ({"type": "none"}, "none"),
    ],
)
def test_provider_style_tool_choice_dicts(choice, expected):
    assert make().bind_tools([add], tool_choice=choice).kwargs["tool_choice"] == expected


def test_invalid_json_schemas_are_refused_when_bound():
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}
    with pytest.raises(InvalidInputError, match="invalid parameters schema"):
        make().bind_tools([bad])
    for schema in ({"title": "T", "type": 3}, {"title": "T", "properties": {"a": {"type": 3}}}):
        with pytest.raises(InvalidInputError, match="not a usable JSON schema"):
            make().with_structured_output(schema)
