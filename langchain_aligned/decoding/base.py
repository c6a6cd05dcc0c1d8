"""What every decoding strategy shares: requests, results, statistics and hooks.

:meth:`Strategy.run` decodes a list of :class:`Request` s with a
:class:`~langchain_aligned.engines.base.ReplyEngine` and returns one
:class:`Result` per request, each carrying :class:`AlignmentStats`; a strategy
implements :meth:`Strategy.decode`. Terms (request, candidate, batch, per-request and
per-batch statistics, …) are defined in the glossary of
:mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

import math
import secrets
import time
from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards.base import RecordedLogprobs, recording, score_items

from ..engines.base import Candidate, ReplyEngine
from ..errors import InvalidInputError, RewardError
from .params import SamplingParams, derive_seed, make_generator
from .stats import AlignmentStats

__all__ = [
    "EVENT_DONE",
    "EVENT_PREFIX",
    "EVENT_ROUND",
    "EVENT_SCORED",
    "EVENT_VERIFY",
    "Conversation",
    "Hooks",
    "Request",
    "Result",
    "RewardCall",
    "Strategy",
    "new_seed",
    "score_replies",
    "score_texts",
    "score_together",
]

Conversation = str | Sequence[Mapping[str, Any]]
"""A plain prompt string or HF chat-format messages."""

EVENT_PREFIX = "aligned."
EVENT_ROUND = "aligned.round"
"""Speculative Rejection held a round: data is a :class:`RoundStats` as dict."""
EVENT_SCORED = "aligned.scored"
"""A reward call scored candidates: ``{"request", "rewards", "partial", "round"}``."""
EVENT_VERIFY = "aligned.verify"
"""A speculative verification step: ``{"request", "proposed", "accepted", "step"}``."""
EVENT_DONE = "aligned.done"
"""A request finished: ``{"request", "stats"}`` (the :class:`AlignmentStats` dict)."""


def new_seed() -> int:
    """A fresh 63-bit seed from the OS (used when the caller gives none)."""
    return secrets.randbits(63)


@dataclass(frozen=True)
class Request:
    """One conversation to answer, ready to decode."""

    conversation: Conversation
    """What the reward scorer sees (messages, or the prompt string)."""
    prompt_ids: list[int]
    """The prompt: the conversation rendered and tokenised for the target."""
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
                seed=None if self.params.greedy else derive_seed(self.seed, offset + i),
            )
            for i in range(n)
        ]


@dataclass
class Result:
    """The reply chosen for one request."""

    text: str
    """Text of the reply (stop string and end-of-sequence token removed)."""
    token_ids: list[int]
    """Token ids of the reply: they decode to ``text`` (neither holds the stop string
    nor the end-of-sequence token), except that when a stop string starts inside a
    token's text — often just after its leading space — ``text`` keeps that token's
    characters before the stop string while ``token_ids`` end before the token."""
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


@dataclass(frozen=True)
class RewardCall:
    """One request's part of a reward call: the texts to score for its conversation,
    the statistics that account for the call, and what decoding recorded for them."""

    conversation: Conversation
    texts: Sequence[str]
    stats: AlignmentStats
    recorded: RecordedLogprobs | None = None
    """The decoder's token log-probabilities for ``texts`` (a likelihood reward over the
    same weights reads them instead of running the model; see
    :class:`rewards.base.RecordedLogprobs`)."""


def score_together(reward: Any, calls: Sequence[RewardCall]) -> list[list[float]]:
    """Score several requests' texts in one call of ``reward`` (its ``score_batch``,
    so a model-based scorer encodes them together), validating what comes back.

    Each request's scores are those it would get alone. Its statistics count one reward
    call and its texts, and the call's seconds in proportion to its texts.

    Raises:
        RewardError: the scorer raised, returned the wrong number of scores, or a
            NaN / infinite score (the message names the scorer and the index).
    """
    todo = [call for call in calls if call.texts]
    if not todo:
        return [[] for _ in calls]
    name = _scorer_name(reward)
    start = time.perf_counter()
    try:
        with recording([call.recorded for call in todo]):
            raw = score_items(reward, [(call.conversation, list(call.texts)) for call in todo])
    except Exception as exc:
        raise RewardError(f"Reward scorer {name} raised {type(exc).__name__}: {exc}") from exc
    finally:
        seconds = time.perf_counter() - start
        total = sum(len(call.texts) for call in todo)
        for call in todo:
            call.stats.scoring_seconds += seconds * len(call.texts) / total
            call.stats.reward_calls += 1
            call.stats.reward_texts_scored += len(call.texts)
    if len(raw) != len(todo):
        raise RewardError(
            f"Reward scorer {name} returned {len(raw)} score lists for {len(todo)} requests"
        )
    by_call = {
        id(call): _checked(name, scores, len(call.texts))
        for call, scores in zip(todo, raw, strict=True)
    }
    return [by_call.get(id(call), []) for call in calls]


def _checked(name: str, scores: Any, count: int) -> list[float]:
    try:
        values = [float(s) for s in scores]
    except (TypeError, ValueError) as exc:
        raise RewardError(
            f"Reward scorer {name} returned non-numeric scores: {scores!r:.200}"
        ) from exc
    if len(values) != count:
        raise RewardError(f"Reward scorer {name} returned {len(values)} scores for {count} texts")
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise RewardError(
                f"Reward scorer {name} returned {value} for text {index}; scores must be finite"
            )
    return values


def score_texts(
    reward: Any,
    conversation: Conversation,
    texts: Sequence[str],
    stats: AlignmentStats,
    *,
    recorded: RecordedLogprobs | None = None,
) -> list[float]:
    """Score one request's ``texts`` with ``reward`` once (:func:`score_together` with
    one call)."""
    return score_together(reward, [RewardCall(conversation, texts, stats, recorded)])[0]


def score_replies(reward: Any, requests: Sequence[Request], results: Sequence[Result]) -> None:
    """Give each request's one reply its final reward (strategies without candidates to
    rank); nothing happens without a reward scorer."""
    if reward is None:
        return
    for request, result in zip(requests, results, strict=True):
        (result.stats.reward,) = score_texts(
            reward, request.conversation, [result.text], result.stats
        )
        result.stats.candidate_rewards = [result.stats.reward]


class Strategy(ABC):  # noqa: B024 - a strategy implements decode() or overrides run()
    """Base of every decoding strategy config.

    :meth:`run` is the one entry point: it checks its arguments once and hands over
    to :meth:`decode`, the one method a strategy implements. (A strategy may still
    override :meth:`run` itself, as custom strategies written before did.)
    """

    name: ClassVar[str] = "strategy"
    """Name reported in statistics."""
    needs_reward: ClassVar[bool] = False
    """Whether :meth:`run` needs a reward scorer."""
    shares_batches: ClassVar[bool] = True
    """Whether :meth:`run` decodes several requests in shared forward passes (a call
    with several requests then costs fewer passes than one call per request)."""

    def bind(self, engine: ReplyEngine) -> None:  # noqa: B027 - optional hook
        """Check the strategy against the target model (vocabularies, …) before use."""

    def engine_settings(
        self, engine: str, engine_kwargs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The settings to build the engine named ``engine`` with for this strategy:
        ``engine_kwargs``, plus what the strategy needs of the engine (speculative
        sampling on vLLM: the draft).

        Raises:
            InvalidInputError: the strategy cannot run on that engine.
        """
        return dict(engine_kwargs or {})

    def run(
        self,
        engine: ReplyEngine,
        requests: Sequence[Request],
        *,
        reward: Any = None,
        hooks: Hooks | None = None,
    ) -> list[Result]:
        """Decode every request and return one :class:`Result` each, in order.

        Raises:
            InvalidInputError: the strategy needs a reward scorer and ``reward`` is
                not one.
        """
        self.check_reward(reward)
        # Strategies never test for missing hooks: no callbacks is empty Hooks.
        return self.decode(engine, requests, reward, hooks or Hooks())

    def decode(
        self, engine: ReplyEngine, requests: Sequence[Request], reward: Any, hooks: Hooks
    ) -> list[Result]:
        """The strategy's algorithm, called by :meth:`run` with ``reward`` checked
        (None when the strategy needs none and got none) and ``hooks`` never None."""
        raise NotImplementedError(f"{type(self).__name__} implements neither decode() nor run()")

    def check_reward(self, reward: Any) -> None:
        """Raise if this strategy needs a reward scorer and ``reward`` is not one."""
        if self.needs_reward and (reward is None or not callable(getattr(reward, "score", None))):
            raise InvalidInputError(
                f"{type(self).__name__} ranks candidates by reward, but reward={reward!r} is not a "
                "reward scorer; pass e.g. rewards.default_scorer() or rewards.FunctionScorer(fn)"
            )
