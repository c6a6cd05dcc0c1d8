"""Plain sampling: one candidate per request, the baseline every strategy is compared to.

All requests of a call share one left-padded batch; a request whose reply ends is
pruned from the batch at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import AlignmentStats, Hooks, Request, Result, Strategy, new_batch_id, score_replies
from .engine import Candidate, DecodeCancelled, DecodeState, DecodingEngine, EngineCounters
from .params import SamplingParams
from .text import StopMatcher, TextStream

__all__ = ["Sampling", "decode_candidates"]


def decode_candidates(
    engine: DecodingEngine,
    state: DecodeState,
    params: SamplingParams,
    hooks: Hooks,
    *,
    stream: bool = False,
) -> list[Candidate]:
    """Decode every row of ``state`` to the end, streaming text deltas if asked.

    With ``stream=True``, deltas go to ``hooks.on_text`` keyed by request index
    (everything a candidate already holds comes out in its first delta). Returns the
    candidates in the order they finished.
    """
    streams = (
        {id(c): TextStream(engine.tokenizer, params.stop) for c in state.candidates}
        if stream and hooks.on_text is not None
        else {}
    )
    matchers: dict[int, StopMatcher] = {}
    done: list[Candidate] = []
    while state.num_rows:
        if hooks.should_stop is not None and hooks.should_stop():
            raise DecodeCancelled()
        rows = list(state.candidates)
        finished = engine.step(state, params, matchers)
        done.extend(finished)
        if streams and hooks.on_text is not None:
            ended = {id(c) for c in finished}
            for candidate in rows:
                text_stream = streams[id(candidate)]
                final = candidate.text if id(candidate) in ended else None
                delta = text_stream.delta(candidate.token_ids, final_text=final)
                if delta:
                    hooks.on_text(candidate.request, delta)
    return done


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
        candidates = [c for i, r in enumerate(requests) for c in r.candidates(i, 1)]
        # Requests with different sampling parameters cannot share a step; group them.
        # Each group is one batch: its forward passes are shared by its requests.
        groups: dict[Any, list[Candidate]] = {}
        for candidate in candidates:
            groups.setdefault(requests[candidate.request].params, []).append(candidate)
        batches: dict[int, tuple[int, EngineCounters, float]] = {}
        for params, group in groups.items():
            counters, batch, start = EngineCounters(), new_batch_id(), time.perf_counter()
            state = engine.prefill(group, counters=counters)
            decode_candidates(engine, state, params, hooks, stream=hooks.streaming)
            share = (time.perf_counter() - start) / len(group)
            for candidate in group:
                batches[candidate.request] = (batch, counters, share)
        results = []
        for request, candidate in zip(requests, candidates, strict=True):
            batch, counters, share = batches[candidate.request]
            stats = AlignmentStats(
                strategy=self.name,
                num_candidates=1,
                tokens_generated=len(candidate.token_ids),
                tokens_returned=len(candidate.token_ids),
                prompt_tokens=len(request.prompt_ids),
                seed=request.seed,
                generation_seconds=share,
            )
            stats.add_counters(counters, batch=batch)
            results.append(
                Result(
                    text=candidate.text or "",
                    token_ids=list(candidate.token_ids),
                    finish_reason=candidate.finish_reason or "length",
                    stats=stats,
                )
            )
        score_replies(reward, requests, results)
        return results
