"""What every decoding strategy shares: requests, results, statistics and hooks.

A **strategy** is a small frozen config (``Sampling()``, ``BestOfN(n=8)``, …) whose
:meth:`Strategy.run` decodes a list of :class:`Request` s with a
:class:`~langchain_aligned.decoding.engine.DecodingEngine` and returns one
:class:`Result` per request, each carrying :class:`AlignmentStats`.

Terms (see also the engine's module docstring):

* **reward** — a float from a reward scorer for one candidate's text; higher is
  better. Scorers follow the ``rewards.RewardScorer`` protocol
  (``score(conversation, completions) -> list[float]``).
* **round** — one decision point of Speculative Rejection: partial candidates are
  scored and the low-reward ones rejected.
* **draft tokens** — tokens proposed by a draft model in speculative strategies;
  **accepted** ones become part of the reply.
"""

from __future__ import annotations

import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..errors import InvalidInputError, RewardError
from .engine import Candidate, DecodingEngine, EngineCounters
from .params import SamplingParams, derive_seed, make_generator

__all__ = [
    "EVENT_DONE",
    "EVENT_PREFIX",
    "EVENT_ROUND",
    "EVENT_SCORED",
    "EVENT_VERIFY",
    "AlignmentStats",
    "Conversation",
    "Hooks",
    "Request",
    "Result",
    "RoundStats",
    "Strategy",
    "new_seed",
    "score_replies",
    "score_texts",
]

Conversation = str | Sequence[Mapping[str, Any]]
"""A plain prompt string or HF chat-format messages."""

EVENT_PREFIX = "aligned."
EVENT_ROUND = "aligned.round"
"""Speculative Rejection finished a round: data is a :class:`RoundStats` as dict."""
EVENT_SCORED = "aligned.scored"
"""A set of candidates was scored: ``{"request", "rewards", "partial", "round"}``."""
EVENT_VERIFY = "aligned.verify"
"""A speculative verification step: ``{"request", "proposed", "accepted", "step"}``."""
EVENT_DONE = "aligned.done"
"""A request finished: ``{"request", "stats"}`` (the :class:`AlignmentStats` dict)."""


def new_seed() -> int:
    """A fresh 63-bit seed from the OS (used when the caller gives none)."""
    return secrets.randbits(63)


@dataclass(frozen=True)
class Request:
    """One prompt to answer."""

    conversation: Conversation
    """What the reward scorer sees (messages, or the prompt string)."""
    prompt_ids: list[int]
    """Rendered and tokenised prompt for the target model."""
    params: SamplingParams
    """Sampling parameters for this request."""
    seed: int
    """Root of every candidate's generator (reproducible per request)."""
    tools: tuple[Mapping[str, Any], ...] = ()
    """Tools rendered into the prompt (drafts re-render with them)."""

    def candidates(self, request_index: int, n: int, offset: int = 0) -> list[Candidate]:
        """``n`` fresh candidates with their own generators (indices from ``offset``)."""
        return [
            Candidate(
                request=request_index,
                index=offset + i,
                prompt_ids=list(self.prompt_ids),
                generator=None
                if self.params.greedy
                else make_generator(derive_seed(self.seed, offset + i)),
            )
            for i in range(n)
        ]


@dataclass
class RoundStats:
    """One decision point of Speculative Rejection."""

    round: int
    """Round number, from 1."""
    decision_token: int
    """Tokens decoded per candidate when this round's scores were taken."""
    alive: int
    """Unfinished candidates entering the round."""
    finished: int
    """Candidates finished by this round (kept, never rejected)."""
    rejected: int
    """Candidates stopped in this round."""
    tokens_decoded: int
    """Tokens decoded in the round across candidates."""
    threshold: float | None
    """Lowest reward that survived (None when nothing was rejected)."""
    best_reward: float | None
    """Best reward seen so far."""


