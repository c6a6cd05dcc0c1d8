"""Callbacks: custom events from decoding and ``AlignmentStatsHandler``.

Events (all names start with ``aligned.``), dispatched through the run's callback
manager, so they reach handlers' ``on_custom_event`` and ``astream_events(version="v2")``:

``aligned.round``
    Speculative Rejection finished a round: ``request``, ``round``, ``decision_token``,
    ``alive``, ``finished``, ``rejected``, ``tokens_decoded``, ``threshold``,
    ``best_reward``.
``aligned.scored``
    Candidates were scored: ``request``, ``rewards``, ``partial`` (True for partial
    candidates), ``round``.
``aligned.verify``
    A speculative verification step: ``request``, ``proposed``, ``accepted``, ``step``.
``aligned.done``
    A request finished: ``request``, ``stats`` (the alignment statistics dict).
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from .decoding.base import EVENT_DONE, EVENT_PREFIX, EVENT_ROUND, EVENT_SCORED, EVENT_VERIFY
from .decoding.stats import sum_stats

__all__ = [
    "EVENT_DONE",
    "EVENT_PREFIX",
    "EVENT_ROUND",
    "EVENT_SCORED",
    "EVENT_VERIFY",
    "AlignmentStatsHandler",
]


class AlignmentStatsHandler(BaseCallbackHandler):
    """Aggregate alignment statistics across calls.

    Reads ``response_metadata["alignment"]`` of every reply (``on_llm_end``) and counts
    events. ``summary()`` returns calls, rewards (mean/min/max), acceptance rate of
    speculative strategies, rejected candidates and rounds of Speculative Rejection,
    and tokens saved against Best-of-N at the same n — estimated as
    ``n × tokens_returned − tokens_generated`` per call (what Best-of-N would have
    decoded if every candidate were as long as the reply, minus what was decoded).

    ``progress=True`` shows a tqdm bar counting calls (``total`` if known).
    """

    def __init__(self, *, progress: bool = False, total: int | None = None) -> None:
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.events: dict[str, int] = {}
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="call", desc="aligned")

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name.startswith(EVENT_PREFIX):
            with self._lock:
                self.events[name] = self.events.get(name, 0) + 1

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                metadata = (
                    getattr(message, "response_metadata", None) or generation.generation_info or {}
                )
                alignment = metadata.get("alignment")
                if alignment:
                    with self._lock:
                        self.records.append(alignment)
                    if self._bar is not None:
                        self._bar.update(1)
                        if alignment.get("reward") is not None:
                            self._bar.set_postfix(reward=f"{alignment['reward']:.3f}")

    def summary(self) -> dict[str, Any]:
        """Aggregated statistics over every call seen so far."""
        with self._lock:
            records = list(self.records)
            events = dict(self.events)
        rewards = [r["reward"] for r in records if r.get("reward") is not None]
        saved = sum(
            max(
                r.get("num_candidates", 1) * r.get("tokens_returned", 0)
                - r.get("tokens_generated", 0),
                0,
            )
            for r in records
            if r.get("strategy") == "speculative_rejection"
        )
        # Requests decoded in one batch share its forward passes: count them once.
        shared = sum_stats(records)
        return {
            "calls": len(records),
            "strategies": sorted({r.get("strategy", "?") for r in records}),
            "reward_mean": sum(rewards) / len(rewards) if rewards else None,
            "reward_min": min(rewards) if rewards else None,
            "reward_max": max(rewards) if rewards else None,
            "tokens_generated": shared["tokens_generated"],
            "tokens_returned": shared["tokens_returned"],
            "draft_tokens_proposed": shared["draft_tokens_proposed"],
            "draft_tokens_accepted": shared["draft_tokens_accepted"],
            "acceptance_rate": shared["acceptance_rate"],
            "rounds": sum(len(r.get("rounds") or []) for r in records),
            "candidates_rejected": sum(
                x.get("rejected", 0) for r in records for x in r.get("rounds") or []
            ),
            "tokens_saved_vs_best_of_n": saved,
            "reward_calls": shared["reward_calls"],
            "target_forward_passes": shared["target_forward_passes"],
            "draft_forward_passes": shared["draft_forward_passes"],
            "events": events,
        }

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
