"""Render a conversation into the prompt text a causal LM continues.

Messages use the Hugging Face chat format: dicts with ``role`` (``system``, ``user``,
``assistant`` or ``tool``), ``content`` (a string), and optionally ``tool_calls`` on
assistant messages (``[{"id", "type": "function", "function": {"name", "arguments"}}]``)
and ``tool_call_id`` / ``name`` on tool messages.

Rendering rules:

1. The list is validated (non-empty, known roles, string content) and consecutive
   messages of the same role are merged (joined by a blank line), because many chat
   templates raise "roles must alternate". Tool messages and assistant messages with
   tool calls are never merged: each carries its own call id.
2. With a chat template, the tokenizer renders the messages with
   ``add_generation_prompt=True``. Tools are passed to templates that accept them;
   for templates that do not (SmolLM2's ChatML, for one), a system block describing
   the tools and the call format is added, followed by one demonstration exchange per
   tool (a user asking for the call, the assistant answering with it, placeholder
   arguments from the schema; at most ``MAX_TOOL_DEMONSTRATIONS``), and assistant tool
   calls in the history are written in that same format, so the model sees what it
   must produce. Small models need the demonstrations: on the 30 tool prompts of
   ``benchmarks/bench_structured.py`` SmolLM2-135M wrote 0 valid calls with the system
   block alone and 8 with the demonstrations (plain sampling, one seed per prompt).
3. Without a chat template (base models), the documented plain format is used::

       System: <system text>

       User: <user text>

       Assistant: <assistant text>

       Tool (<name>): <tool result>

       Assistant:

Tool calls are written in the format :mod:`rewards.tool_call` owns
(``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, :func:`format_tool_call`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rewards.base import ROLES, conversation_to_messages
from rewards.tool_call import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_tool_call

from ..errors import InvalidInputError

__all__ = [
    "ROLES",
    "format_tool_call",
    "normalize_messages",
    "placeholder_arguments",
    "render_chat",
    "tool_demonstrations",
    "tool_instructions",
]


def _tool_name(tool: Mapping[str, Any]) -> str:
    function = tool.get("function", tool)
    return str(function.get("name", "?"))


def tool_instructions(tools: Sequence[Mapping[str, Any]]) -> str:
    """The system text that describes ``tools`` to a model whose template cannot."""
    specs = []
    for tool in tools:
        function = tool.get("function", tool)
        specs.append(
            json.dumps(
                {
                    "name": function.get("name"),
                    "description": function.get("description", ""),
                    "parameters": function.get("parameters", {}),
                }
            )
        )
    return (
        "You can call these tools:\n"
        + "\n".join(specs)
        + "\nTo call a tool, reply with only "
        + TOOL_CALL_OPEN
        + '{"name": "<tool name>", "arguments": {<arguments as JSON>}}'
        + TOOL_CALL_CLOSE
        + ". Otherwise reply normally."
    )


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate messages (:func:`rewards.base.conversation_to_messages`, the one
    validation) and merge consecutive same-role messages.

    Raises:
        InvalidInputError: not a list, an empty list, a non-dict, an unknown role or
            non-string content (the message names the index and the value).
    """
    if isinstance(messages, str):
        raise InvalidInputError(
            "messages must be a list of chat messages, got a str; wrap a prompt as "
            '[{"role": "user", "content": prompt}]'
        )
    merged: list[dict[str, Any]] = []
    for item in conversation_to_messages(messages, error=InvalidInputError, nonempty=True):
        role, content = item["role"], item["content"]
        tool_calls = item.get("tool_calls") or []
        if tool_calls:
            item["tool_calls"] = list(tool_calls)
        else:
            item.pop("tool_calls", None)
        previous = merged[-1] if merged else None
        mergeable = (
            previous is not None
            and previous["role"] == role
            and role in ("system", "user", "assistant")
            and not previous.get("tool_calls")
            and not tool_calls
        )
        if mergeable and previous is not None:
            previous["content"] = "\n\n".join(p for p in (previous["content"], content) if p)
        else:
            merged.append(item)
    return merged


def _template_supports(tokenizer: Any, word: str) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(str(t) for t in template.values())
    return bool(template) and word in str(template)


def _inline_tool_calls(message: dict[str, Any]) -> dict[str, Any]:
    calls = []
    for call in message.get("tool_calls", []):
        function = call.get("function", call)
        calls.append(format_tool_call(function.get("name", ""), function.get("arguments", {})))
    text = "\n".join(p for p in (message["content"], *calls) if p)
    return {"role": "assistant", "content": text}


MAX_TOOL_DEMONSTRATIONS = 4
"""Tools shown with a demonstration exchange when tools are injected into the prompt."""

_PLACEHOLDERS = {
    "integer": 1,
    "number": 1.5,
    "string": "example",
    "boolean": True,
    "array": [],
    "object": {},
}


_MAX_PLACEHOLDER_DEPTH = 6


