"""Plain sampling: one candidate per request, the baseline every strategy is compared to.

All requests of a call share one left-padded batch; a request whose reply ends is
pruned from the batch at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import AlignmentStats, Hooks, Request, Result, Strategy
from .engine import Candidate, DecodeCancelled, DecodingEngine, EngineCounters
from .text import StopMatcher, TextStream

__all__ = ["Sampling", "decode_candidates"]


def decode_candidates(
    engine: DecodingEngine,
    candidates: Sequence[Candidate],
    requests: Sequence[Request],
    counters: EngineCounters,
    hooks: Hooks,
    *,
    stream: bool = False,
    max_steps: int | None = None,
    state: Any = None,
) -> Any:
    """Decode ``candidates`` to the end (or ``max_steps``), streaming if asked.

    All candidates must share sampling parameters (they do within one call). With
    ``stream=True``, text deltas go to ``hooks.on_text`` keyed by request index.
    Returns the :class:`DecodeState` (empty once every candidate finished).
    """
    if not candidates and state is None:
        return None
    params = requests[candidates[0].request if candidates else state.candidates[0].request].params
    if state is None:
        state = engine.prefill(candidates, counters=counters)
    streams = (
        {id(c): TextStream(engine.tokenizer, params.stop) for c in state.candidates}
        if stream and hooks.on_text is not None
        else {}
    )
    matchers: dict[int, StopMatcher] = {}
    steps = 0
    while state.num_rows and (max_steps is None or steps < max_steps):
        if hooks.should_stop is not None and hooks.should_stop():
            raise DecodeCancelled()
        rows = list(state.candidates)
        finished = engine.step(state, params, matchers)
        steps += 1
        if streams and hooks.on_text is not None:
            done = {id(c) for c in finished}
            for candidate in rows:
                text_stream = streams.get(id(candidate))
                if text_stream is None:
                    continue
                final = candidate.text if id(candidate) in done else None
                delta = text_stream.delta(candidate.token_ids, final_text=final)
                if delta:
                    hooks.on_text(candidate.request, delta)
    return state


@dataclass(frozen=True)
class Sampling(Strategy):
    """Plain decoding: temperature / top-p / top-k sampling, or greedy at temperature 0."""

    name: ClassVar[str] = "sampling"

    def run(
        self,
        engine: DecodingEngine,
        requests: Sequence[Request],
        *,
        reward: Any = None,
        hooks: Hooks | None = None,
    ) -> list[Result]:
        hooks = hooks or Hooks()
        counters = EngineCounters()
        candidates = [c for i, r in enumerate(requests) for c in r.candidates(i, 1)]
        start = time.perf_counter()
        # Requests with different sampling parameters cannot share a step; group them.
        groups: dict[Any, list[Candidate]] = {}
        for candidate in candidates:
            groups.setdefault(requests[candidate.request].params, []).append(candidate)
        for group in groups.values():
            decode_candidates(engine, group, requests, counters, hooks, stream=hooks.streaming)
        elapsed = time.perf_counter() - start
        results = []
        for request, candidate in zip(requests, candidates, strict=True):
            stats = AlignmentStats(
                strategy=self.name,
                num_candidates=1,
                tokens_generated=len(candidate.token_ids),
                tokens_returned=len(candidate.token_ids),
                prompt_tokens=len(request.prompt_ids),
                seed=request.seed,
                generation_seconds=elapsed / max(len(requests), 1),
            )
            # Forward passes are shared by the whole batch; each request reports them.
            stats.add_counters(counters)
            if reward is not None:
                from .base import score_texts

                scores = score_texts(reward, request.conversation, [candidate.text or ""], stats)
                stats.reward = scores[0]
                stats.candidate_rewards = scores
            results.append(
                Result(
                    text=candidate.text or "",
                    token_ids=list(candidate.token_ids),
                    finish_reason=candidate.finish_reason or "length",
                    stats=stats,
                )
            )
        return results
