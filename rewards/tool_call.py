"""Tool-call parsing and ``ToolCallScorer``.

This module owns the library's tool-call text format: a call is written as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (:func:`format_tool_call`,
the format ``langchain_aligned`` renders into prompts and demonstrations) and read
back by :func:`find_tool_calls`, which accepts a bare JSON object with ``name`` and
``arguments`` (or ``parameters``) too.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, conversation_to_messages

__all__ = [
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "ToolCallMatch",
    "ToolCallScorer",
    "find_tool_calls",
    "format_tool_call",
    "normalize_tool",
    "parse_tool_calls",
]

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

_BLOCK = re.compile(
    re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(TOOL_CALL_CLOSE) + r"|\Z)",
    re.DOTALL,
)
_DECODER = json.JSONDecoder()


def format_tool_call(name: str, arguments: Any) -> str:
    """Write one tool call in the library's text format (arguments given as a JSON
    string are decoded first, so they are written as an object)."""
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments})}{TOOL_CALL_CLOSE}"


@dataclass(frozen=True)
class ToolCallMatch:
    """One tool call found in a text, with where it was written.

    ``text[start:end]`` is the whole ``<tool_call>…</tool_call>`` block (up to the end
    of the text when the closing tag is missing) or, for a bare call, exactly its JSON
    object. A call that parsed has ``error`` None, a ``name`` and a dict of
    ``arguments`` (``{}`` when the arguments are missing or not an object). A broken
    block has ``error`` set and ``arguments`` None; ``name`` is None too unless only the
    arguments were broken.
    """

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None
    start: int
    end: int
    tagged: bool
    """Whether the call was written in ``<tool_call>`` tags (else a bare JSON object)."""

    def as_dict(self) -> dict[str, Any]:
        """The call as :func:`parse_tool_calls` returns it."""
        if self.error is not None:
            return {"name": self.name, "arguments": None, "error": self.error}
        return {"name": self.name, "arguments": self.arguments}


def _json_objects(text: str) -> Iterator[tuple[Any, int, int]]:
    """Top-level JSON objects of ``text`` in order: (value, start, end).

    Scanning resumes after each decoded object, so objects nested inside another one
    are never yielded on their own.
    """
    start = text.find("{")
    while start >= 0:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        yield value, start, end
        start = text.find("{", end)


def _first_json_object(text: str) -> Any | None:
    return next((value for value, _, _ in _json_objects(text)), None)


def _bare_calls(text: str) -> Iterator[tuple[dict[str, Any], int, int]]:
    """Top-level JSON objects of ``text`` with a string ``name``: (object, start, end)."""
    for value, start, end in _json_objects(text):
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            yield value, start, end


def _read_call(value: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(arguments, error) of a decoded call object that has a string name."""
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None, "arguments are not JSON"
    return (arguments if isinstance(arguments, dict) else {}), None


