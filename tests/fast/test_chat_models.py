"""AlignedChatModel behaviour beyond the standard suites."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import threading
import time
from typing import Any, TypedDict

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from pydantic import BaseModel
from scorers import CountingScorer
from tiny import tiny_pair

from langchain_aligned import (
    AlignedChatModel,
    BestOfN,
    Sampling,
    SpeculativeRejection,
    chat_models,
    generate,
)
from langchain_aligned.decoding.base import (
    EVENT_DONE,
    EVENT_SCORED,
    AlignmentStats,
    Result,
    Strategy,
    score_texts,
)
from langchain_aligned.decoding.engine import DecodeCancelled
from langchain_aligned.errors import InvalidInputError

generate_module = importlib.import_module("langchain_aligned.decoding.generate")

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


def core(model, conversation, *, reward=None, tools=None):
    """What the framework-free core returns for ``model``'s configuration: the chat
    model must be a thin layer over this (same strategy, seed, sampling, max tokens)."""
    (result,) = generate(
        PAIR,
        [conversation],
        strategy=model.strategy,
        reward=reward,
        temperature=model.temperature,
        top_p=model.top_p,
        top_k=model.top_k,
        max_new_tokens=model.max_tokens,
        stop=tuple(model.stop or ()),
        seed=model.seed,
        tools=tools,
        device=model.device,
        dtype=model.dtype,
    )
    return result


def user(text):
    return [{"role": "user", "content": text}]


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


def test_greedy_degrades_and_says_so():
    model = make(temperature=0)
    reply = model.invoke("hello world")
    assert reply.response_metadata["alignment"]["num_candidates"] == 1
    assert "greedy" in reply.response_metadata["alignment"]["note"]
    # Catches temperature=0 not reaching the decoder: the reply is the greedy decode.
    greedy = make(strategy=Sampling(), temperature=0, seed=99)
    assert reply.content == core(greedy, user("hello world")).text


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


def test_tools_reach_the_prompt_and_tool_histories_render():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    model = make(strategy=Sampling())
    bound = model.bind_tools([add], tool_choice="add")
    tools = [convert_to_openai_tool(add)]
    reply = bound.invoke("add 1 and 2")
    # Catches tools or the forced-choice instruction not reaching the core's prompt.
    instructed = user("add 1 and 2\n\nAnswer by calling the add tool.")
    assert reply.content == core(model, instructed, tools=tools).text
    history = [
        SystemMessage("be good"),
        HumanMessage("add 1 and 2"),
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        ToolMessage("3", tool_call_id="c1"),
    ]
    # A conversation ending with a tool result: the instruction goes to the system turn.
    # Catches a mis-converted role/content in the history (e.g. the tool result dropped).
    expected = [
        {"role": "system", "content": "be good\n\nAnswer by calling the add tool."},
        {"role": "user", "content": "add 1 and 2"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": {"a": 1, "b": 2}},
                }
            ],
        },
        {"role": "tool", "content": "3", "tool_call_id": "c1", "name": "add"},
    ]
    assert bound.invoke(history).content == core(model, expected, tools=tools).text


def test_tool_calls_are_parsed_with_ids():
    from langchain_aligned.chat_models import _split_tool_calls

    text, calls = _split_tool_calls(
        'Sure. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>', {"add"}
    )
    assert text == "Sure."
    assert calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1, "b": 2} and calls[0]["id"]


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


@pytest.mark.parametrize(("text", "content", "args"), SPLIT_CASES)
def test_split_tool_calls_cuts_out_exactly_the_calls_to_bound_tools(text, content, args):
    from langchain_aligned.chat_models import _split_tool_calls

    left, calls = _split_tool_calls(text, {"add", "other"})
    assert left == content
    assert [c["args"] for c in calls] == args
    assert all(c["name"] == "add" and c["type"] == "tool_call" for c in calls)
    assert len({c["id"] for c in calls}) == len(calls)
    assert all(c["id"].startswith("call_") for c in calls)
    # Without the tool bound nothing is a call and the text stays whole.
    assert _split_tool_calls(text, {"other"}) == (text, [])


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


# ----------------------------------------------------------------------------------------
# Scripted strategies: the decoding is real (the tiny model is loaded and the prompt is
# rendered), but the candidate texts are fixed, so the LangChain plumbing — tool-call
# parsing, structured output, reward composition — is checked on known text.
class Scripted(Strategy):
    """Returns the candidate with the best reward (the first one without a reward)."""

    name = "scripted"

    def __init__(self, *texts: str, needs_reward: bool = False) -> None:
        self.texts = texts
        self.needs_reward = needs_reward  # type: ignore[misc]

    def run(self, engine, requests, *, reward=None, hooks=None):
        results = []
        for index, request in enumerate(requests):
            stats = AlignmentStats(strategy=self.name, num_candidates=len(self.texts))
            scores = (
                score_texts(reward, request.conversation, self.texts, stats)
                if reward is not None and self.needs_reward
                else [0.0] * len(self.texts)
            )
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            text = self.texts[best]
            stats.reward, stats.candidate_rewards = scores[best], scores
            stats.prompt_tokens = len(request.prompt_ids)
            stats.tokens_returned = len(text.split())
            if hooks is not None:
                if hooks.on_text is not None:
                    for word in text.split(" "):
                        hooks.on_text(index, word + " ")
                hooks.event(EVENT_DONE, {"request": index, "stats": stats.to_dict()})
            results.append(Result(text=text, token_ids=[], finish_reason="stop", stats=stats))
        return results


ADD_CALL = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'


class Person(BaseModel):
    name: str
    age: int


class PersonDict(TypedDict):
    name: str
    age: int


PERSON_SCHEMA = {
    "title": "Person",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


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


def test_tools_reach_the_rendered_prompt(monkeypatch):
    prompts = []
    real = generate_module.render_chat

    def spy(handle, messages, **kwargs):
        text = real(handle, messages, **kwargs)
        prompts.append(text)
        return text

    monkeypatch.setattr(generate_module, "render_chat", spy)
    make(strategy=Sampling()).bind_tools([add], tool_choice="add").invoke("add 1 and 2")
    assert "add" in prompts[-1] and "Add two integers." in prompts[-1]
    assert "<tool_call>" in prompts[-1]  # the call format is described
    assert "Answer by calling the add tool." in prompts[-1]
    make(strategy=Sampling()).with_structured_output(Person, include_raw=True).invoke("Ann")
    assert '"age"' in prompts[-1] and "JSON object" in prompts[-1]
    # A demonstration exchange with a placeholder object comes before the question.
    demo = prompts[-1].index("Reply with an example object.")
    assert demo < prompts[-1].index('{"name": "example", "age": 1}') < prompts[-1].index("Ann")


class Pet(BaseModel):
    name: str
    kind: str | None = None


class Owner(BaseModel):
    name: str
    age: int
    pets: list[Pet]
    best_friend: Pet
    nickname: str | None


def test_demonstration_objects_validate_against_their_schema():
    import jsonschema
    from langchain_core.utils.function_calling import convert_to_json_schema

    from langchain_aligned.models.chat import placeholder_arguments

    for schema in (Owner, Person, PersonDict, PERSON_SCHEMA):
        json_schema = convert_to_json_schema(schema)
        example = placeholder_arguments(json_schema)
        jsonschema.validate(example, json_schema)  # raises if the demonstration is invalid
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            schema.model_validate(example)


def test_valid_tool_calls_win_the_reward():
    # The base reward (words / 10) prefers the long prose; ToolCallScorer joins by default.
    import rewards

    words = rewards.FunctionScorer(lambda c, texts: [len(t.split()) / 10 for t in texts])
    prose = "the sun is red and the moon is blue and we sat on the mat " * 3
    model = make(strategy=Scripted(prose, ADD_CALL, needs_reward=True), reward=words)
    assert model.invoke("add 1 and 2").content == prose  # no tools: the base reward decides
    reply = model.bind_tools([add]).invoke("add 1 and 2")
    # Catches the prose winning despite the validity reward, or the call mis-parsed.
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("add", {"a": 1, "b": 2})]
    assert reply.content == ""
    assert reply.response_metadata["alignment"]["candidate_rewards"][1] > 9


def test_forced_tool_choice_makes_no_call_lose():
    scorer_call = make(strategy=Scripted("no", needs_reward=True))
    call = scorer_call._prepare([HumanMessage("add")], None, {"tools": [_openai(add)]})
    auto = scorer_call._reward(call).score(call.messages, ["plain answer"])[0]
    call = scorer_call._prepare(
        [HumanMessage("add")], None, {"tools": [_openai(add)], "tool_choice": "any"}
    )
    forced = scorer_call._reward(call).score(call.messages, ["plain answer"])[0]
    assert auto > forced  # without a call: 0.25 validity when optional, 0 when forced


def _openai(fn):
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(fn)


@pytest.mark.parametrize("schema", [Person, PersonDict, PERSON_SCHEMA])
@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
def test_structured_output_methods_and_schemas(schema, method):
    text = (
        '<tool_call>{"name": "%s", "arguments": {"name": "Ann", "age": 30}}</tool_call>'
        % ("Person" if schema is not PersonDict else "PersonDict")
        if method == "function_calling"
        else 'Here: ```json\n{"name": "Ann", "age": 30}\n```'
    )
    bad = "I do not know" if method != "function_calling" else "no call"
    # The reward (JSONSchemaScorer / ToolCallScorer joined by default) picks the valid one.
    model = make(strategy=Scripted(bad, text, needs_reward=True))
    structured = model.with_structured_output(schema, method=method)
    for out in (structured.invoke("Ann is 30"), list(structured.stream("Ann is 30"))[-1]):
        if schema is Person:
            assert out == Person(name="Ann", age=30)
        else:
            assert out == {"name": "Ann", "age": 30}
    raw = model.with_structured_output(schema, method=method, include_raw=True).invoke("Ann")
    assert raw["parsing_error"] is None and isinstance(raw["raw"], AIMessage)
    # Catches include_raw parsing something else than (or nothing from) the raw reply.
    assert raw["parsed"] == (
        Person(name="Ann", age=30) if schema is Person else {"name": "Ann", "age": 30}
    )
    if method != "function_calling":
        assert raw["raw"].content == text


def test_structured_output_parsing_error_is_reported():
    model = make(strategy=Scripted("no json here"))
    out = model.with_structured_output(Person, include_raw=True).invoke("Ann is 30")
    assert out["parsed"] is None and out["parsing_error"] is not None
    with pytest.raises(ValueError, match="method"):
        model.with_structured_output(Person, method="xml")


def test_stream_metadata_floats_once_ints_summable():
    chunks = list(make().stream("hello world"))
    with_alignment = [c for c in chunks if c.response_metadata.get("alignment")]
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_alignment) == 1 and with_alignment[0] is chunks[-1]
    assert len(with_usage) == 1  # only one chunk carries input_tokens
    assert chunks[-1].chunk_position == "last"


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


class _Probe(AlignedChatModel):
    """Slows decoding down (10 ms per streamed token) and records how each run ended."""

    def _run(self, call, hooks):
        outcomes = self.probe
        on_text = hooks.on_text

        def slow(request, delta):
            time.sleep(0.01)
            on_text(request, delta)

        if on_text is not None:
            hooks.on_text = slow
        try:
            result = super()._run(call, hooks)
        except DecodeCancelled:
            outcomes.append(("cancelled", time.perf_counter()))
            raise
        outcomes.append(("done", time.perf_counter()))
        return result

    probe: Any = None


def test_cancelled_astream_stops_decoding_promptly():
    outcomes: list = []
    model = _Probe(
        model=PAIR,
        strategy=Sampling(),
        max_tokens=200,
        seed=0,
        temperature=1.0,
        probe=outcomes,
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


def test_json_validity_reward_reads_the_first_object_like_the_parser():
    model = make(strategy=Scripted("x", needs_reward=True))
    call = model._prepare(
        [HumanMessage("Ann is 30")],
        None,
        {"response_format": {"type": "json_schema", "schema": PERSON_SCHEMA}},
    )
    texts = ['{"name": "Ann", "age": 30}\nShe is thirty.', "Ann is thirty years old."]
    valid, prose = model._reward(call).score(call.messages, texts)
    assert valid - prose > 9  # the validity weight (10) decides


def _alignment(message):
    return message.response_metadata["alignment"]


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
        assert _alignment(shared)["candidate_rewards"] == _alignment(single)["candidate_rewards"]
        assert shared.usage_metadata == single.usage_metadata
        # One prefill for all six candidates (3 prompts × n=2), not one per prompt.
        assert _alignment(shared)["prefill_passes"] == 1
        assert _alignment(shared)["peak_batch_size"] == 6
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
    assert [_alignment(m)["candidate_rewards"] for m in (out[0], out[2])] == [
        _alignment(llm.invoke(p))["candidate_rewards"] for p in (inputs[0], inputs[2])
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
    assert all(_alignment(m)["peak_batch_size"] <= 4 for m in out)
    # Speculative Rejection keeps each prompt's schedule and rejections, in one batch.
    spr = make(strategy=SpeculativeRejection(n=2, rejection_rate=0.5, decision_tokens=2))
    out = spr.batch(prompts[:2])
    assert [_alignment(m)["peak_batch_size"] for m in out] == [4, 4]
    alone = [spr.invoke(p) for p in prompts[:2]]
    assert [m.content for m in out] == [m.content for m in alone]
    assert [_alignment(m)["rounds"] for m in out] == [_alignment(m)["rounds"] for m in alone]


def test_async_calls_with_a_synchronous_handler_do_not_wait_on_each_other(monkeypatch):
    # LangChain runs synchronous handlers in the loop's default executor. Decoding must
    # not sit in that pool: with a 2-thread default pool and 4 concurrent calls, decoding
    # threads there would wait for event handlers that can never get a thread.
    monkeypatch.setattr(chat_models, "_EVENT_TIMEOUT", 2.0)  # a stall fails fast
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


class FailsOn:
    """Counting reward that raises for one prompt (after other requests were scored)."""

    name = "fails-on"

    def __init__(self, word):
        self.word, self.inner = word, CountingScorer()

    def score(self, conversation, completions):
        if self.word in str(conversation):
            raise RuntimeError(f"cannot score {self.word!r}")
        return self.inner.score(conversation, completions)


def test_a_batch_failing_mid_decode_never_repeats_output():
    # Best-of-N scores the batch's requests in order: the first is scored and its events
    # sent before the second's reward raises. The first must not be decoded (and its
    # events sent) a second time; the third, which saw nothing yet, is decoded alone.
    runs: dict[Any, list[str]] = {}

    class RunRecorder(BaseCallbackHandler):
        def on_custom_event(self, name, data, *, run_id, **kwargs):
            runs.setdefault(run_id, []).append(name)

    llm = make(strategy=BestOfN(n=2), reward=FailsOn("boom"))
    out = llm.batch(
        ["why is the sun red", "boom goes the model", "hello"],
        {"callbacks": [RunRecorder()]},
        return_exceptions=True,
    )
    assert isinstance(out[1], Exception) and "boom" in str(out[1])
    assert all(names.count(EVENT_DONE) <= 1 for names in runs.values())
    assert all(names.count(EVENT_SCORED) <= 1 for names in runs.values())
    assert isinstance(out[2], AIMessage)
    # Catches the re-decoded third input getting another seed or a misattributed reward.
    expected = core(llm, user("hello"), reward=CountingScorer())
    assert out[2].content == expected.text
    assert (
        _alignment(out[2])["reward"] == CountingScorer().score(user("hello"), [out[2].content])[0]
    )
    assert _alignment(out[2])["seed"] == 3
    assert out[2].usage_metadata["output_tokens"] == _alignment(out[2])["tokens_returned"]
    assert (
        llm.invoke("still usable").content
        == core(llm, user("still usable"), reward=CountingScorer()).text
    )
