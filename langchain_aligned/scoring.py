"""The causal LM that ``rewards``' likelihood and judge scorers get from this library.

``rewards`` defines what such a scorer needs (:class:`rewards.causal_lm.CausalLM`) and
imports nothing from here; this module implements it over a loaded model and the
transformers engine, and ``pyproject.toml`` registers :func:`load` under the
``rewards.causal_lm`` entry-point group. A scorer naming the same source as a chat model
therefore shares its weights (the per-process model cache of
:func:`~langchain_aligned.models.load_model`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .engines.base import Candidate
from .engines.transformers import engine_for
from .models import ModelHandle, load_model, render_chat

__all__ = ["EngineCausalLM", "load"]


class EngineCausalLM:
    """:class:`rewards.causal_lm.CausalLM` over one model's transformers engine."""

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle
        self.model = handle.model
        self.tokenizer = handle.tokenizer
        self.engine = engine_for(handle)

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return self.engine.encode(render_chat(self.handle, messages))

    def next_token_logprobs(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        state = self.engine.prefill([Candidate(i, 0, list(p)) for i, p in enumerate(prompts)])
        assert state.next_logits is not None  # a prefill computes them
        logits = self.engine.vocab_logits(state.next_logits).float()  # [batch, vocab]
        return logits.log_softmax(-1)

    def continuation_logprobs(
        self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
    ) -> list[torch.Tensor]:
        return self.engine.score_continuations(prompts, continuations)


def load(source: Any, **options: Any) -> EngineCausalLM:
    """The :class:`EngineCausalLM` of a model source (what ``load_model`` accepts)."""
    return EngineCausalLM(load_model(source, **options))
