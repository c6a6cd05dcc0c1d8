"""``FunctionScorer``: any Python function as a reward."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer

__all__ = ["FunctionScorer"]


class FunctionScorer(RewardScorer):
    """Wrap ``fn(conversation, completions) -> list[float]``.

    With ``per_item=True`` the function scores one completion at a time:
    ``fn(conversation, completion) -> float``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        per_item: bool = False,
        name: str | None = None,
        comparable_across_calls: bool = True,
    ) -> None:
        if not callable(fn):
            raise InvalidScorerConfig(f"FunctionScorer needs a callable, got {fn!r}")
        self.fn = fn
        self.per_item = per_item
        self._name = name or getattr(fn, "__name__", type(fn).__name__)
        self.comparable_across_calls = comparable_across_calls

    @property
    def name(self) -> str:
        return f"FunctionScorer({self._name})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        if self.per_item:
            return [self.fn(conversation, text) for text in completions]
        return list(self.fn(conversation, completions))
