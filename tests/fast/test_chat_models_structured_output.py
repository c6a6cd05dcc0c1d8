"""Structured output: prompt, parsers and validity reward (chat_models/structured_output.py)."""

from __future__ import annotations

import pytest
from chat_fakes import (
    PERSON_SCHEMA,
    Person,
    PersonDict,
    Scripted,
    make,
)
from langchain_core.messages import AIMessage
from pydantic import BaseModel


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
