"""Combining scorers: ``WeightedScorer`` and ``CachedScorer``."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, score_items

__all__ = ["CachedScorer", "WeightedScorer", "normalize"]

NORMALIZATIONS = ("none", "zscore", "rank")


def normalize(values: Sequence[float], method: str) -> list[float]:
    """Normalise one scorer's scores within a call."""
    if method == "none" or len(values) < 2:
        return [float(v) if method == "none" else 0.0 for v in values]
    if method == "zscore":
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return [0.0 if std == 0 else (v - mean) / std for v in values]
    # rank: 0 for the lowest, 1 for the highest, ties share their mean rank
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 / (len(values) - 1)
        i = j + 1
    return ranks


class WeightedScorer(RewardScorer):
    """Σ weight·normalise(scorer) over several scorers.

    ``normalization`` is ``"none"`` (raw scores), ``"zscore"`` (per scorer, within the
    call) or ``"rank"`` (per scorer, within the call, in [0, 1]); a dict gives one per
    scorer. Normalised scores are only comparable within a call.
    """

    def __init__(
        self,
        scorers: Mapping[RewardScorer, float],
        *,
        normalization: str | Mapping[RewardScorer, str] = "none",
        name: str | None = None,
    ) -> None:
        if not scorers:
            raise InvalidScorerConfig("WeightedScorer needs at least one scorer")
        self.parts: list[tuple[RewardScorer, float, str]] = []
        for scorer, weight in scorers.items():
            if not callable(getattr(scorer, "score", None)):
                raise InvalidScorerConfig(f"{scorer!r} is not a reward scorer (no .score)")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
            ):
                raise InvalidScorerConfig(
                    f"weight {weight!r} for {getattr(scorer, 'name', scorer)} must be a finite number"
                )
            method = (
                normalization.get(scorer, "none")
                if isinstance(normalization, Mapping)
                else normalization
            )
            if method not in NORMALIZATIONS:
                raise InvalidScorerConfig(
                    f"normalization={method!r}: use one of {', '.join(NORMALIZATIONS)}"
                )
            self.parts.append((scorer, float(weight), method))
        self.comparable_across_calls = all(
            m == "none" and getattr(s, "comparable_across_calls", True) for s, _, m in self.parts
        )
        self._name = name

    @property
    def name(self) -> str:
        if self._name:
            return self._name
        inner = " + ".join(
            f"{w:g}·{getattr(s, 'name', type(s).__name__)}" for s, w, _ in self.parts
        )
        return f"WeightedScorer({inner})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        return self._score_batch([(conversation, completions)])[0]

    def _score_batch(
        self, items: list[tuple[Conversation, list[str]]]
    ) -> Sequence[Sequence[float]]:
        # Each part scores every item in one batch call; normalisation stays within
        # each item, so an item's total is what it would get alone.
        totals = [[0.0] * len(texts) for _, texts in items]
        for scorer, weight, method in self.parts:
            for total, values in zip(totals, score_items(scorer, items), strict=True):
                for i, v in enumerate(normalize(values, method)):
                    total[i] += weight * v
        return totals


class CachedScorer(RewardScorer):
    """Remember scores of (conversation, completion) pairs (thread-safe LRU).

    Only for scorers whose scores do not depend on the other completions of a call
    (not for within-call normalisation).
    """

    def __init__(self, scorer: RewardScorer, *, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise InvalidScorerConfig(f"CachedScorer(maxsize={maxsize!r}) must be ≥ 1")
        self.scorer = scorer
        self.maxsize = maxsize
        self.comparable_across_calls = getattr(scorer, "comparable_across_calls", True)
        self._cache: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    @property
    def name(self) -> str:
        return f"CachedScorer({getattr(self.scorer, 'name', type(self.scorer).__name__)})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        key = (
            conversation
            if isinstance(conversation, str)
            else json.dumps(conversation, sort_keys=True, default=str)
        )
        out: list[Any] = [None] * len(completions)
        missing = []
        with self._lock:
            for i, text in enumerate(completions):
                hit = self._cache.get((key, text))
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end((key, text))
                    out[i] = hit
                    self.hits += 1
        if missing:
            values = self.scorer.score(conversation, [completions[i] for i in missing])
            with self._lock:
                for i, value in zip(missing, values, strict=True):
                    out[i] = value
                    self._cache[(key, completions[i])] = value
                    while len(self._cache) > self.maxsize:
                        self._cache.popitem(last=False)
        return out
