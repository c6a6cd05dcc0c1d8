"""LangChain messages ⇄ chat-format messages, both ways.

Inbound: :func:`to_hf_messages` turns LangChain messages into the chat-format dicts
the decoding core renders (``{"role", "content", "tool_calls", ...}``). Outbound:
:func:`split_tool_calls` separates a reply's calls to bound tools from its text,
:func:`text_chunk` / :func:`final_chunk` build the chunks of a decoding
:class:`~langchain_aligned.decoding.Result` (the one decode path is a stream) and
:func:`aggregate_chunks` joins them into the ``ChatResult`` of a non-streamed call.
:func:`render_reply` writes a LangChain reply back as text (its tool calls in the
format :mod:`rewards.tool_call` owns), for scoring replies of any chat model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from rewards.base import conversation_to_messages
from rewards.tool_call import find_tool_calls, format_tool_call

from ..decoding.base import Result
from ..errors import InvalidInputError

__all__ = [
    "PROVIDER",
    "add_instruction",
    "aggregate_chunks",
    "final_chunk",
    "model_name",
    "normalize_tool_choice",
    "render_reply",
    "split_tool_calls",
    "text_chunk",
    "to_hf_messages",
    "tool_name",
]

PROVIDER = "langchain_aligned"
"""``response_metadata["model_provider"]`` of every reply: the replies come from this
library's decoding strategies, not from a Hugging Face pipeline."""

_TOOL_CALL_BLOCKS = ("tool_use", "tool_call", "function_call")
"""Content-block types that repeat an ``AIMessage``'s ``tool_calls``."""


