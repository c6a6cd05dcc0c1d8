"""What a scorer needs from a causal LM, as a small protocol (:class:`CausalLM`).

``LikelihoodScorer`` and ``LLMJudgeScorer`` read a causal LM's log-probabilities. They
take a model object that follows :class:`CausalLM`, or a model *source* (a Hugging
Face id, a folder, an embedded alias, a ``(model, tokenizer)`` pair) that a
**loader** turns into one. ``rewards`` imports nothing of the decoding library: the
loader is whatever a package registers under the ``rewards.causal_lm`` entry-point
group — ``langchain-aligned`` registers its own (:mod:`langchain_aligned.scoring`),
so a scorer naming the same source as a chat model shares its loaded weights.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from .base import InvalidScorerConfig

__all__ = ["ENTRY_POINT_GROUP", "CausalLM", "CausalLMMixin", "load_causal_lm"]

ENTRY_POINT_GROUP = "rewards.causal_lm"
"""The entry-point group whose one loader ``load(source, **options) -> CausalLM`` turns
a model source into a :class:`CausalLM`."""


@runtime_checkable
class CausalLM(Protocol):
    """A causal LM as the likelihood and judge scorers use it."""

    model: Any
    """The torch module (a decoder's recorded log-probabilities apply only to it)."""
    tokenizer: Any
    """Its tokenizer."""

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Chat-format ``messages`` rendered for a reply and tokenised."""
        ...

    def next_token_logprobs(self, prompts: Sequence[Sequence[int]]) -> Any:
        """``[batch, vocab]`` log-probabilities of the token after each prompt."""
        ...

    def continuation_logprobs(
        self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
    ) -> list[Any]:
        """Per row, ``[len(continuation)]`` log-probabilities of its tokens."""
        ...


def load_causal_lm(source: Any, options: Mapping[str, Any]) -> CausalLM:
    """``source`` itself when it is a :class:`CausalLM`, else what the registered loader
    makes of it.

    Raises:
        InvalidScorerConfig: no loader is installed for a source that is not a
            :class:`CausalLM` (the message says what to pass instead).
    """
    if isinstance(source, CausalLM):
        return source
    loaders = list(entry_points(group=ENTRY_POINT_GROUP))
    if not loaders:
        raise InvalidScorerConfig(
            f"model={source!r:.80} is a model source, but no causal-LM loader is installed "
            f"(entry-point group {ENTRY_POINT_GROUP!r}); install langchain-aligned, or pass "
            "an object that follows rewards.causal_lm.CausalLM"
        )
    load: Callable[..., CausalLM] = loaders[0].load()
    return load(source, **dict(options))


class CausalLMMixin:
    """Loads the scorer's causal LM once, on first use (:func:`load_causal_lm`)."""

    model_source: Any
    load_kwargs: dict[str, Any]

    def _init_model(self, model: Any, load_kwargs: dict[str, Any]) -> None:
        self.model_source = model
        self.load_kwargs = dict(load_kwargs)
        self._lm: CausalLM | None = None
        self._model_lock = threading.Lock()

    def _load(self) -> CausalLM:
        with self._model_lock:
            if self._lm is None:
                self._lm = load_causal_lm(self.model_source, self.load_kwargs)
            return self._lm
