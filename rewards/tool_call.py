"""Tool-call parsing and ``ToolCallScorer``.

Tool calls are written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
(the format ``langchain_aligned`` renders into prompts); a bare JSON object with
``name`` and ``arguments`` (or ``parameters``) is accepted too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, conversation_to_messages

__all__ = ["ToolCallScorer", "normalize_tool", "parse_tool_calls"]

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def _first_json_object(text: str) -> tuple[Any, int] | None:
    start = text.find("{")
    while start >= 0:
        try:
            value, end = json.JSONDecoder().raw_decode(text[start:])
            return value, start + end
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls found in ``text`` as ``{"name": str, "arguments": dict}`` dicts.

    A block whose JSON does not parse is returned as ``{"name": None, "arguments":
    None, "error": ...}`` so callers can tell "no call" from "a broken call".
    """
    calls: list[dict[str, Any]] = []
    blocks = _BLOCK.findall(text) if "<tool_call>" in text else []
    candidates = blocks or ([text] if '"name"' in text else [])
    for block in candidates:
        found = _first_json_object(block)
        if found is None:
            if blocks:
                calls.append({"name": None, "arguments": None, "error": "no JSON object"})
            continue
        value = found[0]
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            if blocks:
                calls.append({"name": None, "arguments": None, "error": "no tool name"})
            continue
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                calls.append(
                    {"name": value["name"], "arguments": None, "error": "arguments are not JSON"}
                )
                continue
        calls.append(
            {"name": value["name"], "arguments": arguments if isinstance(arguments, dict) else {}}
        )
    return calls


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
