"""Best-of-N: decode n complete candidates, score each once, return the best.

The reference method of both papers this library implements. Its cost grows linearly
in n: every candidate is decoded to the end and scored. The candidates of every
request in a call (requests with the same sampling parameters) are decoded together
in batches of at most ``max_batch_size`` rows (or as many as fit
``memory_budget_slots`` KV-cache slots), so a batch of prompts shares forward passes;
each candidate draws from its own generator, so neither the batch size nor the other
requests change which replies come out. Each request's candidates are scored in one
reward call, so their scores are comparable.

The helpers at the bottom (``_pool_of``, ``_choose``, ``_result``) are shared with
Speculative Rejection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import InvalidInputError
from .base import (
    EVENT_DONE,
    EVENT_SCORED,
    AlignmentStats,
    Hooks,
    Request,
    Result,
    Strategy,
    new_batch_id,
    score_texts,
)
from .engine import Candidate, DecodeCancelled, DecodingEngine, EngineCounters

__all__ = ["BestOfN"]

GREEDY_NOTE = "temperature=0 (greedy decoding): all candidates would be identical, so one candidate was decoded"


def _check_positive_int(owner: str, name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{owner}({name}={value!r}): {name} must be an integer ≥ 1")


@dataclass(frozen=True)
class BestOfN(Strategy):
    """Decode ``n`` candidates per request and return the one with the highest reward."""

    n: int = 4
    """Candidates per request (at least 1)."""
    max_batch_size: int | None = None
    """Most candidates decoded at once, across all requests of the call; None decodes
    every candidate of the call (n per request) together unless ``memory_budget_slots``
    limits it. Set it when batching many prompts, to bound memory."""
    memory_budget_slots: int | None = None
    """KV-cache budget in ``rows × slots``: batches hold as many candidates as fit
    ``prompt + max_new_tokens`` slots each within it."""

    name: ClassVar[str] = "best_of_n"
    needs_reward: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_positive_int("BestOfN", "n", self.n)
        _check_positive_int("BestOfN", "max_batch_size", self.max_batch_size, optional=True)
        _check_positive_int(
            "BestOfN", "memory_budget_slots", self.memory_budget_slots, optional=True
        )

    def batch_size(self, requests: Sequence[Request], n: int) -> int:
        """Rows per batch for ``n`` candidates of ``requests`` (the longest prompt sets
        the memory per row)."""
        size = n
        if self.max_batch_size is not None:
            size = min(size, self.max_batch_size)
        if self.memory_budget_slots is not None:
            longest = max(len(request.prompt_ids) for request in requests)
            per_row = longest + max(request.params.max_new_tokens for request in requests)
            size = min(size, max(1, self.memory_budget_slots // per_row))
        return size

    def run(
        self,
        engine: DecodingEngine,
        requests: Sequence[Request],
        *,
        reward: Any = None,
        hooks: Hooks | None = None,
    ) -> list[Result]:
        self.check_reward(reward)
        hooks = hooks or Hooks()
        pools = [_pool_of(self.name, request, i, self.n) for i, request in enumerate(requests)]
        # Requests with different sampling parameters cannot share a step; group them.
        groups: dict[Any, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.params, []).append(index)
        results: dict[int, Result] = {}
        for params, members in groups.items():
            counters, batch = EngineCounters(), new_batch_id()
            start = time.perf_counter()
            candidates = [c for i in members for c in pools[i][1]]
            size = self.batch_size([requests[i] for i in members], len(candidates))
            for first in range(0, len(candidates), size):
                state = engine.prefill(candidates[first : first + size], counters=counters)
                while state.num_rows:
                    if hooks.should_stop is not None and hooks.should_stop():
                        raise DecodeCancelled()
                    engine.step(state, params)
            elapsed = time.perf_counter() - start
            for index in members:
                request, (stats, own) = requests[index], pools[index]
                # Forward passes are shared by the group (one batch id); each request
                # reports them, its own sampled tokens and its share of the decoding time.
                stats.generation_seconds = elapsed / len(members)
                stats.add_counters(counters, batch=batch)
                stats.tokens_generated = sum(c.tokens_sampled for c in own)
                # Every candidate is scored once, all in one call, so scores are comparable.
                scores = score_texts(
                    reward, request.conversation, [c.text or "" for c in own], stats
                )
                hooks.event(
                    EVENT_SCORED,
                    {"request": index, "rewards": scores, "partial": False, "round": None},
                )
                results[index] = _result(own, scores, stats, index, hooks)
        return [results[i] for i in range(len(requests))]


def _pool_of(
    name: str, request: Request, index: int, n: int
) -> tuple[AlignmentStats, list[Candidate]]:
    """Statistics and fresh candidates for one request (one candidate when greedy)."""
    greedy = request.params.greedy
    count = 1 if greedy else n
    stats = AlignmentStats(
        strategy=name,
        num_candidates=count,
        prompt_tokens=len(request.prompt_ids),
        seed=request.seed,
        note=GREEDY_NOTE if greedy and n > 1 else None,
    )
    return stats, request.candidates(index, count)


def _choose(scores: Sequence[float]) -> int:
    """Index of the highest reward (the lowest index among ties)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def _result(
    candidates: Sequence[Candidate],
    scores: Sequence[float],
    stats: AlignmentStats,
    request_index: int,
    hooks: Hooks,
) -> Result:
    """Build the result for the best of ``candidates`` (scores in the same order)."""
    best = _choose(scores)
    winner = candidates[best]
    by_index = sorted(zip(candidates, scores, strict=True), key=lambda pair: pair[0].index)
    stats.candidate_rewards = [score for _, score in by_index]
    stats.reward = scores[best]
    stats.tokens_returned = len(winner.token_ids)
    if hooks.on_text is not None and winner.text:
        # The winner is only known once every candidate is scored: stream it whole.
        hooks.on_text(request_index, winner.text)
    hooks.event(EVENT_DONE, {"request": request_index, "stats": stats.to_dict()})
    return Result(
        text=winner.text or "",
        token_ids=list(winner.token_ids),
        finish_reason=winner.finish_reason or "length",
        stats=stats,
    )
