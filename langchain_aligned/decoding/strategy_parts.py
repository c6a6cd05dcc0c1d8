"""Parts the strategies are built from: checks, pools, batches, choosing, results, streaming.

Every strategy module builds on these instead of on another strategy's internals.
Terms (request, candidate, pool, batch, reply, …) are the ones defined in the glossary
of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.base import RecordedLogprobs

from ..engines.base import Candidate, DecodeCancelled, EngineCounters, ReplyEngine
from ..errors import InvalidInputError
from .base import EVENT_DONE, EVENT_VERIFY, Hooks, Request, Result
from .params import SamplingParams
from .stats import AlignmentStats, new_batch_id
from .text import TextStream

__all__ = [
    "GREEDY_NOTE",
    "Batch",
    "ReplyStreams",
    "batches_by_params",
    "best_result",
    "check_cancelled",
    "check_gamma",
    "check_positive_int",
    "choose_best",
    "decode_batches",
    "new_pool",
    "record_verification",
    "recorded_for",
    "result_of",
]

GREEDY_NOTE = "temperature=0 (greedy decoding): all candidates would be identical, so one candidate was decoded"
"""The note of a request decoded greedily by a strategy that asked for several candidates."""


def check_positive_int(owner: str, name: str, value: Any, *, optional: bool = False) -> None:
    """Raise unless ``value`` is an integer ≥ 1 (or None, when ``optional``).

    Raises:
        InvalidInputError: naming the strategy, the field and the bad value.
    """
    if optional and value is None:
        return
    if not _is_count(value):
        raise InvalidInputError(f"{owner}({name}={value!r}): {name} must be an integer ≥ 1")


def check_gamma(owner: str, value: Any) -> None:
    """Raise unless γ (``num_draft_tokens``) is an integer ≥ 1.

    Raises:
        InvalidInputError: naming the strategy and the bad value.
    """
    if not _is_count(value):
        raise InvalidInputError(f"{owner}(num_draft_tokens={value!r}): γ must be an integer ≥ 1")


def _is_count(value: Any) -> bool:
    # bool is an int subclass, but True is no count.
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def recorded_for(
    engine: ReplyEngine, request: Request, candidates: Sequence[Candidate], texts: Sequence[str]
) -> RecordedLogprobs:
    """The log-probabilities decoding recorded for ``candidates`` (whose texts are
    ``texts``), for a reward call over them: candidates with an unrecorded token
    (accepted draft tokens) are left out, and a scorer then computes theirs."""
    by_text = {
        text: (tuple(c.token_ids), tuple(c.token_logprobs))
        for c, text in zip(candidates, texts, strict=True)
        if len(c.token_logprobs) == len(c.token_ids)
    }
    return RecordedLogprobs(engine.handle.model, tuple(request.prompt_ids), by_text)


def check_cancelled(hooks: Hooks) -> None:
    """Raise :class:`~langchain_aligned.engines.base.DecodeCancelled` when the caller
    asked to stop (strategies poll it before every forward pass)."""
    if hooks.should_stop is not None and hooks.should_stop():
        raise DecodeCancelled()


def batches_by_params(requests: Sequence[Request]) -> dict[SamplingParams, list[int]]:
    """Indices of ``requests`` per sampling parameters, in order of first appearance.

    Requests with different sampling parameters cannot share a step, so each entry is
    one batch.
    """
    batches: dict[SamplingParams, list[int]] = {}
    for index, request in enumerate(requests):
        batches.setdefault(request.params, []).append(index)
    return batches


@dataclass
class Batch:
    """One batch of a call: which requests it decodes and what decoding them needs."""

    engine: ReplyEngine
    """The target's engine."""
    requests: Sequence[Request]
    """Every request of the call (candidates and events use indices into it)."""
    members: list[int]
    """Indices of the requests of this batch, in request order."""
    params: SamplingParams
    """The sampling parameters the members share."""
    reward: Any
    """The call's reward scorer (None when the strategy needs none and got none)."""
    hooks: Hooks
    """The call's hooks."""
    counters: EngineCounters = field(default_factory=EngineCounters)
    """The batch's forward passes on the target's weights."""
    id: int = field(default_factory=new_batch_id)
    """The ``batch`` id its results report."""
    started: float = field(default_factory=time.perf_counter)
    """When its decoding started (``time.perf_counter``)."""

    def seconds(self) -> float:
        """Wall time since the batch started."""
        return time.perf_counter() - self.started


