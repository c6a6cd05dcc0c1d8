"""RegexScorer, LengthScorer, JSONSchemaScorer and ToolCallScorer behaviour."""

from __future__ import annotations

import pydantic
import pytest

import rewards
from rewards.json_schema import complete_json_prefix


def test_regex_modes():
    assert rewards.RegexScorer(r"\d+").score("q", ["a 12", "none"]) == [1.0, 0.0]
    assert rewards.RegexScorer(r"\d+", mode="count", reward_match=0.5).score("q", ["1 2 3"]) == [
        1.5
    ]
    assert rewards.RegexScorer(r"yes", mode="fullmatch").score("q", [" yes ", "yes!"]) == [1.0, 0.0]
    with pytest.raises(rewards.InvalidScorerConfig, match="invalid"):
        rewards.RegexScorer("(")


def test_length_is_one_in_range_and_decays_smoothly():
    scorer = rewards.LengthScorer(min_words=3, max_words=5)
    inside, short, very_short = scorer.score("q", ["a b c d", "a b", ""])
    assert inside == 1.0 and 0 < very_short < short < 1.0
    with pytest.raises(rewards.InvalidScorerConfig, match="min ≤ max"):
        rewards.LengthScorer(min_chars=10, max_chars=5)
    with pytest.raises(rewards.InvalidScorerConfig):
        rewards.LengthScorer()


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_json_schema_full_partial_and_invalid():
    scorer = rewards.JSONSchemaScorer(Person)
    full, wrong, prefix, garbage = scorer.score(
        "q",
        [
            '```json\n{"name": "Ann", "age": 3}\n```',
            '{"name": "Ann"}',
            '{"name": "Ann", "age": 3',
            "no json here",
        ],
    )
    assert full == 1.0 and wrong == 0.5 and prefix == 0.5 and garbage == 0.0
    assert scorer.score("q", ['{"name": "An'])[0] == 0.25  # completable, not yet valid
    assert complete_json_prefix('{"a": [1, 2') == '{"a": [1, 2]}'
    assert complete_json_prefix('{"a": 1}}') is None
    with pytest.raises(rewards.InvalidScorerConfig, match="not valid"):
        rewards.JSONSchemaScorer({"type": "no-such-type"})


def test_tool_calls_parse_and_validate():
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
    scorer = rewards.ToolCallScorer([tool])
    ok = '<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>'
    bad_args = '<tool_call>{"name": "add", "arguments": {"a": "two"}}</tool_call>'
    broken = "<tool_call>{not json</tool_call>"
    assert scorer.score("q", [ok, bad_args, broken, "plain text"]) == [1.0, 0.5, 0.0, 0.0]
    assert rewards.parse_tool_calls('{"name": "add", "arguments": "{\\"a\\": 1}"}') == [
        {"name": "add", "arguments": {"a": 1}}
    ]
    assert rewards.parse_tool_calls("hello") == []
    assert rewards.ToolCallScorer([Person], require_call=False).score("q", ["hi"]) == [0.25]
    # After a tool result an answer without a call is what an agent should do next: it
    # scores like a valid call (unless a call is required), so a reward never pushes an
    # agent into calling again and again.
    after_result = [
        {"role": "user", "content": "add 2 and 3"},
        {"role": "assistant", "content": ok},
        {"role": "tool", "content": "5"},
    ]
    optional = rewards.ToolCallScorer([tool], require_call=False)
    assert optional.score(after_result, ["It is 5.", ok, broken]) == [1.0, 1.0, 0.0]
    assert scorer.score(after_result, ["It is 5."]) == [0.0]
    with pytest.raises(rewards.InvalidScorerConfig, match="invalid parameters schema"):
        rewards.ToolCallScorer([{"name": "x", "parameters": {"type": 3}}])


GOOD = '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
OTHER = '<tool_call>{"name": "mul", "arguments": {"a": 2}}</tool_call>'
NOT_JSON = "<tool_call>{not json</tool_call>"
BAD_ARGS = '<tool_call>{"name": "add", "arguments": "{oops"}</tool_call>'
BARE = '{"name": "add", "arguments": {"a": 1}}'


