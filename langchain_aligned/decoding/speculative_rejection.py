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

Rounds stay O(log N + log max_new_tokens) whatever α and N:

* A round is held only while it can reject something. The pool shrinks only by
  rejection (finished candidates stay), so once ⌈(1 − α)·|pool|⌉ = |pool| (α < 1/|pool|:
  α = 0.2 with 4 candidates, α = 0.3 with 3) no later round could reject anything: the
  pool decodes to the end like α = 0 and is scored once — Best-of-N exactly. A round
  that rejects its whole quota |pool| − ⌈(1 − α)·|pool|⌉ shrinks the pool by the factor
  (1 − α), so there are O(log N / −log(1 − α)) of them.
* A round can reject less than its quota when finished candidates rank at the bottom
  (they are kept anyway). The memory rule would then decide again almost at once — in
  one step when nothing was rejected, since the cache is already full — so instead
  the next decision comes no earlier than twice the current length (geometric
  back-off): O(log max_new_tokens) such rounds. Only after such a round may the cache
  outgrow the budget: there was nothing, or too little, to reject.

Scores are compared only when they come from one reward call if the scorer says they
are not comparable across calls (``comparable_across_calls = False``: rank or z-score
normalisation within a call, a judge that grades relative to the others shown): each
round then re-scores the finished candidates together with the partial ones, so the
whole pool is ranked from one call, and the reply is chosen by one final call over
every complete candidate (its scores are the reported rewards). Otherwise a finished
candidate is scored once — by the first round that sees it, or the final call.