def find_tool_calls(text: str) -> list[ToolCallMatch]:
    """Tool calls found in ``text``, in order, each with its span in ``text``.

    When ``text`` holds a ``<tool_call>`` tag, every block is a call (one that does
    not parse is returned with ``error`` set: ``"no JSON object"``, ``"no tool name"``
    or ``"arguments are not JSON"``) and JSON outside the blocks is ignored. Otherwise
    every top-level JSON object with a string ``"name"`` is a bare call (prose JSON
    such as ``{"name": "Ann"}`` included: matching names against the tools is the
    caller's job); objects without one are skipped, and a bare call whose string
    ``arguments`` are not JSON is returned with that error. Never raises.
    """
    matches: list[ToolCallMatch] = []
    if TOOL_CALL_OPEN in text:
        for block in _BLOCK.finditer(text):
            start, end = block.start(), block.end()
            value = _first_json_object(block.group(1))
            if value is None:
                matches.append(ToolCallMatch(None, None, "no JSON object", start, end, True))
            elif not isinstance(value, dict) or not isinstance(value.get("name"), str):
                matches.append(ToolCallMatch(None, None, "no tool name", start, end, True))
            else:
                arguments, error = _read_call(value)
                matches.append(ToolCallMatch(value["name"], arguments, error, start, end, True))
    elif '"name"' in text:
        for value, start, end in _bare_calls(text):
            arguments, error = _read_call(value)
            matches.append(ToolCallMatch(value["name"], arguments, error, start, end, False))
    return matches


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls found in ``text`` as ``{"name": str, "arguments": dict}`` dicts.

    A block whose JSON does not parse is returned as ``{"name": None, "arguments":
    None, "error": ...}`` (``"name"`` is kept when only the arguments are broken) so
    callers can tell "no call" from "a broken call". What counts as a call is
    described in :func:`find_tool_calls`, which also gives where each call is written.
    """
    return [match.as_dict() for match in find_tool_calls(text)]


def normalize_tool(tool: Any) -> dict[str, Any]:
    """An OpenAI-style function dict from a dict, a JSON schema or a pydantic class."""
    if isinstance(tool, Mapping):
        if "function" in tool:
            function = dict(tool["function"])
        elif "name" in tool:
            function = dict(tool)
        elif "title" in tool:
            function = {
                "name": tool["title"],
                "description": tool.get("description", ""),
                "parameters": dict(tool),
            }
        else:
            raise InvalidScorerConfig(
                f"tool {tool!r:.80} has no name (an OpenAI function dict or a titled JSON schema)"
            )
    elif isinstance(getattr(tool, "name", None), str) and hasattr(tool, "args_schema"):
        # A LangChain tool (duck-typed: this package never imports LangChain).
        schema_source = getattr(tool, "tool_call_schema", None) or tool.args_schema
        if hasattr(schema_source, "model_json_schema"):
            parameters = schema_source.model_json_schema()
        elif isinstance(schema_source, Mapping):
            parameters = dict(schema_source)
        else:
            parameters = {"type": "object", "properties": dict(getattr(tool, "args", {}) or {})}
        function = {
            "name": tool.name,
            "description": getattr(tool, "description", ""),
            "parameters": parameters,
        }
    elif isinstance(tool, type) and hasattr(tool, "model_json_schema"):
        schema = tool.model_json_schema()
        function = {
            "name": tool.__name__,
            "description": (tool.__doc__ or "").strip(),
            "parameters": schema,
        }
    else:
        raise InvalidScorerConfig(
            f"tool {tool!r:.80} is not a function dict, JSON schema or pydantic class"
        )
    function.setdefault("parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": function}


class ToolCallScorer(RewardScorer):
    """Reward tool calls that parse and whose arguments validate against the tools.

    Per completion: 1.0 if it holds at least one call and every call names a known tool
    with valid arguments; 0.5 for calls that parse but name an unknown tool or fail
    validation; 0.0 for a broken call, and ``no_call_reward`` (0.0 when
    ``require_call``, else 0.25) when there is no call at all — except that a reply
    without a call to a conversation ending with a tool result scores 1.0 when the call
    is optional: answering from the result is then the expected move, and an agent
    whose reward kept preferring another call would loop.
    """

    def __init__(self, tools: Sequence[Any], *, require_call: bool = True) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        if not tools:
            raise InvalidScorerConfig("ToolCallScorer needs at least one tool")
        self.tools = [normalize_tool(t) for t in tools]
        self.validators = {}
        for tool in self.tools:
            function = tool["function"]
            try:
                Draft202012Validator.check_schema(function["parameters"])
            except SchemaError as exc:
                raise InvalidScorerConfig(
                    f"tool {function['name']!r} has an invalid parameters schema: {exc.message}"
                ) from exc
            self.validators[function["name"]] = Draft202012Validator(function["parameters"])
        self.require_call = require_call
        self.no_call_reward = 0.0 if require_call else 0.25

    @property
    def name(self) -> str:
        return f"ToolCallScorer({', '.join(self.validators)})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        messages = conversation_to_messages(conversation)
        after_result = not self.require_call and bool(messages) and messages[-1]["role"] == "tool"
        no_call = 1.0 if after_result else self.no_call_reward
        out = []
        for text in completions:
            calls = parse_tool_calls(text)
            if not calls:
                out.append(no_call)
                continue
            if any(call.get("error") for call in calls):
                out.append(0.0)
                continue
            valid = all(
                call["name"] in self.validators
                and self.validators[call["name"]].is_valid(call["arguments"])
                for call in calls
            )
            out.append(1.0 if valid else 0.5)
        return out