def decode_batches(
    engine: ReplyEngine,
    requests: Sequence[Request],
    reward: Any,
    hooks: Hooks,
    decode_batch: Callable[[Batch], list[Result]],
) -> list[Result]:
    """Decode each batch of :func:`batches_by_params` with ``decode_batch`` (which
    returns the results of the batch's members in their order) and return the results
    in request order."""
    results: dict[int, Result] = {}
    for params, members in batches_by_params(requests).items():
        batch = Batch(engine, requests, members, params, reward, hooks)
        results.update(zip(members, decode_batch(batch), strict=True))
    return [results[index] for index in range(len(requests))]


def new_pool(
    strategy: str, request: Request, request_index: int, n: int
) -> tuple[AlignmentStats, list[Candidate]]:
    """The statistics and the fresh candidates (the pool) of one request.

    ``n`` candidates, or one when the request is greedy: greedy candidates would all
    be the same reply, and the statistics then carry :data:`GREEDY_NOTE`.
    """
    greedy = request.params.greedy
    count = 1 if greedy else n
    stats = AlignmentStats(
        strategy=strategy,
        num_candidates=count,
        prompt_tokens=len(request.prompt_ids),
        seed=request.seed,
        note=GREEDY_NOTE if greedy and n > 1 else None,
    )
    return stats, request.candidates(request_index, count)


def choose_best(rewards: Sequence[float]) -> int:
    """Index of the highest reward (the lowest index among ties)."""
    return max(range(len(rewards)), key=lambda i: (rewards[i], -i))


def result_of(candidate: Candidate, stats: AlignmentStats) -> Result:
    """The :class:`Result` whose reply is ``candidate``'s (a finished candidate)."""
    return Result(
        text=candidate.text or "",
        token_ids=list(candidate.token_ids),
        finish_reason=candidate.finish_reason or "length",
        stats=stats,
    )


def best_result(
    candidates: Sequence[Candidate],
    rewards: Sequence[float],
    stats: AlignmentStats,
    request_index: int,
    hooks: Hooks,
) -> Result:
    """The result of the best of a request's finished ``candidates`` (``rewards`` in
    the same order), with its statistics completed and the reply streamed whole."""
    best = choose_best(rewards)
    winner = candidates[best]
    # The statistics list final rewards in candidate order, whatever order they came in.
    by_index = sorted(zip(candidates, rewards, strict=True), key=lambda pair: pair[0].index)
    stats.candidate_rewards = [reward for _, reward in by_index]
    stats.reward = rewards[best]
    stats.tokens_returned = len(winner.token_ids)
    if hooks.on_text is not None and winner.text:
        # The winner is only known once every candidate is scored: stream it whole.
        hooks.on_text(request_index, winner.text)
    hooks.event(EVENT_DONE, {"request": request_index, "stats": stats.to_dict()})
    return result_of(winner, stats)


class ReplyStreams:
    """Streams the growing replies of some candidates to ``hooks.on_text`` as text deltas.

    Each streamed candidate has its own :class:`~langchain_aligned.decoding.text.TextStream`,
    so a delta never shows text the finished reply will not contain. Nothing is
    streamed when the caller gave no ``on_text``.
    """

    def __init__(
        self, hooks: Hooks, tokenizer: Any, stop: Sequence[str], candidates: Iterable[Candidate]
    ) -> None:
        self.hooks = hooks
        self.streams = (
            {id(c): TextStream(tokenizer, stop) for c in candidates}
            if hooks.on_text is not None
            else {}
        )

    def __bool__(self) -> bool:
        """Whether any candidate is streamed."""
        return bool(self.streams)

    def send(self, candidate: Candidate, finished: bool) -> None:
        """Send the text ``candidate``'s reply gained since the last call (everything it
        holds on the first call; the rest of the finished reply when ``finished``)."""
        stream = self.streams.get(id(candidate))
        if stream is None or self.hooks.on_text is None:
            return
        delta = stream.delta(candidate.token_ids, final_text=candidate.text if finished else None)
        if delta:
            self.hooks.on_text(candidate.request, delta)

    def send_step(self, rows: Iterable[Candidate], ended: Iterable[Candidate]) -> None:
        """After one step: send the new text of every streamed row.

        ``rows`` are the candidates the step decoded, ``ended`` those it finished.
        """
        finished = {id(c) for c in ended}
        for candidate in rows:
            self.send(candidate, id(candidate) in finished)


def record_verification(
    stats: AlignmentStats, hooks: Hooks, request: int, step: int, proposed: int, accepted: int
) -> None:
    """Count one verification step of a request (``proposed`` = γ_r draft tokens, of
    which ``accepted`` are kept in the reply) and send its ``aligned.verify`` event."""
    if proposed:
        stats.draft_tokens_proposed += proposed
        stats.draft_tokens_accepted += accepted
        stats.acceptance_per_step.append(accepted / proposed)
    hooks.event(
        EVENT_VERIFY,
        {"request": request, "proposed": proposed, "accepted": accepted, "step": step},
    )
