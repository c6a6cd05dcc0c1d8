"""One model call: (messages, tools, options) → a :class:`Call` → the decoding core.

:func:`prepare_call` converts the messages, normalises ``tools`` / ``tool_choice`` /
``response_format`` and adds their prompt instructions; :func:`compose_reward` joins
the validity scorers to the base reward (the agent middleware uses it too);
:func:`decode` hands compatible calls to :func:`langchain_aligned.decoding.generate`
in one engine call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

import rewards

from ..decoding.base import Hooks, Result, Strategy
from ..decoding.generate import generate
from ..decoding.params import SamplingParams
from ..errors import InvalidInputError
from .messages import add_instruction, normalize_tool_choice, to_hf_messages, tool_name
from .structured_output import FirstObjectScorer, add_json_prompt

__all__ = ["Call", "bind_tool_specs", "compose_reward", "decode", "prepare_call"]


@dataclass
class Call:
    """Everything one model call needs, prepared from messages and call options."""

    messages: list[dict[str, Any]]
    """The conversation in chat format, instructions for tools / JSON added."""
    tools: list[dict[str, Any]] | None
    """Bound tools in OpenAI function format; None when none are bound (or
    ``tool_choice="none"``)."""
    tool_choice: str | None
    """None (the model decides), ``"any"`` or the name of the tool to call."""
    response_format: dict[str, Any] | None
    """``{"type": "json_schema" | "json_mode", "schema": ...}`` for structured output."""
    params: SamplingParams
    """Sampling parameters of the call."""
    model: Any
    """The model spec (the chat model's ``model`` unless the call overrides it)."""

    def group_key(self) -> str:
        """Calls with equal keys can be decoded in one engine call."""
        model = self.model if isinstance(self.model, str) else f"id:{id(self.model)}"
        return json.dumps(
            [model, self.tools, self.tool_choice, self.response_format, repr(self.params)],
            sort_keys=True,
            default=repr,
        )

    @property
    def stream_text(self) -> bool:
        """Whether reply text streams as it is decoded: with tools bound the reply may
        be a call, so it arrives whole on the last chunk."""
        return not self.tools


def bind_tool_specs(
    tools: Sequence[Any], tool_choice: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """What ``bind_tools`` binds: each tool in OpenAI function format and the
    normalised ``tool_choice``, checked now rather than mid-call.

    Raises:
        InvalidInputError: a tool that cannot be rendered as a JSON-serialisable,
            valid function schema, or a ``tool_choice`` naming no bound tool.
    """
    formatted = [_openai_tool(index, tool) for index, tool in enumerate(tools)]
    try:  # the validity reward needs valid JSON schemas
        rewards.ToolCallScorer(formatted)
    except rewards.InvalidScorerConfig as exc:
        raise InvalidInputError(f"bind_tools: {exc}") from exc
    choice = normalize_tool_choice(tool_choice)
    names = {tool_name(t) for t in formatted}
    if choice not in (None, "any", "none") and choice not in names:
        raise InvalidInputError(
            f"tool_choice={choice!r} names no bound tool; bound: {', '.join(sorted(names))}"
        )
    return formatted, choice


def _openai_tool(index: int, tool: Any) -> dict[str, Any]:
    """``tool`` in OpenAI function format, checked to be JSON-serialisable."""
    label = getattr(tool, "name", None) or getattr(tool, "__name__", None)
    if label is None and isinstance(tool, Mapping):
        label = tool.get("function", tool).get("name") or tool.get("title")
    try:
        formatted = convert_to_openai_tool(tool)
    except Exception as exc:
        raise InvalidInputError(
            f"tool {index} ({label or repr(tool)[:40]}) cannot be rendered as a "
            f"function schema: {exc}"
        ) from exc
    try:
        json.dumps(formatted)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"tool {index} ({label}) has a schema that is not JSON-serialisable: {exc}"
        ) from exc
    return formatted


def prepare_call(
    messages: list[BaseMessage], options: dict[str, Any], *, params: SamplingParams, model: Any
) -> Call:
    """The :class:`Call` for ``messages`` and the call's ``options`` (the keyword
    arguments LangChain passes: ``tools``, ``tool_choice``, ``response_format``,
    ``model``). Consumes those keys from ``options``.

    Raises:
        InvalidInputError: bad messages, or a ``tool_choice`` naming no bound tool.
    """
    hf_messages = to_hf_messages(messages)
    tools = options.pop("tools", None) or None
    tool_choice = normalize_tool_choice(options.pop("tool_choice", None))
    response_format = options.pop("response_format", None)
    model = options.pop("model", None) or model
    options.pop("ls_structured_output_format", None)
    if tool_choice == "none" or not tools:
        tools, tool_choice = None, None
    elif tool_choice not in (None, "any") and tool_choice not in {tool_name(t) for t in tools}:
        raise InvalidInputError(
            f"tool_choice={tool_choice!r} names no bound tool; bound: "
            + ", ".join(tool_name(t) for t in tools)
        )
    if tool_choice is not None:
        target = "one of the tools" if tool_choice == "any" else f"the {tool_choice} tool"
        hf_messages = add_instruction(hf_messages, f"Answer by calling {target}.", prefer_user=True)
    if response_format is not None:
        hf_messages = add_json_prompt(hf_messages, response_format.get("schema"))
    return Call(
        messages=hf_messages,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        params=params,
        model=model,
    )


def compose_reward(
    base: Any,
    *,
    tools: Sequence[Any] | None = None,
    tool_choice: str | None = None,
    response_format: Mapping[str, Any] | None = None,
    validity_weight: float,
) -> Any:
    """``base`` joined by ``rewards.ToolCallScorer`` when tools are bound (a call is
    required when ``tool_choice`` forces one, to the named tool unless ``"any"``) and
    by ``rewards.JSONSchemaScorer`` on the first object when JSON output is requested,
    each with ``validity_weight`` beside the base reward's 1.

    Raises:
        rewards.InvalidScorerConfig: a tool the validity scorer cannot read.
    """
    extras: dict[Any, float] = {}
    if tools and validity_weight:
        forced = tool_choice is not None
        if forced and tool_choice != "any":
            tools = [t for t in tools if tool_name(t) == tool_choice]
        extras[rewards.ToolCallScorer(list(tools), require_call=forced)] = validity_weight
    if response_format is not None and validity_weight:
        schema = response_format.get("schema") or {"type": "object"}
        extras[FirstObjectScorer(rewards.JSONSchemaScorer(schema))] = validity_weight
    if not extras:
        return base
    return rewards.WeightedScorer({base: 1.0, **extras})


def decode(
    calls: Sequence[Call],
    hooks: Hooks,
    *,
    strategy: Strategy,
    reward: Any,
    seed: int | None,
    load_options: Mapping[str, Any],
    engine: str = "transformers",
    engine_kwargs: Mapping[str, Any] | None = None,
) -> list[Result]:
    """Decode compatible calls (equal :meth:`Call.group_key`) in one ``generate`` call,
    so they share forward passes; one result per call, in order."""
    first = calls[0]
    return generate(
        first.model,
        [call.messages for call in calls],
        strategy=strategy,
        reward=reward,
        temperature=first.params.temperature,
        top_p=first.params.top_p,
        top_k=first.params.top_k,
        max_new_tokens=first.params.max_new_tokens,
        stop=first.params.stop,
        seed=seed,
        tools=first.tools,
        hooks=hooks,
        engine=engine,
        engine_kwargs=engine_kwargs,
        **load_options,
    )
