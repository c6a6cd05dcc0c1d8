"""``SentimentScorer``: VADER's compound sentiment score in [-1, 1]."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .base import Conversation, RewardScorer, RewardsError

__all__ = ["SentimentScorer"]

INSTALL = "pip install vadersentiment"


class SentimentScorer(RewardScorer):
    """Positive replies score high (VADER compound score, lexicon based, deterministic)."""

    def __init__(self) -> None:
        self._analyzer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._analyzer is None:
                try:
                    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
                except ImportError as exc:
                    raise RewardsError(f"SentimentScorer needs VADER: {INSTALL}") from exc
                self._analyzer = SentimentIntensityAnalyzer()
            return self._analyzer

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        analyzer = self._get()
        return [float(analyzer.polarity_scores(text)["compound"]) for text in completions]