@dataclass
class AlignmentStats:
    """What one strategy run did for one request.

    Integer fields are counters (safe to sum across chunks or calls); floats and
    lists describe the run as a whole.
    """

    strategy: str
    """Strategy name (``"sampling"``, ``"best_of_n"``, …)."""
    num_candidates: int = 1
    """Candidates started for this request."""
    reward: float | None = None
    """Reward of the returned reply (None when no reward was computed)."""
    candidate_rewards: list[float] = field(default_factory=list)
    """Final reward of every candidate scored as complete, in candidate order."""
    rounds: list[RoundStats] = field(default_factory=list)
    """Speculative Rejection rounds (empty for other strategies)."""
    tokens_generated: int = 0
    """Tokens sampled or accepted across all candidates (the decode cost)."""
    tokens_returned: int = 0
    """Tokens in the returned reply."""
    prompt_tokens: int = 0
    """Tokens of the rendered prompt."""
    draft_tokens_proposed: int = 0
    """Tokens proposed by the draft model (speculative strategies)."""
    draft_tokens_accepted: int = 0
    """Proposed tokens that were accepted."""
    acceptance_per_step: list[float] = field(default_factory=list)
    """Accepted ÷ proposed in each verification step, in order."""
    target_forward_passes: int = 0
    """Forward passes of the target model (prefills included)."""
    draft_forward_passes: int = 0
    """Forward passes of draft models."""
    prefill_passes: int = 0
    """Target forward passes that started a KV cache (never repeated per round)."""
    reward_calls: int = 0
    """Calls to the reward scorer."""
    reward_texts_scored: int = 0
    """Texts scored across those calls."""
    peak_batch_size: int = 0
    """Most rows in one target forward pass."""
    peak_cache_slots: int = 0
    """Most ``rows × slots`` held in the target's KV cache (a memory proxy)."""
    generation_seconds: float = 0.0
    """Wall time spent decoding."""
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

    def add_counters(self, counters: EngineCounters, *, target: bool = True) -> None:
        """Fold an engine's counters into these statistics."""
        if target:
            self.target_forward_passes += counters.forward_passes
            self.prefill_passes += counters.prefill_passes
            self.peak_batch_size = max(self.peak_batch_size, counters.peak_batch_size)
            self.peak_cache_slots = max(self.peak_cache_slots, counters.peak_cache_slots)
        else:
            self.draft_forward_passes += counters.forward_passes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``acceptance_rate`` and ``total_seconds`` added)."""
        data = asdict(self)
        data["acceptance_rate"] = self.acceptance_rate
        data["total_seconds"] = self.generation_seconds + self.scoring_seconds
        return data


@dataclass
class Result:
    """The reply chosen for one request."""

    text: str
    """Reply text (stop string and EOS removed)."""
    token_ids: list[int]
    """Generated token ids of the reply."""
    finish_reason: str
    """``"stop"`` or ``"length"``."""
    stats: AlignmentStats
    """What the strategy did."""


@dataclass
class Hooks:
    """Optional callbacks a caller passes to :meth:`Strategy.run`.

    All are called from the decoding thread.
    """

    on_event: Callable[[str, dict[str, Any]], None] | None = None
    """``(name, data)`` for progress events; names start with ``aligned.``."""
    on_text: Callable[[int, str], None] | None = None
    """``(request_index, text_delta)`` for live streaming of a request's reply."""
    should_stop: Callable[[], bool] | None = None
    """Polled between forward passes; True cancels decoding."""

    def event(self, name: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(name, data)

    @property
    def streaming(self) -> bool:
        return self.on_text is not None


def _scorer_name(reward: Any) -> str:
    return str(getattr(reward, "name", None) or type(reward).__name__)


def score_texts(
    reward: Any,
    conversation: Conversation,
    texts: Sequence[str],
    stats: AlignmentStats,
) -> list[float]:
    """Score ``texts`` with ``reward`` once, validating what comes back.

    Raises:
        RewardError: the scorer raised, returned the wrong number of scores, or a
            NaN / infinite score (the message names the scorer and the index).
    """
    if not texts:
        return []
    name = _scorer_name(reward)
    start = time.perf_counter()
    try:
        scores = reward.score(conversation, list(texts))
    except Exception as exc:
        raise RewardError(f"Reward scorer {name} raised {type(exc).__name__}: {exc}") from exc
    finally:
        stats.scoring_seconds += time.perf_counter() - start
        stats.reward_calls += 1
        stats.reward_texts_scored += len(texts)
    try:
        values = [float(s) for s in scores]
    except (TypeError, ValueError) as exc:
        raise RewardError(
            f"Reward scorer {name} returned non-numeric scores: {scores!r:.200}"
        ) from exc
    if len(values) != len(texts):
        raise RewardError(
            f"Reward scorer {name} returned {len(values)} scores for {len(texts)} completions"
        )
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise RewardError(
                f"Reward scorer {name} returned {value} for completion {index}; scores must be finite"
            )
    return values


def score_replies(reward: Any, requests: Sequence[Request], results: Sequence[Result]) -> None:
    """Score the one reply of each request (strategies without candidates to rank)."""
    if reward is None:
        return
    for request, result in zip(requests, results, strict=True):
        (result.stats.reward,) = score_texts(
            reward, request.conversation, [result.text], result.stats
        )
        result.stats.candidate_rewards = [result.stats.reward]


class Strategy(ABC):
    """Base of every decoding strategy config."""

    name: ClassVar[str] = "strategy"
    """Name reported in statistics."""
    needs_reward: ClassVar[bool] = False
    """Whether :meth:`run` needs a reward scorer."""
    shares_batches: ClassVar[bool] = True
    """Whether :meth:`run` decodes several requests in shared forward passes (a
    batch of prompts then costs fewer passes than one call per prompt)."""

    def bind(self, engine: DecodingEngine) -> None:  # noqa: B027 - optional hook
        """Check the strategy against the target model (vocabularies, …) before use."""

    @abstractmethod
    def run(
        self,
        engine: DecodingEngine,
        requests: Sequence[Request],
        *,
        reward: Any = None,
        hooks: Hooks | None = None,
    ) -> list[Result]:
        """Decode every request and return one :class:`Result` each, in order."""

    def check_reward(self, reward: Any) -> None:
        """Raise if this strategy needs a reward scorer and ``reward`` is not one."""
        if self.needs_reward and (reward is None or not callable(getattr(reward, "score", None))):
            raise InvalidInputError(
                f"{type(self).__name__} ranks candidates by reward, but reward={reward!r} is not a "
                "reward scorer; pass e.g. rewards.default_scorer() or rewards.FunctionScorer(fn)"
            )
