"""Decoding on an engine that samples elsewhere: each candidate is one request whose
new tokens arrive as a stream.

vLLM (in process or behind a server) samples the tokens; this module turns its streams
back into the engine seam the reward-based strategies decode through
(:class:`~langchain_aligned.engines.base.ReplyEngine`):

* :meth:`StreamedEngine.prefill` only records the candidates: a request needs the
  sampling parameters, which come with the first :meth:`~StreamedEngine.decode`;
* :meth:`~StreamedEngine.decode` starts one request per candidate (its own seed) on
  the first call, then consumes the streams **in lockstep**: a step takes the next
  token of every alive row, so "``k`` steps" means what it means on the transformers
  engine (every alive candidate gained ``k`` tokens) and Speculative Rejection's
  schedule, rounds and statistics stay exactly those of its own module;
* :meth:`~StreamedEngine.select` aborts the dropped candidates' requests, which frees
  their KV blocks; the survivors keep theirs (no continuation request, no re-prefill).

The reply rules (end-of-sequence tokens, stop strings, the length cap) are the shared
ones of :class:`~langchain_aligned.engines.base.ReplyEngine`, applied to each token as
it is consumed, so a reply ends where it would on the transformers engine. A stream may
run a little ahead of the lockstep (the tokens wait in the row's queue); its request is
aborted as soon as the reply ends by a rule the engine does not know (a stop string).

Terms are those of the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..decoding.params import SamplingParams
from ..decoding.text import StopMatcher
from ..errors import EngineError, InvalidInputError
from .base import Candidate, DecodeCancelled, DecodeState, EngineCounters, ReplyEngine

__all__ = ["StreamState", "StreamedEngine", "TokenDelta"]


@dataclass
class TokenDelta:
    """What one candidate's stream brought since the last delta."""

    tokens: list[int]
    """New token ids (an end-of-sequence token included, when the engine sends it)."""
    logprobs: list[float] | None
    """The untempered log-probability of each of ``tokens``, when the engine sent them."""
    finish_reason: str | None = None
    """The engine's reason once the stream ended (``"stop"``, ``"length"``, ``"abort"``,
    ``"error"``), else None."""


@dataclass(eq=False)
class StreamState(DecodeState):
    """The rows of one batch on a streamed engine, with their requests' streams."""

    prompts: dict[int, list[int]] = field(default_factory=dict)
    """The prompt each candidate's request starts from (by ``id(candidate)``)."""
    started: bool = False
    """Whether the requests were submitted (on the first decode)."""
    request_ids: dict[int, str] = field(default_factory=dict)
    """The engine's id of each candidate's request (by ``id(candidate)``)."""
    pending: dict[int, collections.deque[tuple[int, float | None]]] = field(default_factory=dict)
    """Tokens received but not consumed yet, with their log-probabilities."""
    ended: dict[int, str] = field(default_factory=dict)
    """The engine's finish reason of each candidate whose stream ended."""
    running: set[int] = field(default_factory=set)
    """Candidates whose requests the engine may still be running."""
    final_records: dict[int, object] = field(default_factory=dict)
    """What the engine reported about a candidate's request when it finished it (on
    vLLM with ``per_request_spec_decode_metrics``: its speculative-decoding record)."""
    delta_sizes: dict[int, list[int]] = field(default_factory=dict)
    """How many tokens each non-empty delta of a candidate's stream brought, in order
    (on vLLM with speculative decoding: 1 + the draft tokens a step accepted)."""

    def receive(self, candidate_key: int, delta: TokenDelta) -> None:
        """Queue what a candidate's stream brought (called by the engine)."""
        queue = self.pending.setdefault(candidate_key, collections.deque())
        if delta.tokens:
            self.delta_sizes.setdefault(candidate_key, []).append(len(delta.tokens))
        logprobs = delta.logprobs or []
        for position, token in enumerate(delta.tokens):
            queue.append((int(token), logprobs[position] if position < len(logprobs) else None))
        if delta.finish_reason is not None:
            self.ended[candidate_key] = delta.finish_reason
            self.running.discard(candidate_key)


