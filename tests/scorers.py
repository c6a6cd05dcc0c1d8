"""Small reward scorers for tests (plain classes: the strategies need only `.score`)."""

from __future__ import annotations


class CountingScorer:
    """Reward = number of distinct words minus a penalty per repeated word.

    Deterministic, accepts partial and empty text, and records every call.
    """

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, conversation, completions):
        self.calls.append(list(completions))
        out = []
        for text in completions:
            words = text.split()
            out.append(len(set(words)) - 0.5 * (len(words) - len(set(words))) + 0.01 * len(text))
        return out


class RaisingScorer:
    name = "raising"

    def score(self, conversation, completions):
        raise RuntimeError("reward model exploded")


class BatchCountingScorer(CountingScorer):
    """CountingScorer with ``score_batch``: records how many items each batch call held."""

    name = "batch-counting"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def score_batch(self, items):
        self.batches.append(len(items))
        return [CountingScorer.score(self, conversation, texts) for conversation, texts in items]
