"""Best-of-N: decode n candidates to the end, give each a final reward, return the best.

The baseline of both papers this library implements. Its cost grows linearly in n:
every candidate is decoded until it finishes and is scored. The candidates of every
request of a batch are decoded together, at most ``max_batch_size`` rows (or as many
as fit the KV-cache budget ``memory_budget_slots``) at a time, so the requests of a
batch share forward passes; each candidate draws from its own generator, so neither
the batch size nor the other requests change which replies come out. Each request's
candidates are scored in one reward call, so their rewards are comparable.

Terms are defined in the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..engines.base import ReplyEngine
from ..errors import InvalidInputError
from . import strategy_parts as parts
from .base import EVENT_SCORED, Hooks, Request, Result, RewardCall, Strategy, score_together

__all__ = ["BestOfN"]


@dataclass(frozen=True)
class BestOfN(Strategy):
    """Decode ``n`` candidates per request and return the one with the highest reward."""

    n: int = 4
    """Candidates per request (at least 1)."""
    max_batch_size: int | None = None
    """Most candidates decoded at once, across all requests of the batch; None decodes
    every candidate of the batch (n per request) together unless
    ``memory_budget_slots`` limits it. Set it when batching many requests, to bound
    memory."""
    memory_budget_slots: int | None = None
    """KV-cache budget in ``rows × slots``: as many candidates are decoded at once as
    fit ``prompt + max_new_tokens`` slots each within it."""

    name: ClassVar[str] = "best_of_n"
    needs_reward: ClassVar[bool] = True

    def __post_init__(self) -> None:
        parts.check_positive_int("BestOfN", "n", self.n)
        parts.check_positive_int("BestOfN", "max_batch_size", self.max_batch_size, optional=True)
        parts.check_positive_int(
            "BestOfN", "memory_budget_slots", self.memory_budget_slots, optional=True
        )

    def batch_size(self, requests: Sequence[Request], n: int) -> int:
        """Rows decoded at once for ``n`` candidates of ``requests`` (the longest prompt
        sets the memory per row)."""
        size = n
        if self.max_batch_size is not None:
            size = min(size, self.max_batch_size)
        if self.memory_budget_slots is not None:
            longest = max(len(request.prompt_ids) for request in requests)
            per_row = longest + max(request.params.max_new_tokens for request in requests)
            if self.memory_budget_slots < per_row:
                raise InvalidInputError(
                    f"BestOfN(memory_budget_slots={self.memory_budget_slots}) holds no whole "
                    f"candidate: one needs its prompt ({longest} tokens) + max_new_tokens "
                    f"({per_row - longest}) = {per_row} slots; raise the budget or lower "
                    "max_new_tokens"
                )
            size = min(size, self.memory_budget_slots // per_row)
        return size

    def decode(
        self, engine: ReplyEngine, requests: Sequence[Request], reward: Any, hooks: Hooks
    ) -> list[Result]:
        return parts.decode_batches(engine, requests, reward, hooks, self._decode_batch)

    def _decode_batch(self, batch: parts.Batch) -> list[Result]:
        """Decode and score the requests of one batch; results in member order."""
        requests, hooks = batch.requests, batch.hooks
        pools = [parts.new_pool(self.name, requests[i], i, self.n) for i in batch.members]
        candidates = [c for _, own in pools for c in own]
        size = self.batch_size([requests[i] for i in batch.members], len(candidates))
        # Decode the batch's candidates ``size`` rows at a time: each such state has its
        # own KV cache, and all count as the batch's forward passes.
        for first in range(0, len(candidates), size):
            rows = candidates[first : first + size]
            state = batch.engine.prefill(rows, counters=batch.counters)
            batch.engine.decode(state, batch.params, should_stop=hooks.should_stop)
        elapsed = batch.seconds()
        for stats, own in pools:
            # Forward passes are shared by the batch (one batch id); each request
            # reports them, its own sampled tokens and its share of the decoding time.
            stats.generation_seconds = elapsed / len(batch.members)
            stats.add_counters(batch.counters, batch=batch.id)
            stats.tokens_generated = sum(c.tokens_sampled for c in own)
        # Every candidate is scored once, a request's all in one call (so its rewards
        # are comparable), and the batch's requests together in one reward call.
        calls = []
        for index, (stats, own) in zip(batch.members, pools, strict=True):
            texts = [c.text or "" for c in own]
            recorded = parts.recorded_for(batch.engine, requests[index], own, texts)
            calls.append(RewardCall(requests[index].conversation, texts, stats, recorded))
        results = []
        for index, (stats, own), rewards in zip(
            batch.members, pools, score_together(batch.reward, calls), strict=True
        ):
            hooks.event(
                EVENT_SCORED,
                {"request": index, "rewards": rewards, "partial": False, "round": None},
            )
            results.append(parts.best_result(own, rewards, stats, index, hooks))
        return results