class StreamedEngine(ReplyEngine):
    """The engine seam over per-candidate token streams (see the module docstring).

    A subclass says how to start, wait for and abort requests:
    :meth:`start_requests`, :meth:`wait_for_tokens` and :meth:`abort_requests`.
    """

    name = "streamed"

    # ------------------------------------------------------------------ the seam
    def prefill(
        self,
        candidates: Sequence[Candidate],
        prompts: Sequence[Sequence[int]] | None = None,
        counters: EngineCounters | None = None,
    ) -> StreamState:
        """Record ``candidates`` (and the prompts they start from); their requests
        start with the first :meth:`decode`, which brings the sampling parameters."""
        state = self.new_state(list(candidates), counters or EngineCounters())
        chunks = [
            list(p)
            for p in (prompts if prompts is not None else [c.prompt_ids for c in candidates])
        ]
        if len(chunks) != len(candidates):
            raise InvalidInputError(
                f"prefill got {len(chunks)} prompts for {len(candidates)} candidates"
            )
        for candidate, chunk in zip(candidates, chunks, strict=True):
            if not chunk:
                raise InvalidInputError("Cannot prefill an empty prompt")
            self.check_prompt(chunk)
            if candidate.token_ids:
                raise InvalidInputError(
                    f"the {self.name} engine starts candidates from their prompts; "
                    f"candidate {candidate.index} of request {candidate.request} already "
                    f"holds {len(candidate.token_ids)} tokens"
                )
            state.prompts[id(candidate)] = chunk + list(candidate.token_ids)
        return state

    def decode(
        self,
        state: DecodeState,
        params: SamplingParams,
        max_steps: int | None = None,
        *,
        matchers: dict[int, StopMatcher] | None = None,
        on_step: Callable[[list[Candidate], list[Candidate]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Candidate]:
        """Advance every alive row by up to ``max_steps`` tokens, in lockstep (one
        token of every row per step), until all rows finish if ``max_steps`` is None.

        ``on_step(rows, ended)`` and ``should_stop()`` mean what they mean on
        :meth:`DecodingEngine.decode <langchain_aligned.engines.transformers.DecodingEngine.decode>`.

        Raises:
            DecodeCancelled: ``should_stop()`` returned True (every request is aborted).
            EngineError: the engine aborted or failed a request.
        """
        state = self._own(state)
        if not state.started:
            if params.greedy is False and any(c.seed is None for c in state.candidates):
                raise InvalidInputError(
                    f"the {self.name} engine seeds each candidate's request: sampled "
                    "candidates need a seed (Request.candidates gives one)"
                )
            state.started = True
            if state.candidates:
                state.running.update(id(c) for c in state.candidates)
                self.start_requests(state, params)
        finished: list[Candidate] = []
        matchers = {} if matchers is None else matchers
        steps = 0
        try:
            while state.candidates and (max_steps is None or steps < max_steps):
                if should_stop is not None and should_stop():
                    raise DecodeCancelled()
                rows = list(state.candidates)
                # A step needs the next token (or the end) of every row.
                while any(not state.pending.get(id(c)) and id(c) not in state.ended for c in rows):
                    self.wait_for_tokens(state)
                ended = [c for c in rows if self._consume(state, c, params, matchers)]
                # A reply that ended by a rule the engine does not apply (a stop string,
                # the context limit) must not cost it more tokens.
                self._abort(state, [c for c in ended if id(c) in state.running])
                state.candidates = [c for c in rows if not c.finished]
                finished.extend(ended)
                steps += 1
                if on_step is not None:
                    on_step(rows, ended)
        except BaseException:
            # Cancelled or failed: nothing of this state may keep running.
            self._abort(state, state.candidates)
            state.candidates = []
            raise
        return finished

    def select(self, state: DecodeState, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order); abort the other rows' requests."""
        state = self._own(state)
        rows = list(rows)
        kept = {id(state.candidates[i]) for i in rows}
        self._abort(state, [c for c in state.candidates if id(c) not in kept])
        state.candidates = [state.candidates[i] for i in rows]

    # ---------------------------------------------------------------- subclasses
    def new_state(self, candidates: list[Candidate], counters: EngineCounters) -> StreamState:
        """A fresh state for ``candidates`` (a subclass may keep more in it)."""
        return StreamState(candidates, counters)

    def start_requests(self, state: StreamState, params: SamplingParams) -> None:
        """Submit one request per candidate of ``state`` (from ``state.prompts``, with
        the candidate's seed and ``params``); record each id in ``state.request_ids``."""
        raise NotImplementedError

    def wait_for_tokens(self, state: StreamState) -> None:
        """Block until some stream of ``state`` brings something, and hand it to
        :meth:`StreamState.receive` (streams of other states may advance too)."""
        raise NotImplementedError

    def abort_requests(self, state: StreamState, candidates: Sequence[Candidate]) -> None:
        """Stop the engine's work on ``candidates``' requests and free their KV blocks."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _own(self, state: DecodeState) -> StreamState:
        if not isinstance(state, StreamState):
            raise InvalidInputError(
                f"the {self.name} engine got a state of another engine ({type(state).__name__})"
            )
        return state

    def _abort(self, state: StreamState, candidates: Sequence[Candidate]) -> None:
        running = [c for c in candidates if id(c) in state.running]
        for candidate in running:
            state.running.discard(id(candidate))
        if running:
            self.abort_requests(state, running)

    def _consume(
        self,
        state: StreamState,
        candidate: Candidate,
        params: SamplingParams,
        matchers: dict[int, StopMatcher],
    ) -> bool:
        """Take the candidate's next token (or its end) through the reply rules;
        returns whether its reply ended."""
        key = id(candidate)
        queue = state.pending.get(key)
        counters = state.counters
        if not queue:
            reason = state.ended[key]
            if reason not in ("stop", "length"):
                raise EngineError(
                    f"the {self.name} engine ended candidate {candidate.index} of request "
                    f"{candidate.request} with finish_reason={reason!r} after "
                    f"{len(candidate.token_ids)} tokens"
                )
            # The engine ended the reply without sending its last token (an end-of-
            # sequence token it does not return): that token was still sampled.
            candidate.tokens_sampled += 1
            counters.tokens_sampled += 1
            self.finish(candidate, reason)
            return True
        token, logprob = queue.popleft()
        counters.tokens_sampled += 1
        recorded = len(candidate.token_logprobs) == len(candidate.token_ids)
        ended = self.append(candidate, [token], params, matchers)
        if (
            recorded
            and logprob is not None
            and len(candidate.token_ids) > len(candidate.token_logprobs)
        ):
            candidate.token_logprobs.append(logprob)
        if not ended and not queue and state.ended.get(key) == "length":
            # The engine stopped at the request's max_tokens, which is the room the
            # reply rules left: they agree that the reply ends here.
            self.finish(candidate, "length")
            ended = True
        return ended
