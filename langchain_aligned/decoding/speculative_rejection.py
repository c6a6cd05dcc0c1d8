"""Speculative Rejection — Sun et al., *Fast Best-of-N Decoding via Speculative
Rejection*, NeurIPS 2024 (arXiv:2410.20290).

Best-of-N that stops spending compute on candidates that are already losing.

Terms (the paper's symbols are used in code):

* **pool** — every candidate of a request that has not been rejected: the *alive*
  ones still decoding and the *finished* ones (EOS, stop string or length cap).
* **partial candidate** — an alive candidate's text so far, scored by the reward
  model *as if it were complete* (the premise: partial rewards correlate with final
  rewards).
* **decision token τ** — how many tokens the alive candidates have when a round's
  scores are taken. ``decision_tokens`` sets the first one.
* **rejection rate α** — the fraction of the pool dropped per round: the top
  ⌈(1 − α)·|pool|⌉ survive. Finished candidates are never discarded.
* **round** — one decision point (score, rank, reject).

The memory rule: the paper decides when the batch's KV cache would exceed the memory
budget. With an explicit schedule the budget is the cache size at the first decision,
n·(prompt + τ) slots, so after each rejection the survivors decode until they fill it
again — about twice as long at α = 0.5. With ``memory_budget_slots`` the budget is
given directly (the official code's mode). Either way survivors keep their KV cache:
rows are selected in place, never re-tokenised or re-prefilled (the official code
re-prefills after every round).

Partial scores only rank candidates; the reply returned is the best of the candidates
scored *as complete*. With α = 0 nothing is ever rejected, no partial scoring happens,
and the result equals :class:`~langchain_aligned.decoding.best_of_n.BestOfN` exactly
under one seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import InvalidInputError
from .base import (
    EVENT_ROUND,
    EVENT_SCORED,
    Hooks,
    Request,
    Result,
    RoundStats,
    Strategy,
    score_texts,
)
from .best_of_n import _check_positive_int, _pool_of, _result
from .engine import Candidate, DecodeCancelled, DecodingEngine, EngineCounters
from .sampling import decode_candidates
from .text import StopMatcher, decode

__all__ = ["SpeculativeRejection"]


@dataclass(frozen=True)
class SpeculativeRejection(Strategy):
    """Best-of-N with early rejection of low-reward partial candidates."""

    n: int = 16
    """Candidates started per request (the paper's N)."""
    rejection_rate: float = 0.5
    """α in [0, 1): fraction of the pool rejected at each decision point."""
    decision_tokens: int = 32
    """τ: tokens decoded before the first decision (explicit-schedule mode)."""
    memory_budget_slots: int | None = None
    """If set, decide whenever ``rows × cache slots`` would exceed this budget (the
    paper's memory-based rule) instead of following ``decision_tokens``."""

    name: ClassVar[str] = "speculative_rejection"
    needs_reward: ClassVar[bool] = True
    # Each request's pool has its own decision points and rejections, so requests
    # are decoded one after the other.
    shares_batches: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_positive_int("SpeculativeRejection", "n", self.n)
        _check_positive_int("SpeculativeRejection", "decision_tokens", self.decision_tokens)
        _check_positive_int(
            "SpeculativeRejection", "memory_budget_slots", self.memory_budget_slots, optional=True
        )
        alpha = self.rejection_rate
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
            raise InvalidInputError(
                f"SpeculativeRejection(rejection_rate={alpha!r}): α must be in [0, 1) — "
                "0 keeps every candidate (Best-of-N), 0.5 is the paper's setting"
            )

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
        return [
            self._one(engine, request, index, reward, hooks)
            for index, request in enumerate(requests)
        ]

    def _one(
        self, engine: DecodingEngine, request: Request, index: int, reward: Any, hooks: Hooks
    ) -> Result:
        stats, candidates = _pool_of(self.name, request, index, self.n)
        counters = EngineCounters()
        params = request.params
        start = time.perf_counter()

        # Step 1: start all N candidates in one batch — the only prefill of the request.
        state = engine.prefill(candidates, counters=counters)
        # The budget in cache slots: given, or the cache size at the first decision.
        budget = self.memory_budget_slots or len(candidates) * (
            state.num_slots + self.decision_tokens
        )
        finished: list[Candidate] = []
        scores: dict[int, float] = {}  # candidate index -> reward as complete
        matchers: dict[int, StopMatcher] = {}
        round_number = 0
        streamed_live = False
        while state.num_rows:
            # One candidate left in the whole pool: nothing can beat it any more, so
            # it is the reply — decode it to the end (streaming it live if asked).
            if state.num_rows == 1 and not finished:
                streamed_live = hooks.on_text is not None
                finished.extend(decode_candidates(engine, state, params, hooks, stream=True))
                break
            # Step 2: decode the alive candidates up to the next decision point — when
            # the batch's KV cache would exceed the budget.
            steps = max(1, budget // state.num_rows - state.num_slots)
            if self.rejection_rate == 0:
                steps = params.max_new_tokens  # nothing will be rejected: decode to the end
            sampled_before = counters.tokens_sampled
            alive_before = state.num_rows
            for _ in range(steps):
                if not state.num_rows:
                    break
                if hooks.should_stop is not None and hooks.should_stop():
                    raise DecodeCancelled()
                finished.extend(engine.step(state, params, matchers))
            if not state.num_rows or self.rejection_rate == 0:
                break
            round_number += 1
            # Step 3: score every partial candidate as if complete, together with the
            # candidates that finished since the last round (one call: comparable).
            newly_finished = [c for c in finished if c.index not in scores]
            alive = list(state.candidates)
            texts = [c.text or "" for c in newly_finished] + [
                _partial_text(engine, c) for c in alive
            ]
            values = score_texts(reward, request.conversation, texts, stats)
            for candidate, value in zip(newly_finished, values, strict=False):
                scores[candidate.index] = value
            partial = values[len(newly_finished) :]
            hooks.event(
                EVENT_SCORED,
                {"request": index, "rewards": values, "partial": True, "round": round_number},
            )
            # Step 4: keep the top ⌈(1 − α)·|pool|⌉ of the pool. Finished candidates
            # are never discarded; an alive one survives if it ranks in the top slots.
            pool = [(scores[c.index], True, c) for c in finished] + [
                (value, False, c) for value, c in zip(partial, alive, strict=True)
            ]
            keep = math.ceil((1 - self.rejection_rate) * len(pool))
            ranked = sorted(pool, key=lambda item: (-item[0], item[2].index))
            survivors = {id(c) for _, done, c in ranked[:keep] if not done}
            rows = [row for row, c in enumerate(alive) if id(c) in survivors]
            threshold = min((v for v, done, c in ranked[:keep] if not done), default=None)
            # Step 5: continue only the survivors — select their KV-cache rows in place.
            engine.select(state, rows)
            round_stats = RoundStats(
                round=round_number,
                decision_token=max((len(c.token_ids) for c in alive), default=0),
                alive=alive_before,
                finished=len(finished),
                rejected=len(alive) - len(rows),
                tokens_decoded=counters.tokens_sampled - sampled_before,
                threshold=threshold,
                best_reward=max(values) if values else None,
            )
            stats.rounds.append(round_stats)
            hooks.event(EVENT_ROUND, {"request": index, **round_stats.__dict__})

        stats.generation_seconds = time.perf_counter() - start - stats.scoring_seconds
        stats.add_counters(counters)
        stats.tokens_generated = counters.tokens_sampled
        # Step 6: score the candidates that finished after the last decision (all of
        # them when α = 0, in candidate order — exactly Best-of-N's single call) and
        # return the best reward among everything scored as complete.
        unscored = sorted((c for c in finished if c.index not in scores), key=lambda c: c.index)
        if unscored:
            values = score_texts(
                reward, request.conversation, [c.text or "" for c in unscored], stats
            )
            scores.update({c.index: v for c, v in zip(unscored, values, strict=True)})
            hooks.event(
                EVENT_SCORED, {"request": index, "rewards": values, "partial": False, "round": None}
            )
        complete = sorted(finished, key=lambda c: c.index)
        return _result(
            complete,
            [scores[c.index] for c in complete],
            stats,
            index,
            # A reply streamed live must not be streamed a second time.
            Hooks(on_event=hooks.on_event) if streamed_live else hooks,
        )


def _partial_text(engine: DecodingEngine, candidate: Candidate) -> str:
    return decode(engine.tokenizer, candidate.token_ids)