Several requests share one batch: every forward pass decodes the alive rows of every
pool, while each pool keeps the schedule, budget, scores and rejections it would have
alone (each candidate draws from its own generator), so a request's reply does not
depend on the others — tested against one call per prompt.

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
from fractions import Fraction
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
    new_batch_id,
    score_texts,
)
from .best_of_n import _check_positive_int, _pool_of, _result
from .engine import Candidate, DecodeCancelled, DecodingEngine, EngineCounters
from .text import StopMatcher, TextStream, decode

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
    """If set, decide whenever a request's ``rows × cache slots`` would exceed this
    budget (the paper's memory-based rule) instead of following ``decision_tokens``.
    The budget is per request: a call with k prompts decodes them together and holds
    up to about k × budget slots (pass one prompt per call to bound the total)."""

    name: ClassVar[str] = "speculative_rejection"
    needs_reward: ClassVar[bool] = True

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
        # Requests with different sampling parameters cannot share a step; group them.
        groups: dict[Any, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.params, []).append(index)
        results: dict[int, Result] = {}
        for params, members in groups.items():
            pools = [_Pool(self, index, requests[index]) for index in members]
            for pool, result in zip(
                pools, self._decode(engine, pools, params, reward, hooks), strict=True
            ):
                results[pool.index] = result
        return [results[i] for i in range(len(requests))]

    def _decode(
        self,
        engine: DecodingEngine,
        pools: list[_Pool],
        params: Any,
        reward: Any,
        hooks: Hooks,
    ) -> list[Result]:
        """Run the algorithm for every pool in one shared batch.

        Each pool keeps its own schedule, scores and rejections — exactly what it
        would do alone (every candidate draws from its own generator) — while the
        forward passes are shared: a step decodes the alive rows of every pool.
        """
        counters, batch = EngineCounters(), new_batch_id()
        start = time.perf_counter()
        by_request = {pool.index: pool for pool in pools}

        # Step 1: start all N candidates of every pool in one batch — the only prefill.
        state = engine.prefill([c for pool in pools for c in pool.candidates], counters=counters)
        matchers: dict[int, StopMatcher] = {}
        steps_done = 0
        for pool in pools:
            pool.plan_next_decision(steps_done)
        while state.num_rows:
            for pool in pools:
                alive = [row for row, c in enumerate(state.candidates) if c.request == pool.index]
                # One candidate left in the whole pool: nothing can beat it any more,
                # so it is the reply — no more rounds; stream it live if asked.
                if len(alive) == 1 and not pool.finished and not pool.live:
                    pool.go_live(engine, params, hooks)
                # Step 2 ends: the pool's KV cache would exceed its budget.
                if alive and not pool.live and steps_done == pool.next_decision:
                    self._round(engine, state, pool, alive, reward, hooks)
                    pool.plan_next_decision(steps_done)
            if not state.num_rows:
                break
            # Step 2: decode the alive candidates of every pool one token further.
            if hooks.should_stop is not None and hooks.should_stop():
                raise DecodeCancelled()
            rows = list(state.candidates)
            ended = engine.step(state, params, matchers)
            steps_done += 1
            for candidate in ended:
                by_request[candidate.request].finished.append(candidate)
            for pool in pools:
                if pool.live:
                    pool.stream(rows, {id(c) for c in ended}, hooks)

        # The decode time, shared equally by the pools, excludes the rounds' scoring;
        # computed once, before _finish adds each pool's final scoring to its stats.
        elapsed = time.perf_counter() - start
        decode_share = max(0.0, elapsed - sum(p.stats.scoring_seconds for p in pools)) / len(pools)
        results = []
        for pool in pools:
            stats = pool.stats
            stats.add_counters(counters, batch=batch)
            stats.tokens_generated = sum(c.tokens_sampled for c in pool.candidates)
            stats.generation_seconds = decode_share
            results.append(self._finish(pool, reward, hooks))
        return results

    def _round(
        self,
        engine: DecodingEngine,
        state: Any,
        pool: _Pool,
        alive_rows: list[int],
        reward: Any,
        hooks: Hooks,
    ) -> None:
        """One decision point of one pool: score, rank, reject (steps 3 to 5)."""
        pool.round_number += 1
        # Step 3: score every partial candidate as if complete, in one call with the
        # candidates that finished since the last round — or with every finished one
        # when scores are comparable only within a call, so the pool is ranked from it.
        comparable = _comparable(reward)
        complete = [c for c in pool.finished if not comparable or c.index not in pool.scores]
        alive = [state.candidates[row] for row in alive_rows]
        texts = [c.text or "" for c in complete] + [_partial_text(engine, c) for c in alive]
        values = score_texts(reward, pool.request.conversation, texts, pool.stats)
        this_call = {c.index: value for c, value in zip(complete, values, strict=False)}
        if comparable:
            pool.scores.update(this_call)
        partial = values[len(complete) :]
        hooks.event(
            EVENT_SCORED,
            {"request": pool.index, "rewards": values, "partial": True, "round": pool.round_number},
        )
        # Step 4: keep the top ⌈(1 − α)·|pool|⌉ of the pool. Finished candidates are
        # never discarded; an alive one survives if it ranks in the top slots.
        finished_scores = pool.scores if comparable else this_call
        ranked_pool = [(finished_scores[c.index], True, c) for c in pool.finished] + [
            (value, False, c) for value, c in zip(partial, alive, strict=True)
        ]
        keep = self._keep(len(ranked_pool))
        ranked = sorted(ranked_pool, key=lambda item: (-item[0], item[2].index))
        survivors = {id(c) for _, done, c in ranked[:keep] if not done}
        # Step 5: continue only the survivors — select their KV-cache rows in place
        # (rows of the other pools stay).
        rejected = {id(c) for c in alive} - survivors
        pool.rejected |= rejected
        # Fewer than the quota |pool| − keep rejected (finished candidates ranked at
        # the bottom): the next decision backs off geometrically.
        pool.fell_short = len(rejected) < len(ranked_pool) - keep
        # The bar a partial candidate had to clear: the lowest surviving partial reward
        # (None when nothing was rejected — there was no bar).
        threshold = (
            min(
                (v for v, done, c in ranked_pool if not done and id(c) in survivors),
                default=None,
            )
            if rejected
            else None
        )
        engine.select(
            state, [row for row, c in enumerate(state.candidates) if id(c) not in rejected]
        )
        sampled = sum(c.tokens_sampled for c in pool.candidates)
        round_stats = RoundStats(
            round=pool.round_number,
            decision_token=max((len(c.token_ids) for c in alive), default=0),
            alive=pool.alive_at_plan,
            finished=len(pool.finished),
            rejected=len(rejected),
            tokens_decoded=sampled - pool.sampled_at_round,
            threshold=threshold,
            best_reward=max(values) if values else None,
        )
        pool.sampled_at_round = sampled
        pool.stats.rounds.append(round_stats)
        hooks.event(EVENT_ROUND, {"request": pool.index, **round_stats.__dict__})

    def _keep(self, pool_size: int) -> int:
        """⌈(1 − α)·|pool|⌉, the candidates a round keeps, in exact arithmetic on α as
        written (⌈0.3·10⌉ is 3; the float product 3.0000000000000004 would give 4)."""
        return math.ceil((1 - Fraction(str(self.rejection_rate))) * pool_size)

    def _finish(self, pool: _Pool, reward: Any, hooks: Hooks) -> Result:
        # Step 6: score the candidates that finished after the last decision (all of
        # them when no round was held, in candidate order — exactly Best-of-N's single
        # call), or every complete candidate in one call when scores are comparable
        # only within a call, and return the best reward among them.
        unscored = sorted(
            (c for c in pool.finished if not _comparable(reward) or c.index not in pool.scores),
            key=lambda c: c.index,
        )
        if unscored:
            values = score_texts(
                reward, pool.request.conversation, [c.text or "" for c in unscored], pool.stats
            )
            pool.scores.update({c.index: v for c, v in zip(unscored, values, strict=True)})
            hooks.event(
                EVENT_SCORED,
                {"request": pool.index, "rewards": values, "partial": False, "round": None},
            )
        complete = sorted(pool.finished, key=lambda c: c.index)
        return _result(
            complete,
            [pool.scores[c.index] for c in complete],
            pool.stats,
            pool.index,
            # A reply streamed live must not be streamed a second time.
            Hooks(on_event=hooks.on_event) if pool.streamed else hooks,
        )