def placeholder_arguments(
    parameters: Mapping[str, Any], root: Mapping[str, Any] | None = None, depth: int = 0
) -> dict[str, Any]:
    """A best-effort object for a JSON schema, for demonstrations: the required
    properties (all of them when ``required`` is absent or empty, to show every key),
    each with a placeholder of its type — the first value of an ``enum``, the first
    non-null option of ``anyOf``/``oneOf``, ``$ref`` resolved in ``$defs``, nested
    objects filled the same way, numbers and strings moved inside ``minimum`` /
    ``maximum`` / ``minLength`` / ``maxLength``. ``pattern`` and ``format`` are not
    followed. A recursive schema stops after a few levels (null where allowed, else an
    empty object)."""
    root = parameters if root is None else root
    parameters = _resolve(parameters, root)
    properties = parameters.get("properties") or {}
    required = parameters.get("required") or list(properties)
    return {name: _placeholder(properties.get(name) or {}, root, depth + 1) for name in required}


def _resolve(spec: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    return spec


def _placeholder(spec: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    spec = _resolve(spec, root)
    if spec.get("enum"):
        return spec["enum"][0]
    if "const" in spec:
        return spec["const"]
    deep = depth >= _MAX_PLACEHOLDER_DEPTH
    for key in ("anyOf", "oneOf", "allOf"):
        choices = spec.get(key) or []
        options = [o for o in choices if _resolve(o, root).get("type") != "null"]
        if deep and len(options) < len(choices):
            return None  # a recursive schema ends where null is allowed
        if options:
            return _placeholder(options[0], root, depth)
    kind = spec.get("type", "string")
    if isinstance(kind, list):  # ["string", "null"]
        if deep and "null" in kind:
            return None
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" and spec.get("properties"):
        return {} if deep else placeholder_arguments(spec, root, depth)
    if kind == "array" and isinstance(spec.get("items"), Mapping) and spec.get("minItems"):
        return [_placeholder(spec["items"], root, depth + 1)] * int(spec["minItems"])
    value: Any = _PLACEHOLDERS.get(kind, "example")
    if kind in ("integer", "number"):
        low = spec.get("minimum", spec.get("exclusiveMinimum"))
        high = spec.get("maximum", spec.get("exclusiveMaximum"))
        if isinstance(low, int | float):
            value = max(value, low + (1 if "exclusiveMinimum" in spec else 0))
        if isinstance(high, int | float):
            value = min(value, high - (1 if "exclusiveMaximum" in spec else 0))
        if kind == "integer":
            value = int(value)
    elif kind == "string":
        value = value.ljust(int(spec.get("minLength", 0)), "e")[: spec.get("maxLength")]
    return value


def tool_demonstrations(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One user/assistant exchange per tool showing the exact call format."""
    turns: list[dict[str, Any]] = []
    for tool in list(tools)[:MAX_TOOL_DEMONSTRATIONS]:
        function = tool.get("function", tool)
        arguments = placeholder_arguments(function.get("parameters") or {})
        listed = ", ".join(f"{key}={json.dumps(value)}" for key, value in arguments.items())
        request = f"Call {_tool_name(tool)}" + (f" with {listed}." if listed else ".")
        turns.append({"role": "user", "content": request})
        turns.append(
            {"role": "assistant", "content": format_tool_call(_tool_name(tool), arguments)}
        )
    return turns


def _with_tool_system(messages: list[dict[str, Any]], tools: Sequence[Mapping[str, Any]]):
    instructions = tool_instructions(tools)
    rest = messages[1:] if messages and messages[0]["role"] == "system" else messages
    # Demonstrations end with an assistant turn, so they only go before a user turn
    # (templates that require alternating roles would reject anything else).
    demonstrations = tool_demonstrations(tools) if rest and rest[0]["role"] == "user" else []
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = "\n\n".join(p for p in (first["content"], instructions) if p)
        return [first, *demonstrations, *messages[1:]]
    return [{"role": "system", "content": instructions}, *demonstrations, *messages]


def _plain_format(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    parts = []
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            message = _inline_tool_calls(message)
        if role == "tool":
            label = f"Tool ({message.get('name') or message.get('tool_call_id') or 'result'})"
        else:
            label = role.capitalize()
        parts.append(f"{label}: {message['content']}")
    text = "\n\n".join(parts)
    if add_generation_prompt:
        text += "\n\nAssistant:"
    return text


def render_chat(
    handle: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Render ``messages`` (and optional ``tools``) into prompt text for ``handle``.

    ``handle`` is a :class:`~langchain_aligned.models.ModelHandle` or a tokenizer.
    """
    tokenizer = getattr(handle, "tokenizer", handle)
    normalized = normalize_messages(messages)
    tools = list(tools or [])
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(
            tool.get("function", tool).get("name"), str
        ):
            raise InvalidInputError(
                f"tool {index} ({tool!r:.80}) is not an OpenAI-style function schema with a name"
            )
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        if tools:
            normalized = _with_tool_system(normalized, tools)
        return _plain_format(normalized, add_generation_prompt)
    native_tools = bool(tools) and _template_supports(tokenizer, "tools")
    if not _template_supports(tokenizer, "tool_calls"):
        normalized = [_inline_tool_calls(m) if m.get("tool_calls") else m for m in normalized]
    if tools and not native_tools:
        normalized = _with_tool_system(normalized, tools)
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
    if native_tools:
        kwargs["tools"] = tools
    try:
        text = tokenizer.apply_chat_template(normalized, **kwargs)
    except Exception as exc:  # template errors are jinja exceptions of many kinds
        raise InvalidInputError(
            f"The chat template of {getattr(handle, 'name', type(tokenizer).__name__)} "
            f"could not render these messages: {exc}"
        ) from exc
    return str(text)