# --------------------------------------------------------------------------- inbound
def _text_content(message: BaseMessage, index: int, *, strict: bool) -> str:
    """The text of a message; non-text blocks raise (``strict``) or are left out."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif (
            isinstance(message, AIMessage)
            and isinstance(block, Mapping)
            and block.get("type") in _TOOL_CALL_BLOCKS
        ):
            continue  # the same calls are in message.tool_calls
        elif strict:
            kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
            raise InvalidInputError(
                f"message {index} ({type(message).__name__}) has a {kind!r} content block; "
                "AlignedChatModel supports text only — remove images and other blocks"
            )
    return "".join(parts)


def to_hf_messages(messages: Sequence[BaseMessage], *, strict: bool = True) -> list[dict[str, Any]]:
    """Convert LangChain messages to Hugging Face chat-format dicts.

    ``SystemMessage`` → system, ``HumanMessage`` → user, ``AIMessage`` → assistant
    (tool calls as HF ``tool_calls``), ``ToolMessage`` → tool (with ``tool_call_id`` and
    the name of the tool it answers).

    ``strict=False`` is for scoring the conversations of any chat model (the agent
    middleware): non-text content blocks (images, …) are left out, a tool message
    answering no earlier call (a trimmed history) keeps its own name, and other
    message types become user messages, instead of raising.

    Raises:
        InvalidInputError: (``strict`` only) empty list, unsupported content blocks or
            roles, or a tool message answering no earlier tool call (names the message).
    """
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        text = _text_content(message, index, strict=strict)
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": text})
        elif isinstance(message, AIMessage):
            item: dict[str, Any] = {"role": "assistant", "content": text}
            if message.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": call.get("id") or f"call_{index}_{n}",
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call.get("args", {})},
                    }
                    for n, call in enumerate(message.tool_calls)
                ]
                call_names.update((c["id"], c["function"]["name"]) for c in item["tool_calls"])
            out.append(item)
        elif isinstance(message, ToolMessage):
            if strict and message.tool_call_id not in call_names:
                raise InvalidInputError(
                    f"message {index} is a ToolMessage for tool_call_id={message.tool_call_id!r}, "
                    "but no earlier AIMessage made that tool call"
                )
            out.append(
                {
                    "role": "tool",
                    "content": text,
                    "tool_call_id": message.tool_call_id,
                    "name": message.name or call_names.get(message.tool_call_id, "tool"),
                }
            )
        elif isinstance(message, ChatMessage) and message.role in ("system", "user", "assistant"):
            out.append({"role": message.role, "content": text})
        elif not strict:
            out.append({"role": "user", "content": text})
        else:
            raise InvalidInputError(
                f"message {index} has unsupported type {type(message).__name__}"
                + (f" with role {message.role!r}" if isinstance(message, ChatMessage) else "")
            )
    # The one validation of chat-format messages, with its error texts.
    return conversation_to_messages(out, error=InvalidInputError, nonempty=strict)


def tool_name(tool: Mapping[str, Any]) -> str:
    """The name of a tool in OpenAI function format (or a bare function dict)."""
    return str(tool.get("function", tool).get("name"))


def normalize_tool_choice(choice: Any) -> str | None:
    """``tool_choice`` as None (the model decides), ``"any"``, ``"none"`` or a tool name.

    Accepts LangChain's values (None, ``"auto"``, ``"any"``, ``"required"``, ``True``,
    ``False``, a name) and OpenAI / Anthropic dicts (``{"type": "function", "function":
    {"name": ...}}``, ``{"type": "tool", "name": ...}``, ``{"type": "auto" | ...}``).
    """
    if choice in (None, "auto", False):
        return None
    if choice in (True, "required", "any"):
        return "any"
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = (function.get("name") if isinstance(function, Mapping) else None) or choice.get(
            "name"
        )
        if name:
            return str(name)
        return normalize_tool_choice(choice.get("type"))
    if isinstance(choice, str):
        return choice
    raise InvalidInputError(
        f"tool_choice={choice!r}: use None, 'auto', 'any', 'required', 'none' or a tool name"
    )


def model_name(model: Any) -> str:
    """The name of a model spec as reported in metadata."""
    if isinstance(model, str):
        return model
    name = getattr(model, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(model, tuple) and model:
        config = getattr(model[0], "config", None)
        return str(getattr(config, "_name_or_path", "") or type(model[0]).__name__)
    return type(model).__name__


# --------------------------------------------------------------------------- outbound
def split_tool_calls(text: str, tool_names: Collection[str]) -> tuple[str, list[dict[str, Any]]]:
    """Reply text without its calls to bound tools, and those calls as LangChain tool
    calls (each with a fresh ``call_…`` id), in the order they were written.

    Only calls that parsed and name one of ``tool_names`` are calls: exactly their
    spans are cut out (the whole ``<tool_call>`` block, or a bare call's JSON object)
    and the text around them is kept as written, with the leading and trailing
    whitespace of the result stripped. Everything else stays in the text verbatim:
    broken blocks (no JSON, no name, arguments that are not JSON), calls to tools that
    are not bound, and prose JSON that merely has a ``"name"``. A reply without a call
    is returned unchanged. See ``rewards.find_tool_calls`` for what is parsed.
    """
    calls: list[dict[str, Any]] = []
    pieces: list[str] = []
    kept_from = 0
    for match in find_tool_calls(text):
        if match.error is not None or match.name not in tool_names:
            continue
        calls.append(
            {
                "name": match.name,
                "args": match.arguments or {},
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "tool_call",
            }
        )
        pieces.append(text[kept_from : match.start])
        kept_from = match.end
    if not calls:
        return text, []
    pieces.append(text[kept_from:])
    return "".join(pieces).strip(), calls


def _reply_parts(
    result: Result, tools: Sequence[Mapping[str, Any]] | None, model: Any
) -> tuple[str, list[dict[str, Any]], dict[str, Any], UsageMetadata]:
    """(content, tool calls, response metadata, usage) of one decoded reply."""
    text, tool_calls = (
        split_tool_calls(result.text, {tool_name(t) for t in tools}) if tools else (result.text, [])
    )
    metadata = {
        "alignment": result.stats.to_dict(),
        "model_name": model_name(model),
        "model_provider": PROVIDER,
        "finish_reason": "tool_calls" if tool_calls else result.finish_reason,
        "seed": result.stats.seed,
    }
    usage = UsageMetadata(
        input_tokens=result.stats.prompt_tokens,
        output_tokens=result.stats.tokens_returned,
        total_tokens=result.stats.prompt_tokens + result.stats.tokens_returned,
    )
    return text, tool_calls, metadata, usage


def aggregate_chunks(chunks: Iterator[ChatGenerationChunk]) -> ChatResult:
    """The ``ChatResult`` of a decode's whole stream of chunks (its text deltas and its
    last chunk, :func:`final_chunk`): the reply as one ``AIMessage`` with its tool
    calls, usage and metadata, and the alignment statistics as ``llm_output``."""
    result = generate_from_stream(chunks)
    metadata = result.generations[0].message.response_metadata
    result.llm_output = {"model_name": metadata["model_name"], "alignment": metadata["alignment"]}
    return result


def text_chunk(delta: str) -> ChatGenerationChunk:
    """A streamed piece of reply text."""
    return ChatGenerationChunk(message=AIMessageChunk(content=delta))


def final_chunk(
    result: Result, tools: Sequence[Mapping[str, Any]] | None, model: Any, *, streamed_text: bool
) -> ChatGenerationChunk:
    """The last chunk of a stream: metadata, usage, tool calls, and the reply text
    unless it was already streamed (``streamed_text``)."""
    text, tool_calls, metadata, usage = _reply_parts(result, tools, model)
    # Floats and lists (rewards, timings) and input_tokens go on this one chunk only:
    # LangChain sums ints across chunks but refuses to merge two different floats.
    chunk = AIMessageChunk(
        content="" if streamed_text else text,
        response_metadata=metadata,
        usage_metadata=usage,
        tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(tool_calls)
        ],
        chunk_position="last",
    )
    return ChatGenerationChunk(message=chunk, generation_info=dict(metadata))


def render_reply(message: BaseMessage) -> str:
    """A reply's text with its tool calls appended as ``<tool_call>`` JSON blocks."""
    text = message.text if hasattr(message, "text") else str(message.content)
    calls = getattr(message, "tool_calls", None) or []
    blocks = [format_tool_call(c["name"], c.get("args", {})) for c in calls]
    return "\n".join(p for p in (text, *blocks) if p)


def add_instruction(
    messages: list[dict[str, Any]], text: str, *, prefer_user: bool = False
) -> list[dict[str, Any]]:
    """Add an instruction: to the final user message (``prefer_user``, when the
    conversation ends with one), else to the system message (created when absent)."""
    if prefer_user and messages and messages[-1]["role"] == "user":
        last = dict(messages[-1])
        last["content"] = f"{last['content']}\n\n{text}" if last["content"] else text
        return [*messages[:-1], last]
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{text}" if first["content"] else text
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
