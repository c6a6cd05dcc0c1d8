"""``LikelihoodScorer``: mean log-likelihood of a reply under a causal LM.

The Speculative Rejection paper's self-reward mode: with the policy itself as the
model, a reply the model finds likely (fluent, on-topic for the conversation) scores
high. Any causal LM works; the default is the embedded SmolLM2-135M-Instruct.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean as mean
from typing import Any

from .base import (
    Conversation,
    InvalidScorerConfig,
    RewardScorer,
    conversation_to_messages,
    recorded_logprobs,
)
from .causal_lm import CausalLMMixin

__all__ = ["LikelihoodScorer"]


class LikelihoodScorer(CausalLMMixin, RewardScorer):
    """Mean log-probability per token of the completion given the rendered conversation.

    An empty completion scores ``empty_score`` (default −10, below any fluent reply's
    mean log-likelihood). Completions are truncated to ``max_completion_tokens``.

    Over the policy's own weights (the same loaded model as the chat model or
    ``generate`` call) it reads the log-probabilities the decoder recorded
    (:class:`~rewards.base.RecordedLogprobs`) instead of running the model again,
    whenever they apply: same model object, same prompt, and the text is exactly what
    the recorded tokens decode to. The value is then the likelihood of the tokens the
    policy sampled — the paper's self-reward. It equals a recomputation whenever the
    text tokenises back to those tokens; when sampling produced a non-canonical
    tokenisation of the text, a recomputation would score the canonical tokens
    instead, a different sequence. Otherwise (another model, tools in the prompt, a
    reply cut at a stop string) it runs the model on the tokenised text.
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
        lm = self._load()
        prompt = lm.prompt_ids(conversation_to_messages(conversation))
        tokenizer = lm.tokenizer
        # Self-reward for free: when the texts were decoded by this very model from this
        # very prompt, the decoder recorded each token's log-probability already.
        recorded = recorded_logprobs(lm.model, prompt)
        out: list[float] = [self.empty_score] * len(completions)
        todo = []
        for index, text in enumerate(completions):
            hit = recorded.by_text.get(text) if recorded is not None else None
            if hit is not None and hit[0] and _decodes_to(tokenizer, hit[0], text):
                # The likelihood of the tokens the policy sampled for this text.
                out[index] = mean(hit[1][: self.max_completion_tokens])
                continue
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if ids:
                todo.append((index, ids[: self.max_completion_tokens]))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            logprobs = lm.continuation_logprobs([prompt] * len(chunk), [ids for _, ids in chunk])
            for (index, _), values in zip(chunk, logprobs, strict=True):
                out[index] = float(values.mean())
        return out


def _decodes_to(tokenizer: Any, token_ids: Sequence[int], text: str) -> bool:
    """Whether ``token_ids`` decode to exactly ``text`` (as the decoder decodes replies)."""
    decoded = tokenizer.decode(
        list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    return bool(decoded == text)
