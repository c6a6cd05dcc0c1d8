"""Rule-based scorers: ``RegexScorer`` and ``LengthScorer``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from .base import Conversation, InvalidScorerConfig, RewardScorer

__all__ = ["LengthScorer", "RegexScorer"]


class RegexScorer(RewardScorer):
    """``reward_match`` if the pattern is found in the completion, else ``reward_miss``.

    ``mode="search"`` finds the pattern anywhere, ``"fullmatch"`` needs the whole
    (stripped) text to match, ``"count"`` rewards each occurrence (``reward_match`` each).
    """

    def __init__(
        self,
        pattern: str,
        *,
        reward_match: float = 1.0,
        reward_miss: float = 0.0,
        mode: str = "search",
        flags: int = 0,
    ) -> None:
        if mode not in ("search", "fullmatch", "count"):
            raise InvalidScorerConfig(
                f"RegexScorer(mode={mode!r}): use 'search', 'fullmatch' or 'count'"
            )
        try:
            self.regex = re.compile(pattern, flags)
        except re.error as exc:
            raise InvalidScorerConfig(f"RegexScorer pattern {pattern!r} is invalid: {exc}") from exc
        self.reward_match = float(reward_match)
        self.reward_miss = float(reward_miss)
        self.mode = mode

    @property
    def name(self) -> str:
        return f"RegexScorer({self.regex.pattern!r})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        out = []
        for text in completions:
            if self.mode == "count":
                out.append(self.reward_match * len(self.regex.findall(text)))
                continue
            hit = (
                self.regex.fullmatch(text.strip())
                if self.mode == "fullmatch"
                else self.regex.search(text)
            )
            out.append(self.reward_match if hit else self.reward_miss)
        return out


class LengthScorer(RewardScorer):
    """1.0 inside a target length range, decaying smoothly outside it.

    Length is counted in characters (``min_chars``/``max_chars``) or words
    (``min_words``/``max_words``). Outside the range the score is
    ``exp(-distance / scale)`` with ``scale`` the range's lower bound (or 20), so a
    slightly short or long reply loses little and a far-off one approaches 0.
    """

    def __init__(
        self,
        *,
        min_chars: int | None = None,
        max_chars: int | None = None,
        min_words: int | None = None,
        max_words: int | None = None,
        scale: float | None = None,
    ) -> None:
        by_chars = min_chars is not None or max_chars is not None
        by_words = min_words is not None or max_words is not None
        if by_chars and by_words:
            raise InvalidScorerConfig(
                "LengthScorer: give a character range or a word range, not both"
            )
        if not by_chars and not by_words:
            raise InvalidScorerConfig("LengthScorer needs min_/max_chars or min_/max_words")
        low = (min_chars if by_chars else min_words) or 0
        high = (max_chars if by_chars else max_words) or math.inf
        if low < 0 or high < low:
            raise InvalidScorerConfig(
                f"LengthScorer range [{low}, {high}] is invalid: need 0 ≤ min ≤ max"
            )
        if scale is not None and scale <= 0:
            raise InvalidScorerConfig(f"LengthScorer(scale={scale!r}) must be > 0")
        self.unit = "chars" if by_chars else "words"
        self.low, self.high = float(low), float(high)
        self.scale = float(scale) if scale is not None else max(self.low, 20.0)

    @property
    def name(self) -> str:
        return f"LengthScorer({self.unit} {self.low:g}-{self.high:g})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        out = []
        for text in completions:
            length = len(text) if self.unit == "chars" else len(text.split())
            distance = max(self.low - length, length - self.high, 0.0)
            out.append(math.exp(-distance / self.scale))
        return out
