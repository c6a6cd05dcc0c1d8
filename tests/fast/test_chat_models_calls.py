"""One model call: prompt preparation and reward composition (chat_models/calls.py)."""

from __future__ import annotations

import pytest
from chat_fakes import (
    ADD_CALL,
    PERSON_SCHEMA,
    CountingScorer,
    Person,
    Scripted,
    add,
    alignment,
    core,
    make,
    user,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_aligned import Sampling
from langchain_aligned.chat_models.calls import compose_reward, prepare_call
from langchain_aligned.decoding import SamplingParams
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import render_chat


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


class PromptRecorder(Scripted):
    """A scripted strategy that records the prompt each request was rendered to."""

    def __init__(self, *texts: str) -> None:
        super().__init__(*texts)
        self.prompts: list[str] = []

    def run(self, engine, requests, *, reward=None, hooks=None):
        # The tiny tokenizer's decode is lossy: render the text the prompt ids came from.
        for request in requests:
            text = render_chat(engine.handle, request.conversation, tools=request.tools or None)
            assert engine.encode(text) == request.prompt_ids
            self.prompts.append(text)
        return super().run(engine, requests, reward=reward, hooks=hooks)


def test_tools_reach_the_rendered_prompt():
    recorder = PromptRecorder("ok")
    make(strategy=recorder).bind_tools([add], tool_choice="add").invoke("add 1 and 2")
    prompt = recorder.prompts[-1]
    assert "add" in prompt and "Add two integers." in prompt
    assert "<tool_call>" in prompt  # the call format is described
    assert "Answer by calling the add tool." in prompt
    make(strategy=recorder).with_structured_output(Person, include_raw=True).invoke("Ann")
    prompt = recorder.prompts[-1]
    assert '"age"' in prompt and "JSON object" in prompt
    # A demonstration exchange with a placeholder object comes before the question.
    demo = prompt.index("Reply with an example object.")
    assert demo < prompt.index('{"name": "example", "age": 1}') < prompt.index("Ann")


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
    model = make(strategy=Scripted("plain answer", needs_reward=True))
    auto = alignment(model.bind_tools([add]).invoke("add"))["reward"]
    forced = alignment(model.bind_tools([add], tool_choice="any").invoke("add"))["reward"]
    # The same text and base reward: only the validity part differs (0.25 when a call is
    # optional, 0 when forced, times the validity weight 10).
    assert auto - forced == pytest.approx(2.5)


def test_json_validity_reward_reads_the_first_object_like_the_parser():
    texts = ('{"name": "Ann", "age": 30}\nShe is thirty.', "Ann is thirty years old.")
    model = make(strategy=Scripted(*texts, needs_reward=True))
    raw = model.with_structured_output(PERSON_SCHEMA, include_raw=True).invoke("Ann is 30")
    valid, prose = alignment(raw["raw"])["candidate_rewards"]
    assert valid - prose > 9  # the validity weight (10) decides


def test_compose_reward_joins_validity_scorers_only_where_asked():
    base = CountingScorer()
    tools = [convert_to_openai_tool(add)]
    assert compose_reward(base, validity_weight=10) is base
    assert compose_reward(base, tools=tools, validity_weight=0) is base
    joined = compose_reward(base, tools=tools, validity_weight=10)
    assert joined.score(user("q"), [ADD_CALL])[0] == pytest.approx(
        base.score(user("q"), [ADD_CALL])[0] + 10
    )
    # A forced call to another tool than the one written makes the call invalid.
    other = {"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}}
    forced = compose_reward(base, tools=[*tools, other], tool_choice="mul", validity_weight=10)
    assert forced.score(user("q"), [ADD_CALL])[0] < joined.score(user("q"), [ADD_CALL])[0]


def test_prepare_call_consumes_its_options_and_names_bad_choices():
    options = {"tools": [convert_to_openai_tool(add)], "tool_choice": "any", "other": 1}
    call = prepare_call([HumanMessage("add")], options, params=SamplingParams(), model="m")
    assert options == {"other": 1}  # LangChain's own options stay for LangChain
    assert call.tool_choice == "any" and call.messages[-1]["content"].endswith(
        "Answer by calling one of the tools."
    )
    assert not call.stream_text  # with tools bound the reply may be a call
    none = prepare_call(
        [HumanMessage("add")],
        {"tools": call.tools, "tool_choice": "none"},
        params=SamplingParams(),
        model="m",
    )
    assert none.tools is None and none.stream_text
    with pytest.raises(InvalidInputError, match="tool_choice='mul'"):
        prepare_call(
            [HumanMessage("add")],
            {"tools": call.tools, "tool_choice": "mul"},
            params=SamplingParams(),
            model="m",
        )
