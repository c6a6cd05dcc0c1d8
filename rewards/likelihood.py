"""``LikelihoodScorer``: mean log-likelihood of a reply under a causal LM.

The Speculative Rejection paper's self-reward mode: with the policy itself as the
model, a reply the model finds likely (fluent, on-topic for the conversation) scores
high. Any causal LM works; the default is the embedded SmolLM2-135M-Instruct.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._causal import CausalLMMixin
from .base import Conversation, InvalidScorerConfig, RewardScorer, conversation_to_messages

__all__ = ["LikelihoodScorer"]


class LikelihoodScorer(CausalLMMixin, RewardScorer):
    """Mean log-probability per token of the completion given the rendered conversation.

    An empty completion scores ``empty_score`` (default −10, below any fluent reply's
    mean log-likelihood). Completions are truncated to ``max_completion_tokens``.
    """

    def __init__(
        self,
        model: Any = "smollm2-135m-instruct",
        *,
        batch_size: int = 8,
        max_completion_tokens: int = 256,
        empty_score: float = -10.0,
        **load_kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise InvalidScorerConfig(f"LikelihoodScorer(batch_size={batch_size!r}) must be ≥ 1")
        self._init_model(model, load_kwargs)
        self.batch_size = batch_size
        self.max_completion_tokens = max_completion_tokens
        self.empty_score = float(empty_score)

    @property
    def name(self) -> str:
        return f"LikelihoodScorer({self.model_source if isinstance(self.model_source, str) else 'model'})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        from langchain_aligned.models import render_chat

        handle, engine = self._load()
        prompt = engine.encode(render_chat(handle, conversation_to_messages(conversation)))
        tokenizer = handle.tokenizer
        out: list[float] = [self.empty_score] * len(completions)
        todo = []
        for index, text in enumerate(completions):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][
                : self.max_completion_tokens
            ]
            if ids:
                todo.append((index, ids))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            logprobs = engine.score_continuations([prompt] * len(chunk), [ids for _, ids in chunk])
            for (index, _), values in zip(chunk, logprobs, strict=True):
                out[index] = float(values.mean())
        return out
