"""Structured output: the JSON instructions in the prompt, reading the object back,
the parsers, and the validity scorer wiring.

``with_structured_output`` (``"json_schema"`` / ``"json_mode"``) binds a
``response_format``: :func:`add_json_prompt` then asks for one JSON object valid
against the schema, :class:`FirstObjectScorer` joins the reward so valid objects win
(see :mod:`.calls`), and :func:`json_parser` reads the reply's first object. With
``"function_calling"`` the schema becomes a tool the model must call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal, Protocol

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

import rewards

from ..errors import InvalidInputError
from ..models.chat import placeholder_arguments
from .messages import add_instruction

__all__ = [
    "METHODS",
    "FirstObjectScorer",
    "add_json_prompt",
    "extract_json_object",
    "json_parser",
    "structured_output",
]

Method = Literal["json_schema", "function_calling", "json_mode"]
METHODS: tuple[Method, ...] = ("json_schema", "function_calling", "json_mode")
"""The ``method`` values of ``with_structured_output``."""


class _Bindable(Protocol):
    """What :func:`structured_output` needs of the chat model."""

    def bind(self, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]: ...

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = ..., **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]: ...


# --------------------------------------------------------------------------- the prompt
def _json_instructions(schema: Mapping[str, Any] | None) -> str:
    if not schema:
        return "Reply with a single JSON object and nothing else: no prose, no code fences."
    properties = schema.get("properties") or {}
    keys = ", ".join(
        f'"{key}" ({spec.get("type", "value")}'
        + (f": {spec['description']}" if spec.get("description") else "")
        + ")"
        for key, spec in properties.items()
        if isinstance(spec, Mapping)
    )
    return (
        "Reply with a single JSON object and nothing else: no prose, no code fences.\n"
        + (f"Its keys: {keys}.\n" if keys else "")
        + "It must validate against this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


def _add_json_demonstration(
    messages: list[dict[str, Any]], schema: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Put one demonstration exchange after the system message: a user asking for an
    example object and the assistant answering with a placeholder object valid for the
    schema. Small models copy the form: on the 30 JSON prompts of
    ``benchmarks/bench_structured.py`` SmolLM2-135M returned 3 valid objects without it
    and 17 with it (plain sampling, one seed per request). Left out when the
    conversation does not continue with a user turn (roles must alternate)."""
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    rest = messages[len(system) :]
    if not rest or rest[0]["role"] != "user":
        return messages
    example = placeholder_arguments(schema) if schema else {}
    demonstration = [
        {"role": "user", "content": "Reply with an example object."},
        {"role": "assistant", "content": json.dumps(example, ensure_ascii=False)},
    ]
    return [*system, *demonstration, *rest]


def add_json_prompt(
    messages: list[dict[str, Any]], schema: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The conversation asking for one JSON object valid against ``schema``: the
    instructions in the system message, a reminder in the last user turn, and a
    demonstration exchange."""
    messages = add_instruction(messages, _json_instructions(schema))
    messages = add_instruction(messages, "Reply with the JSON object only.", prefer_user=True)
    return _add_json_demonstration(messages, schema)


# --------------------------------------------------------------------------- reading back
def extract_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (inside a code fence or bare).

    Raises:
        OutputParserException: the text holds no JSON object.
    """
    fenced = re.search(r"```(?:json)?\s*(.*?)(?:```|$)", text, re.DOTALL)
    for body in ([fenced.group(1)] if fenced else []) + [text]:
        start = body.find("{")
        while start >= 0:
            try:
                value, _ = json.JSONDecoder().raw_decode(body[start:])
            except json.JSONDecodeError:
                start = body.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = body.find("{", start + 1)
    raise OutputParserException(f"no JSON object in the reply: {text[:200]!r}", llm_output=text)


def json_parser(schema: Any) -> Runnable:
    """Parse a reply's JSON object, validated into ``schema`` when it is a pydantic model."""
    pydantic_cls = schema if isinstance(schema, type) and is_basemodel_subclass(schema) else None

    def parse(message: BaseMessage) -> Any:
        value = extract_json_object(message.text if hasattr(message, "text") else str(message))
        if pydantic_cls is None:
            return value
        if hasattr(pydantic_cls, "model_validate"):
            return pydantic_cls.model_validate(value)
        return pydantic_cls.parse_obj(value)  # type: ignore[attr-defined]  # pydantic.v1

    return RunnableLambda(parse, name="AlignedJsonParser")


class FirstObjectScorer:
    """Score what the structured-output parser will read: the reply's first JSON object
    (prose after it is ignored, as the parser ignores it). Replies without a complete
    object go to the inner scorer as they are, for its partial credit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    def score(self, conversation: Any, completions: Sequence[str]) -> list[float]:
        texts = []
        for text in completions:
            try:
                texts.append(json.dumps(extract_json_object(text)))
            except OutputParserException:
                texts.append(text)
        return list(self.inner.score(conversation, texts))


# --------------------------------------------------------------------------- the runnable
def structured_output(
    model: _Bindable, schema: Any, method: str, include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """The runnable behind ``with_structured_output``: ``model`` bound for ``method``,
    piped into the parser (with ``{"raw", "parsed", "parsing_error"}`` when
    ``include_raw``)."""
    if method not in METHODS:
        raise InvalidInputError(
            f"method={method!r}: use 'json_schema', 'function_calling' or 'json_mode'"
        )
    if schema is None and method != "json_mode":
        raise InvalidInputError(f"method={method!r} needs a schema")
    is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    ls_format = {"kwargs": {"method": method}, "schema": schema}
    parser: Runnable
    if method == "function_calling":
        name = convert_to_openai_tool(schema)["function"]["name"]
        llm = model.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
        parser = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)
            if is_pydantic
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    else:
        # json_mode with a schema still shows and rewards the schema: it only makes
        # a valid object more likely.
        try:  # the validity reward needs a valid JSON schema: check it now
            json_schema = {"type": "object"} if schema is None else convert_to_json_schema(schema)
            rewards.JSONSchemaScorer(json_schema)
        except Exception as exc:
            raise InvalidInputError(
                f"with_structured_output: schema {schema!r:.80} is not a usable JSON "
                f"schema, pydantic model or TypedDict: {exc}"
            ) from exc
        bind_kwargs: dict[str, Any] = {"response_format": {"type": method, "schema": json_schema}}
        if schema is not None:
            bind_kwargs["ls_structured_output_format"] = ls_format
        llm = model.bind(**bind_kwargs)
        parser = json_parser(schema)
    if not include_raw:
        return llm | parser
    parser_assign = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
    with_fallback = parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")
    return RunnableMap(raw=llm) | with_fallback