def test_find_tool_calls_gives_the_span_of_every_block():
    text = f"A {GOOD} B {NOT_JSON}\n{BAD_ARGS} C {OTHER}"
    matches = rewards.find_tool_calls(text)
    assert [text[m.start : m.end] for m in matches] == [GOOD, NOT_JSON, BAD_ARGS, OTHER]
    assert [(m.name, m.error) for m in matches] == [
        ("add", None),
        (None, "no JSON object"),
        ("add", "arguments are not JSON"),
        ("mul", None),
    ]
    assert all(m.tagged for m in matches)
    # parse_tool_calls keeps its contract: the same calls as plain dicts, in order.
    assert rewards.parse_tool_calls(text) == [m.as_dict() for m in matches]
    assert rewards.parse_tool_calls(text)[0] == {"name": "add", "arguments": {"a": 1}}
    assert rewards.parse_tool_calls(text)[1] == {
        "name": None,
        "arguments": None,
        "error": "no JSON object",
    }
    # An unterminated block runs to the end of the text.
    open_block = '<tool_call>{"name": "add", "arguments": {}}'
    (match,) = rewards.find_tool_calls("x " + open_block)
    assert (match.start, match.end, match.name) == (2, 2 + len(open_block), "add")


def test_find_tool_calls_gives_the_json_span_of_a_bare_call():
    text = f"Calling add: {BARE} and then I answer."
    (match,) = rewards.find_tool_calls(text)
    assert text[match.start : match.end] == BARE and not match.tagged
    assert (match.name, match.arguments, match.error) == ("add", {"a": 1}, None)
    # Objects without a name are not calls, and do not hide a call after them.
    text = f'Input {{"a": 1}}; call {BARE}; an object {{"name": "Ann", "age": 3}}.'
    assert [text[m.start : m.end] for m in rewards.find_tool_calls(text)] == [
        BARE,
        '{"name": "Ann", "age": 3}',
    ]
    # A "name" nested inside an object that is not a call is not a call.
    assert rewards.find_tool_calls('{"person": {"name": "Ann"}}') == []
    # Inside <tool_call> blocks only the blocks count, not bare objects elsewhere.
    assert [m.name for m in rewards.find_tool_calls(f"{BARE} {OTHER}")] == ["mul"]
    for plain in ["hello", 'just {"a": 1}', '"name" without an object', "{broken"]:
        assert rewards.find_tool_calls(plain) == []


def test_tool_call_scorer_scores_unknown_tools_half_and_broken_blocks_zero():
    scorer = rewards.ToolCallScorer([{"name": "add", "parameters": {"type": "object"}}])
    assert scorer.score("q", [GOOD, OTHER, BARE, f"x {BARE} y", f"{GOOD} {NOT_JSON}"]) == [
        1.0,
        0.5,  # mul is not a tool
        1.0,
        1.0,  # prose around a bare call does not matter
        0.0,  # one broken block spoils the reply
    ]
    assert scorer.score("q", [BAD_ARGS, 'Ann: {"name": "Ann"}']) == [0.0, 0.5]


def test_weighted_and_cached():
    a = rewards.FunctionScorer(lambda c, t: [float(len(x)) for x in t], name="len")
    b = rewards.FunctionScorer(lambda c, t: [1.0 if "x" in x else 0.0 for x in t], name="x")
    assert rewards.WeightedScorer({a: 1.0, b: 10.0}).score("q", ["ab", "x"]) == [2.0, 11.0]
    ranked = rewards.WeightedScorer({a: 1.0}, normalization="rank").score("q", ["a", "abc", "ab"])
    assert ranked == [0.0, 1.0, 0.5]
    assert not rewards.WeightedScorer({a: 1.0}, normalization="zscore").comparable_across_calls
    with pytest.raises(rewards.InvalidScorerConfig, match="normalization"):
        rewards.WeightedScorer({a: 1.0}, normalization="minmax")
    with pytest.raises(rewards.InvalidScorerConfig, match="weight"):
        rewards.WeightedScorer({a: float("nan")})
    calls = []
    counted = rewards.FunctionScorer(lambda c, t: calls.append(list(t)) or [1.0] * len(t))
    cached = rewards.CachedScorer(counted, maxsize=2)
    cached.score("q", ["a", "b"])
    cached.score("q", ["a", "c"])
    assert calls == [["a", "b"], ["c"]] and cached.hits == 1


def test_langchain_judge_parses_ratings():
    from rewards.langchain_judge import parse_rating

    assert parse_rating("I'd say 8/10.", 10) == 0.8
    assert parse_rating("Score: 7", 10) == 0.7
    assert parse_rating("no idea", 10) is None
    with pytest.raises(rewards.InvalidScorerConfig):
        rewards.LangChainJudgeScorer(object())


def test_tool_call_scorer_accepts_langchain_style_tools_by_duck_typing():
    fake_tool = type(
        "FakeTool", (), {"name": "person", "description": "A person", "args_schema": Person}
    )()
    scorer = rewards.ToolCallScorer([fake_tool])
    good = '<tool_call>{"name": "person", "arguments": {"name": "Ann", "age": 3}}</tool_call>'
    assert scorer.score("q", [good]) == [1.0]
