"""Draft models for the speculative strategies.

A draft is named like any model (an id, alias, ``(model, tokenizer)`` pair or handle),
or as a :class:`PromptSteeredDraft`: the same weights as the target (or another model)
with its own system prompt. A prompt-steered draft needs no training — the system
prompt shifts its distribution — and keeps its own prompt and KV cache while sharing
the generated tokens with the target.

Every draft must share the target's vocabulary: :func:`bind_draft` checks it before any
decoding and raises :class:`~langchain_aligned.errors.VocabularyMismatchError` naming
both sizes. Embedding matrices padded past the tokenizer's vocabulary are fine; only
the tokenizer vocabularies are compared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewards.base import conversation_to_messages

from ..engines.transformers import DecodingEngine, engine_for
from ..errors import InvalidInputError, VocabularyMismatchError
from ..models.chat import render_chat
from ..models.loading import ModelHandle, load_model
from .base import Request

__all__ = ["BoundDraft", "PromptSteeredDraft", "bind_draft"]


@dataclass(frozen=True)
class PromptSteeredDraft:
    """A draft that is a model (default: the target itself) with its own system prompt."""

    system_prompt: str | None = None
    """Replaces the conversation's system message; ``None`` keeps the conversation as
    it is, ``""`` removes the system message."""
    model: Any = None
    """Weights of the draft; ``None`` means the target's own weights."""

    def __post_init__(self) -> None:
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise InvalidInputError(
                f"PromptSteeredDraft(system_prompt={self.system_prompt!r}) must be a string or None"
            )

    def steer(self, conversation: Sequence[Mapping[str, Any]] | str) -> list[dict[str, Any]]:
        """The conversation as this draft sees it."""
        messages = conversation_to_messages(conversation, error=InvalidInputError)
        if self.system_prompt is None:
            return messages
        rest = [m for m in messages if m.get("role") != "system"]
        if self.system_prompt == "":
            return rest
        return [{"role": "system", "content": self.system_prompt}, *rest]


@dataclass
class BoundDraft:
    """A draft ready to decode next to a target engine."""

    engine: DecodingEngine
    prompt: Callable[[Request], list[int]]
    """Prompt ids of the draft for a request."""
    label: str


def _vocabulary(handle: ModelHandle) -> dict[str, int]:
    return dict(handle.tokenizer.get_vocab())


def check_vocabulary(target: ModelHandle, other: ModelHandle, role: str) -> None:
    """Raise if ``other`` cannot share tokens with ``target``."""
    if target is other:
        return
    if other.vocab_size != target.vocab_size:
        raise VocabularyMismatchError(
            f"The {role} ({other.name}) has a vocabulary of {other.vocab_size} tokens but the "
            f"target ({target.name}) has {target.vocab_size}; speculative strategies need one "
            "shared vocabulary"
        )
    if _vocabulary(other) != _vocabulary(target):
        raise VocabularyMismatchError(
            f"The {role} ({other.name}) and the target ({target.name}) both have "
            f"{target.vocab_size} tokens but map them to different ids; they must share a tokenizer"
        )
    if other.logits_size < other.vocab_size:
        raise VocabularyMismatchError(
            f"The {role} ({other.name}) produces {other.logits_size} logits for a vocabulary of "
            f"{other.vocab_size} tokens"
        )


def bind_draft(spec: Any, target: DecodingEngine, role: str = "draft") -> BoundDraft:
    """Resolve a draft spec against the target engine (loads weights, checks vocabularies)."""
    if spec is None:
        raise InvalidInputError(
            f"the {role} is missing; pass a model (id, alias, (model, tokenizer) pair) or "
            "PromptSteeredDraft(system_prompt=...)"
        )
    if isinstance(spec, PromptSteeredDraft):
        handle = target.handle if spec.model is None else load_model(spec.model)
        steer = spec.steer
        label = f"prompt-steered({spec.system_prompt!r})"
    else:
        handle = load_model(spec)
        steer = None
        label = handle.name
    check_vocabulary(target.handle, handle, role)
    engine = target if handle is target.handle else engine_for(handle)

    def prompt(request: Request) -> list[int]:
        if steer is None and engine is target:
            return list(request.prompt_ids)
        conversation = (
            steer(request.conversation)
            if steer is not None
            else PromptSteeredDraft(None).steer(request.conversation)
        )
        text = render_chat(engine.handle, conversation, tools=list(request.tools) or None)
        return engine.encode(text)

    return BoundDraft(engine=engine, prompt=prompt, label=label)
