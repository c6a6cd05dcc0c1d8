"""``LangChainJudgeScorer``: any LangChain chat model (local or API) as a judge.

This module does not import LangChain: it calls ``chat_model.invoke(messages)`` with a
list of ``(role, text)`` tuples, which every LangChain chat model accepts, and reads
the reply's ``.content``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, last_user_text

__all__ = ["LangChainJudgeScorer", "parse_rating"]

TEMPLATE = (
    "Rate the answer to the question on a scale from 0 (useless or wrong) to {scale} "
    "(excellent). Reply with the number only.\n\nQuestion: {question}\n\nAnswer: {answer}"
)
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?")


def parse_rating(text: str, scale: float) -> float | None:
    """The first number in ``text`` as a fraction of ``scale`` (``"8/10"`` → 0.8), or None."""
    match = _NUMBER.search(text or "")
    if not match:
        return None
    value = float(match.group(1))
    denominator = float(match.group(2)) if match.group(2) else scale
    if denominator <= 0:
        return None
    return min(max(value / denominator, 0.0), 1.0)


class LangChainJudgeScorer(RewardScorer):
    """Ask a chat model to rate each reply; unparseable verdicts score ``default``."""

    def __init__(
        self, chat_model: Any, *, template: str = TEMPLATE, scale: float = 10, default: float = 0.0
    ) -> None:
        if not callable(getattr(chat_model, "invoke", None)):
            raise InvalidScorerConfig(
                f"LangChainJudgeScorer needs a chat model with .invoke, got {chat_model!r:.60}"
            )
        for field in ("{question}", "{answer}"):
            if field not in template:
                raise InvalidScorerConfig(f"LangChainJudgeScorer template must contain {field}")
        self.chat_model, self.template, self.scale, self.default = (
            chat_model,
            template,
            scale,
            default,
        )

    @property
    def name(self) -> str:
        return f"LangChainJudgeScorer({type(self.chat_model).__name__})"

    def _prompt(self, conversation: Conversation, answer: str) -> list[tuple[str, str]]:
        text = self.template.format(
            question=last_user_text(conversation), answer=answer or "(empty)", scale=self.scale
        )
        return [("user", text)]

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        out = []
        for answer in completions:
            reply = self.chat_model.invoke(self._prompt(conversation, answer))
            rating = parse_rating(str(getattr(reply, "content", reply)), self.scale)
            out.append(self.default if rating is None else rating)
        return out

    async def ascore(self, conversation: Conversation, completions: Sequence[str]) -> list[float]:
        if not callable(getattr(self.chat_model, "ainvoke", None)):
            return await super().ascore(conversation, completions)
        out = []
        for answer in completions:
            reply = await self.chat_model.ainvoke(self._prompt(conversation, answer))
            rating = parse_rating(str(getattr(reply, "content", reply)), self.scale)
            out.append(self.default if rating is None else rating)
        return out
