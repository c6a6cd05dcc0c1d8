"""Speculative Rejection — Sun et al., *Fast Best-of-N Decoding via Speculative
Rejection*, NeurIPS 2024 (arXiv:2410.20290).

Best-of-N that stops spending compute on candidates that are already losing: at each
decision point a round gives every alive candidate a partial reward (the premise:
partial rewards correlate with final rewards) and rejects the lowest. Terms (pool,
alive, finished, round, decision point, rejection rate, partial and final reward,
KV-cache budget) are defined in the glossary of :mod:`langchain_aligned.decoding`.
The paper's symbols are used in code: N candidates per request, the decision token
τ, the rejection rate α; a round keeps the top ⌈(1 − α)·|pool|⌉ of the pool.

The memory rule: the paper decides when the batch's KV cache would exceed the memory
budget. With an explicit schedule the budget is the cache size at the first decision,
N·(prompt + τ) slots, so after each rejection the survivors decode until they fill it
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

Rewards are compared only when they come from one reward call if the scorer says
they are not comparable across calls (``comparable_across_calls = False``: rank or
z-score normalisation within a call, a judge that grades relative to the others
shown): each round then re-scores the finished candidates together with the alive
ones, so the whole pool is ranked from one call, and the reply is chosen by one final
call over every finished candidate (its rewards are the reported final rewards).
Otherwise a finished candidate is scored once — by the first round that sees it, or
the final call.

Several requests share one batch: every forward pass decodes the alive rows of every
pool, while each pool keeps the schedule, budget, rewards and rejections it would
have alone (each candidate draws from its own generator), so a request's reply does
not depend on the others — tested against one call per request.

Partial rewards only rank candidates; the reply returned is the finished candidate
with the best final reward. With α = 0 nothing is ever rejected, no partial reward is
computed, and the result equals :class:`~langchain_aligned.decoding.best_of_n.BestOfN`
exactly under one seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from ..engines.base import Candidate, DecodeState, ReplyEngine
from ..errors import InvalidInputError
from . import strategy_parts as parts
from .base import (
    EVENT_ROUND,
    EVENT_SCORED,
    Hooks,
    Request,
    Result,
    RewardCall,
    Strategy,
    score_together,
)
from .params import SamplingParams
from .stats import RoundStats
from .text import StopMatcher, decode

__all__ = ["SpeculativeRejection"]


@dataclass(frozen=True)
class SpeculativeRejection(Strategy):
    """Best-of-N that rejects the alive candidates with the lowest partial rewards."""

    n: int = 16
    """Candidates started per request (the paper's N)."""
    rejection_rate: float = 0.5
    """α in [0, 1): fraction of the pool a round rejects."""
    decision_tokens: int = 32
    """τ: the decision token of the first round (explicit-schedule mode)."""
    memory_budget_slots: int | None = None
    """If set, a KV-cache budget in ``rows × slots`` per request: a round is held
    whenever a pool's cache would exceed it (the paper's memory-based rule) instead of
    following ``decision_tokens``. A call with k requests decodes them together and
    holds up to about k × budget slots (pass one request per call to bound the total)."""

    name: ClassVar[str] = "speculative_rejection"
    needs_reward: ClassVar[bool] = True

    def __post_init__(self) -> None:
        parts.check_positive_int("SpeculativeRejection", "n", self.n)
        parts.check_positive_int("SpeculativeRejection", "decision_tokens", self.decision_tokens)
        parts.check_positive_int(
            "SpeculativeRejection", "memory_budget_slots", self.memory_budget_slots, optional=True
        )
        alpha = self.rejection_rate
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
            raise InvalidInputError(
                f"SpeculativeRejection(rejection_rate={alpha!r}): α must be in [0, 1) — "
                "0 keeps every candidate (Best-of-N), 0.5 is the paper's setting"
            )

    def smallest_budget_slots(self, prompt_tokens: int, *, greedy: bool = False) -> int:
        """The least ``memory_budget_slots`` for a prompt of ``prompt_tokens`` tokens:
        the prompts of the candidates decoded and one token each — n candidates, or one
        when decoding is ``greedy`` (temperature 0 decodes a single candidate). Below
        it, rounds would follow almost every token, ranking candidates by a token or
        two of text each time."""
        return (1 if greedy else self.n) * (prompt_tokens + 1)

    def decode(
        self, engine: ReplyEngine, requests: Sequence[Request], reward: Any, hooks: Hooks
    ) -> list[Result]:
        return parts.decode_batches(engine, requests, reward, hooks, self._decode_batch)

    def _decode_batch(self, batch: parts.Batch) -> list[Result]:
        """Run the algorithm for every pool of one batch; results in member order.

        Each pool keeps its own schedule, rewards and rejections — exactly what it
        would do alone (every candidate draws from its own generator) — while the
        forward passes are shared: a step decodes the alive rows of every pool.
        """
        engine = batch.engine
        pools = [_Pool(self, i, batch.requests[i]) for i in batch.members]

        # Step 1: start all N candidates of every pool in one batch — the only prefill.
        state = engine.prefill([c for p in pools for c in p.candidates], counters=batch.counters)
        try:
            return self._run_pools(batch, pools, state)
        except BaseException:
            # A reward, a callback or the caller ended the call: the alive rows must not
            # keep decoding (on vLLM they would hold KV blocks for nobody).
            engine.release(state)
            raise

    def _run_pools(
        self, batch: parts.Batch, pools: list[_Pool], state: DecodeState
    ) -> list[Result]:
        """Steps 2 to 6 for the pools of one batch, whose candidates ``state`` holds."""
        engine, params, reward, hooks = batch.engine, batch.params, batch.reward, batch.hooks
        by_request = {pool.index: pool for pool in pools}
        matchers: dict[int, StopMatcher] = {}
        steps_done = 0

        def after_step(rows: list[Candidate], ended: list[Candidate]) -> None:
            nonlocal steps_done
            steps_done += 1
            for candidate in ended:
                by_request[candidate.request].finish(candidate)
            for pool in pools:
                if pool.streams:
                    pool.streams.send_step(rows, ended)
            go_live_where_one_is_left()

        def go_live_where_one_is_left() -> None:
            # One candidate left in the whole pool: nothing can beat it any more, so
            # it is the reply — no more rounds; stream it live if asked.
            for pool in pools:
                if len(pool.alive) == 1 and not pool.finished and not pool.live:
                    pool.go_live(engine, params, hooks)

        for pool in pools:
            pool.plan_next_decision(steps_done)
        go_live_where_one_is_left()
        while state.num_rows:
            # Step 2 ends: a pool's KV cache would exceed its budget.
            due = [
                pool
                for pool in pools
                if pool.alive and not pool.live and steps_done == pool.next_decision
            ]
            if due:
                self._rounds(engine, state, due, reward, hooks)
                for pool in due:
                    pool.plan_next_decision(steps_done)
                go_live_where_one_is_left()
            if not state.num_rows:
                break
            # Step 2: decode the alive candidates of every pool up to the next decision
            # point of any pool (to the end when none is planned), in one engine call.
            upcoming = [
                pool.next_decision - steps_done
                for pool in pools
                if pool.alive and not pool.live and pool.next_decision > steps_done
            ]
            steps = int(min(upcoming)) if upcoming and min(upcoming) < math.inf else None
            engine.decode(
                state,
                params,
                steps,
                matchers=matchers,
                on_step=after_step,
                should_stop=hooks.should_stop,
            )

        # The decode time, shared equally by the pools, excludes the rounds' scoring;
        # computed once, before _finish adds each pool's final scoring to its stats.
        scoring = sum(pool.stats.scoring_seconds for pool in pools)
        decode_share = max(0.0, batch.seconds() - scoring) / len(pools)
        for pool in pools:
            stats = pool.stats
            stats.add_counters(batch.counters, batch=batch.id)
            stats.tokens_generated = sum(c.tokens_sampled for c in pool.candidates)
            stats.generation_seconds = decode_share
        return self._finish(engine, pools, reward, hooks)

    def _rounds(
        self,
        engine: ReplyEngine,
        state: DecodeState,
        pools: Sequence[_Pool],
        reward: Any,
        hooks: Hooks,
    ) -> None:
        """One round of each of ``pools`` (steps 3 to 5), all due at this step."""
        comparable = _comparable(reward)
        # Step 3: give every alive candidate a partial reward, in one call with the
        # candidates that finished since the last round — or with every finished one
        # when rewards are comparable only within a call, so the pool is ranked from it.
        # The pools due together share one reward call (each pool is its own item, so
        # its scores are those it would get alone).
        rounds, calls = [], []
        for pool in pools:
            number = pool.start_round()
            alive, finished = pool.alive, pool.unscored(comparable)
            texts = [c.text or "" for c in finished] + [
                decode(engine.tokenizer, c.token_ids) for c in alive
            ]
            recorded = parts.recorded_for(engine, pool.request, [*finished, *alive], texts)
            calls.append(RewardCall(pool.request.conversation, texts, pool.stats, recorded))
            rounds.append((pool, number, alive, finished))
        for (pool, number, alive, finished), values in zip(
            rounds, score_together(reward, calls), strict=True
        ):
            self._reject(pool, number, alive, finished, values, comparable, hooks)
        # Step 5: continue only the survivors — select their KV-cache rows in place,
        # once for every pool of the round (rows of the other pools stay).
        engine.select(
            state,
            [
                row
                for row, c in enumerate(state.candidates)
                if not any(pool.is_rejected(c) for pool in pools)
            ],
        )

    def _reject(
        self,
        pool: _Pool,
        number: int,
        alive: list[Candidate],
        finished: list[Candidate],
        values: list[float],
        comparable: bool,
        hooks: Hooks,
    ) -> None:
        """Step 4 of one pool's round, from the rewards of its step-3 call (``values``:
        its ``finished`` candidates first, then its ``alive`` ones)."""
        this_call = {c.index: value for c, value in zip(finished, values, strict=False)}
        if comparable:
            pool.remember(this_call)
        partial = values[len(finished) :]
        hooks.event(
            EVENT_SCORED,
            {"request": pool.index, "rewards": values, "partial": True, "round": number},
        )
        # Step 4: keep the top ⌈(1 − α)·|pool|⌉ of the pool. Finished candidates are
        # never rejected; an alive one survives if it ranks in the top slots.
        final = pool.scores if comparable else this_call
        ranked_pool = [(final[c.index], True, c) for c in pool.finished] + [
            (value, False, c) for value, c in zip(partial, alive, strict=True)
        ]
        keep = self._keep(len(ranked_pool))
        ranked = sorted(ranked_pool, key=lambda item: (-item[0], item[2].index))
        survivors = {id(c) for _, done, c in ranked[:keep] if not done}
        rejected = [c for c in alive if id(c) not in survivors]
        pool.reject(rejected, quota=len(ranked_pool) - keep)
        # The bar an alive candidate had to clear: the lowest surviving partial reward
        # (None when nothing was rejected — there was no bar).
        threshold = (
            min(
                (v for v, c in zip(partial, alive, strict=True) if id(c) in survivors),
                default=None,
            )
            if rejected
            else None
        )
        round_stats = pool.record_round(alive, len(rejected), threshold, values)
        hooks.event(EVENT_ROUND, {"request": pool.index, **round_stats.__dict__})

    def _keep(self, pool_size: int) -> int:
        """⌈(1 − α)·|pool|⌉, the candidates a round keeps, in exact arithmetic on α as
        written (⌈0.3·10⌉ is 3; the float product 3.0000000000000004 would give 4)."""
        return math.ceil((1 - Fraction(str(self.rejection_rate))) * pool_size)

    def _finish(
        self, engine: ReplyEngine, pools: Sequence[_Pool], reward: Any, hooks: Hooks
    ) -> list[Result]:
        # Step 6: score the candidates that finished after the last round (all of them
        # when no round was held, in candidate order — exactly Best-of-N's single
        # call), or every finished candidate in one call when rewards are comparable
        # only within a call, and return the best final reward among them. The pools
        # share one reward call, each pool its own item.
        comparable = _comparable(reward)
        unscored = [sorted(pool.unscored(comparable), key=lambda c: c.index) for pool in pools]
        calls = []
        for pool, own in zip(pools, unscored, strict=True):
            texts = [c.text or "" for c in own]
            recorded = parts.recorded_for(engine, pool.request, own, texts)
            calls.append(RewardCall(pool.request.conversation, texts, pool.stats, recorded))
        results = []
        for pool, own, values in zip(pools, unscored, score_together(reward, calls), strict=True):
            if own:
                pool.remember({c.index: v for c, v in zip(own, values, strict=True)})
                hooks.event(
                    EVENT_SCORED,
                    {"request": pool.index, "rewards": values, "partial": False, "round": None},
                )
            finished = sorted(pool.finished, key=lambda c: c.index)
            results.append(
                parts.best_result(
                    finished,
                    [pool.scores[c.index] for c in finished],
                    pool.stats,
                    pool.index,
                    # A reply streamed live must not be streamed a second time.
                    Hooks(on_event=hooks.on_event) if pool.streams else hooks,
                )
            )
        return results


class _Pool:
    """One request's pool and its progress through the algorithm.

    The pool changes only through its own methods: a candidate finishes
    (:meth:`finish`) or is rejected (:meth:`reject`), finished candidates keep their
    final rewards (:meth:`remember`), and rounds are counted and recorded
    (:meth:`start_round`, :meth:`record_round`).
    """

    def __init__(self, strategy: SpeculativeRejection, index: int, request: Request) -> None:
        self.strategy = strategy
        self.index = index
        self.request = request
        self.stats, self.candidates = parts.new_pool(strategy.name, request, index, strategy.n)
        self.prompt_slots = len(request.prompt_ids)
        # The budget in cache slots: given, or this pool's cache size at the first
        # decision, N·(prompt + τ) — as if the pool were decoded alone.
        self.budget = strategy.memory_budget_slots or len(self.candidates) * (
            self.prompt_slots + strategy.decision_tokens
        )
        smallest = strategy.smallest_budget_slots(self.prompt_slots, greedy=request.params.greedy)
        if self.budget < smallest:
            raise InvalidInputError(
                f"SpeculativeRejection(memory_budget_slots={self.budget}) cannot hold the "
                f"{len(self.candidates)} candidates it decodes (n={strategy.n}): their "
                f"prompts of {self.prompt_slots} tokens and one token each need {smallest} "
                "slots; raise the budget (n·(prompt + τ) slots decide after τ tokens) or "
                "lower n"
            )
        self.scores: dict[int, float] = {}  # candidate index -> final reward
        self.next_decision: float = math.inf
        self.live = False  # the one candidate left is the reply: no more rounds
        self.streams: parts.ReplyStreams | None = None  # the live reply's text deltas
        self._finished: list[Candidate] = []  # in the order they finished
        self._rejected: set[int] = set()  # ids of rejected candidates
        self._fell_short = False  # the last round rejected less than its quota
        self._rounds = 0
        self._best_seen: float | None = None  # the best reward any round gave
        self._alive_at_plan = len(self.candidates)
        self._sampled_at_round = 0

    @property
    def alive(self) -> list[Candidate]:
        """Candidates still decoding (neither finished nor rejected), in index order —
        the order of their rows."""
        return [c for c in self.candidates if not c.finished and id(c) not in self._rejected]

    @property
    def finished(self) -> list[Candidate]:
        """Finished candidates, in the order they finished (never rejected)."""
        return list(self._finished)

    def finish(self, candidate: Candidate) -> None:
        """Record that ``candidate`` finished: it stays in the pool for good."""
        self._finished.append(candidate)

    def reject(self, candidates: Sequence[Candidate], quota: int) -> None:
        """Reject alive ``candidates`` — a round's, whose quota was ``quota``: rejecting
        fewer makes the next decision back off."""
        self._rejected.update(id(c) for c in candidates)
        self._fell_short = len(candidates) < quota

    def is_rejected(self, candidate: Candidate) -> bool:
        return id(candidate) in self._rejected

    def unscored(self, comparable: bool) -> list[Candidate]:
        """Finished candidates a reward call must score: those without a final reward,
        or all of them when rewards are ``comparable`` only within one call."""
        return [c for c in self._finished if not comparable or c.index not in self.scores]

    def remember(self, rewards: Mapping[int, float]) -> None:
        """Keep final rewards (candidate index -> reward)."""
        self.scores.update(rewards)

    def start_round(self) -> int:
        """Count a new round; returns its number, from 1."""
        self._rounds += 1
        return self._rounds

    def record_round(
        self,
        alive: Sequence[Candidate],
        rejected: int,
        threshold: float | None,
        scored: Sequence[float],
    ) -> RoundStats:
        """The statistics of the round just held (``alive``: its alive candidates;
        ``scored``: the rewards its reward call gave), added to the request's."""
        # The best reward seen so far: the running maximum over every reward this pool
        # was given, partial or final (a round's own maximum can fall from round to
        # round, e.g. under a length penalty).
        if scored:
            best = max(scored)
            self._best_seen = best if self._best_seen is None else max(self._best_seen, best)
        sampled = sum(c.tokens_sampled for c in self.candidates)
        round_stats = RoundStats(
            round=self._rounds,
            decision_token=max((len(c.token_ids) for c in alive), default=0),
            alive=self._alive_at_plan,
            finished=len(self._finished),
            rejected=rejected,
            tokens_decoded=sampled - self._sampled_at_round,
            threshold=threshold,
            best_reward=self._best_seen,
        )
        self._sampled_at_round = sampled
        self.stats.rounds.append(round_stats)
        return round_stats

    def plan_next_decision(self, steps_done: int) -> None:
        """Decide when the next round happens: when the pool's KV cache (alive rows ×
        slots, slots = prompt + tokens decoded) would exceed the budget — but no
        earlier than twice the current length after a round that fell short, and
        never once no round can reject anything."""
        alive = len(self.alive)
        self._alive_at_plan = alive
        size = alive + len(self._finished)  # |pool|: only rejection shrinks it
        if alive == 0 or self.strategy._keep(size) >= size:
            # ⌈(1 − α)·|pool|⌉ = |pool| (α = 0 among others) now means for good: no
            # round could ever reject anything, so decode to the end.
            self.next_decision = math.inf
            return
        slots = self.prompt_slots + steps_done
        next_decision = steps_done + max(1, self.budget // alive - slots)
        if self._fell_short:
            # Geometric back-off: such rounds are O(log max_new_tokens).
            next_decision = max(next_decision, 2 * steps_done)
        self.next_decision = next_decision

    def go_live(self, engine: ReplyEngine, params: SamplingParams, hooks: Hooks) -> None:
        """Make the one candidate left the reply: no more rounds; stream it if asked."""
        self.live = True
        self.streams = parts.ReplyStreams(hooks, engine.tokenizer, params.stop, self.alive)


def _comparable(reward: Any) -> bool:
    """Whether rewards of different reward calls may be compared."""
    return bool(getattr(reward, "comparable_across_calls", True))
