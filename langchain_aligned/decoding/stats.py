"""What a strategy reports: :class:`AlignmentStats` per request (with a
:class:`RoundStats` per Speculative Rejection round), and :func:`sum_stats`, the totals
over many requests that count a batch's shared forward passes once.

Every field's meaning is defined once, in its docstring here and in the glossary of
:mod:`langchain_aligned.decoding` (per-request and per-batch statistics).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..engines.base import EngineCounters

__all__ = [
    "PER_BATCH_FIELDS",
    "SUMMED_FIELDS",
    "AlignmentStats",
    "RoundStats",
    "new_batch_id",
    "sum_stats",
]


@dataclass
class RoundStats:
    """One round of Speculative Rejection."""

    round: int
    """Round number, from 1."""
    decision_token: int
    """The decision token τ: tokens the alive candidates had when this round was held."""
    alive: int
    """Alive candidates when this round was scheduled (right after the previous
    round; candidates that finished since are counted in ``finished`` too)."""
    finished: int
    """Candidates finished by this round (kept, never rejected)."""
    rejected: int
    """Alive candidates this round rejected."""
    tokens_decoded: int
    """Tokens decoded in the round across candidates."""
    threshold: float | None
    """Lowest partial reward that survived (None when nothing was rejected)."""
    best_reward: float | None
    """Best reward seen so far: the maximum of every reward the pool's rounds up to
    this one gave, partial or final (it never falls from one round to the next)."""


@dataclass
class AlignmentStats:
    """What one strategy did for one request.

    The requests of a batch share forward passes, so two kinds of field exist (see
    the glossary of :mod:`langchain_aligned.decoding`):

    * **per-request statistics** (:data:`SUMMED_FIELDS` among them): candidates,
      tokens, draft tokens, reward calls, scoring time and ``generation_seconds``.
    * **per-batch statistics** (:data:`PER_BATCH_FIELDS`): ``target_forward_passes``,
      ``draft_forward_passes``, ``prefill_passes``, ``peak_batch_size`` and
      ``peak_cache_slots``, the same in every result with the same ``batch`` id;
      :func:`sum_stats` counts them once per batch.
    """

    strategy: str
    """Strategy name (``"sampling"``, ``"best_of_n"``, …)."""
    num_candidates: int = 1
    """Candidates started for this request."""
    reward: float | None = None
    """Reward of the returned reply (None when no reward was computed)."""
    candidate_rewards: list[float] = field(default_factory=list)
    """Final reward of every finished candidate of the pool, in candidate order."""
    rounds: list[RoundStats] = field(default_factory=list)
    """Rounds of Speculative Rejection (empty for other strategies)."""
    tokens_generated: int = 0
    """Tokens generated across all candidates (glossary: the decode cost, each reply's
    ending token — end-of-sequence or a stop string's — included)."""
    tokens_returned: int = 0
    """Tokens returned: ``len(token_ids)`` of the returned reply (glossary)."""
    prompt_tokens: int = 0
    """Tokens of the rendered prompt."""
    draft_tokens_proposed: int = 0
    """Draft tokens verified for this request (speculative strategies): γ_r per step,
    so near the length cap no more than the reply can still take."""
    draft_tokens_accepted: int = 0
    """Verified draft tokens that were accepted *and* are part of the reply: an
    end-of-sequence token, a stop string or the length cap cut an accepted run, and
    the tokens cut (and the end-of-sequence token itself) are not counted."""
    acceptance_per_step: list[float] = field(default_factory=list)
    """Accepted ÷ proposed in each verification step, in order."""
    target_forward_passes: int | None = 0
    """Target passes, prefills included — also those of a prompt-steered draft or
    reference that runs on the target's weights (per batch)."""
    draft_forward_passes: int | None = 0
    """Draft passes: forward passes on other weights, the draft's and the draft
    reference's (per batch)."""
    prefill_passes: int | None = 0
    """Target passes that started a KV cache; never repeated per round (per batch)."""
    reward_calls: int = 0
    """Calls to the reward scorer."""
    reward_texts_scored: int = 0
    """Texts scored across those calls."""
    peak_batch_size: int | None = 0
    """Largest batch size of a target pass (per batch)."""
    peak_cache_slots: int | None = 0
    """Most ``rows × slots`` held in one KV cache on the target's weights, a memory
    proxy (per batch)."""
    batch: int | None = None
    """Id of the batch whose forward passes this request shared; results with the same
    id report the same per-batch figures."""
    generation_seconds: float = 0.0
    """This request's share of its batch's decoding wall time (the batch's time divided
    by its requests), so sums over a call give the call's decoding time."""
    scoring_seconds: float = 0.0
    """Wall time spent in the reward scorer."""
    seed: int | None = None
    """Seed of the request (rerun with it to reproduce the reply)."""
    note: str | None = None
    """Anything the caller should know (e.g. greedy decoding used one candidate)."""

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted ÷ proposed draft tokens (None without a draft)."""
        if self.draft_tokens_proposed == 0:
            return None
        return self.draft_tokens_accepted / self.draft_tokens_proposed

    def add_counters(
        self, counters: EngineCounters, *, target: bool = True, batch: int | None = None
    ) -> None:
        """Fold the counters of a batch's forward passes into these statistics.

        ``target`` says whether they were target passes; ``batch`` is the batch's id
        (:func:`new_batch_id`).
        """
        if batch is not None:
            self.batch = batch
        if not counters.counts_passes:
            # An engine behind a server: its passes are unseen, so absent (not zero).
            self.target_forward_passes = self.prefill_passes = None
            self.peak_batch_size = self.peak_cache_slots = None
            return
        if target:
            self.target_forward_passes = (self.target_forward_passes or 0) + counters.forward_passes
            self.prefill_passes = (self.prefill_passes or 0) + counters.prefill_passes
            self.peak_batch_size = max(self.peak_batch_size or 0, counters.peak_batch_size)
            self.peak_cache_slots = max(self.peak_cache_slots or 0, counters.peak_cache_slots)
        else:
            self.draft_forward_passes = (self.draft_forward_passes or 0) + counters.forward_passes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``acceptance_rate`` and ``total_seconds`` added)."""
        data = asdict(self)
        data["acceptance_rate"] = self.acceptance_rate
        data["total_seconds"] = self.generation_seconds + self.scoring_seconds
        return data


PER_BATCH_FIELDS = (
    "target_forward_passes",
    "draft_forward_passes",
    "prefill_passes",
    "peak_batch_size",
    "peak_cache_slots",
)
"""Fields of :class:`AlignmentStats` shared by every request of one batch."""

SUMMED_FIELDS = (
    "num_candidates",
    "tokens_generated",
    "tokens_returned",
    "prompt_tokens",
    "draft_tokens_proposed",
    "draft_tokens_accepted",
    "reward_calls",
    "reward_texts_scored",
    "generation_seconds",
    "scoring_seconds",
)
"""Per-request fields of :class:`AlignmentStats` whose sum is a total."""

_BATCH_IDS = itertools.count(1)


def new_batch_id() -> int:
    """A process-wide unique id for one batch of shared forward passes."""
    return next(_BATCH_IDS)


def sum_stats(stats: Iterable[AlignmentStats | Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over many requests' statistics (objects or their ``to_dict()``).

    Per-request fields are summed; per-batch fields are counted once per ``batch``
    id (summed over batches, except the peaks, whose maximum is taken), so the
    results of one call never count a shared forward pass twice.
    """
    records = [s.to_dict() if isinstance(s, AlignmentStats) else dict(s) for s in stats]
    totals: dict[str, Any] = {
        name: sum(r.get(name) or 0 for r in records) for name in SUMMED_FIELDS
    }
    batches: dict[Any, dict[str, Any]] = {}
    for position, record in enumerate(records):
        # A record without a batch id shared its passes with no one.
        key = record.get("batch") if record.get("batch") is not None else ("alone", position)
        batches.setdefault(key, record)
    for name in PER_BATCH_FIELDS:
        values = [b.get(name) or 0 for b in batches.values()]
        totals[name] = max(values, default=0) if name.startswith("peak_") else sum(values)
    totals["requests"] = len(records)
    totals["batches"] = len(batches)
    proposed = totals["draft_tokens_proposed"]
    totals["acceptance_rate"] = totals["draft_tokens_accepted"] / proposed if proposed else None
    return totals