class _Pool:
    """One request's candidates and its progress through the algorithm."""

    def __init__(self, strategy: SpeculativeRejection, index: int, request: Request) -> None:
        self.strategy = strategy
        self.index = index
        self.request = request
        self.stats, self.candidates = _pool_of(strategy.name, request, index, strategy.n)
        self.prompt_slots = len(request.prompt_ids)
        # The budget in cache slots: given, or this pool's cache size at the first
        # decision, N·(prompt + τ) — as if the pool were decoded alone.
        self.budget = strategy.memory_budget_slots or len(self.candidates) * (
            self.prompt_slots + strategy.decision_tokens
        )
        self.finished: list[Candidate] = []
        self.scores: dict[int, float] = {}  # candidate index -> reward as complete
        self.round_number = 0
        self.next_decision: float = math.inf
        self.alive_at_plan = len(self.candidates)
        self.sampled_at_round = 0
        self.rejected: set[int] = set()  # ids of rejected candidates
        self.fell_short = False  # the last round rejected less than its quota
        self.live = False
        self.streams: dict[int, TextStream] = {}

    @property
    def alive(self) -> list[Candidate]:
        """Candidates still decoding (neither finished nor rejected)."""
        return [c for c in self.candidates if not c.finished and id(c) not in self.rejected]

    @property
    def streamed(self) -> bool:
        return bool(self.streams)

    def plan_next_decision(self, steps_done: int) -> None:
        """Decide when the next round happens: when the pool's KV cache (alive rows ×
        slots, slots = prompt + tokens decoded) would exceed the budget — but no
        earlier than twice the current length after a round that fell short, and
        never once no round can reject anything."""
        alive = len(self.alive)
        self.alive_at_plan = alive
        size = alive + len(self.finished)  # |pool|: only rejection shrinks it
        if alive == 0 or self.strategy._keep(size) >= size:
            # ⌈(1 − α)·|pool|⌉ = |pool| (α = 0 among others) now means for good: no
            # round could ever reject anything, so decode to the end.
            self.next_decision = math.inf
            return
        slots = self.prompt_slots + steps_done
        next_decision = steps_done + max(1, self.budget // alive - slots)
        if self.fell_short:
            # Geometric back-off: such rounds are O(log max_new_tokens).
            next_decision = max(next_decision, 2 * steps_done)
        self.next_decision = next_decision

    def go_live(self, engine: DecodingEngine, params: Any, hooks: Hooks) -> None:
        self.live = True
        if hooks.on_text is not None:
            self.streams = {id(c): TextStream(engine.tokenizer, params.stop) for c in self.alive}

    def stream(self, rows: list[Candidate], ended: set[int], hooks: Hooks) -> None:
        """Send the live candidate's new text (everything so far on the first call)."""
        if hooks.on_text is None:
            return
        for candidate in rows:
            text_stream = self.streams.get(id(candidate))
            if text_stream is None:
                continue
            final = candidate.text if id(candidate) in ended else None
            delta = text_stream.delta(candidate.token_ids, final_text=final)
            if delta:
                hooks.on_text(candidate.request, delta)


def _comparable(reward: Any) -> bool:
    """Whether scores of different reward calls may be compared."""
    return bool(getattr(reward, "comparable_across_calls", True))


def _partial_text(engine: DecodingEngine, candidate: Candidate) -> str:
    return decode(engine.tokenizer, candidate.token_ids)
