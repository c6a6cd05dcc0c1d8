"""Plain sampling: one candidate per request, the baseline every strategy is compared to.

All requests of a batch share one left-padded KV cache; a candidate whose reply
finishes leaves the batch at once. Terms are defined in the glossary of
:mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..engines.base import Candidate, DecodeState, ReplyEngine
from . import strategy_parts as parts
from .base import Hooks, Request, Result, Strategy, score_replies
from .params import SamplingParams
from .stats import AlignmentStats

__all__ = ["Sampling", "decode_candidates", "sample_batch"]


def decode_candidates(
    engine: ReplyEngine,
    state: DecodeState,
    params: SamplingParams,
    hooks: Hooks,
    *,
    stream: bool = False,
) -> list[Candidate]:
    """Decode every row of ``state`` until it finishes, streaming text deltas if asked.

    With ``stream=True``, deltas go to ``hooks.on_text`` keyed by request index
    (everything a candidate already holds comes out in its first delta). Returns the
    candidates in the order they finished.
    """
    streams = parts.ReplyStreams(
        hooks, engine.tokenizer, params.stop, state.candidates if stream else ()
    )
    return engine.decode(
        state,
        params,
        on_step=streams.send_step if streams else None,
        should_stop=hooks.should_stop,
    )


@dataclass(frozen=True)
class Sampling(Strategy):
    """Plain decoding: temperature / top-p / top-k sampling, or greedy at temperature 0."""

    name: ClassVar[str] = "sampling"

    def decode(
        self, engine: ReplyEngine, requests: Sequence[Request], reward: Any, hooks: Hooks
    ) -> list[Result]:
        results = parts.decode_batches(engine, requests, reward, hooks, self._decode_batch)
        score_replies(reward, requests, results)
        return results

    def _decode_batch(self, batch: parts.Batch) -> list[Result]:
        return sample_batch(batch, self.name)[0]


def sample_batch(
    batch: parts.Batch, strategy_name: str
) -> tuple[list[Result], list[Candidate], DecodeState]:
    """Decode the requests of one batch with one candidate each.

    Returns the results (in member order), their candidates and the decoded state, for
    a strategy that adds statistics of its own (speculative sampling on vLLM).
    """
    requests = batch.requests
    candidates = [requests[i].candidates(i, 1)[0] for i in batch.members]
    state = batch.engine.prefill(candidates, counters=batch.counters)
    decode_candidates(batch.engine, state, batch.params, batch.hooks, stream=batch.hooks.streaming)
    # The batch's forward passes are shared: each request reports them (one batch
    # id) and an equal share of the decoding time.
    share = batch.seconds() / len(candidates)
    results = []
    for index, candidate in zip(batch.members, candidates, strict=True):
        stats = AlignmentStats(
            strategy=strategy_name,
            num_candidates=1,
            tokens_generated=candidate.tokens_sampled,
            tokens_returned=len(candidate.token_ids),
            prompt_tokens=len(requests[index].prompt_ids),
            seed=requests[index].seed,
            generation_seconds=share,
        )
        stats.add_counters(batch.counters, batch=batch.id)
        results.append(parts.result_of(candidate, stats))
    return results, candidates, state
