"""The engine seam: what every engine shares and what the strategies decode through.

Sampling, Best-of-N and Speculative Rejection see engines only through
:class:`ReplyEngine` (``prefill`` / ``decode`` / ``select``, the reply rules) and the
records it keeps: a :class:`Candidate` per sampled reply, a :class:`DecodeState` per
call, :class:`EngineCounters` per batch. This library's transformers engine
(:mod:`.transformers`) and the vLLM engines (:mod:`.vllm_local`, :mod:`.server`, over
:mod:`.streamed`) implement it; :func:`.select.open_engine` builds one by name.

What an engine can do beyond the seam is asked, not guessed from its class:
:attr:`ReplyEngine.computes_logits` says whether this process sees the model's
next-token logits (which this library's own speculative acceptance rules need).

Terms (request, candidate, row, slot and its holes, prefill, feed, forward pass, …)
are defined in the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..decoding.params import SamplingParams
from ..decoding.text import StopMatcher, decode, tokens_within
from ..errors import ContextLengthError, InvalidInputError
from ..models.loading import ModelHandle

__all__ = ["Candidate", "DecodeCancelled", "DecodeState", "EngineCounters", "ReplyEngine"]


class DecodeCancelled(Exception):
    """Raised inside decoding when the caller's ``should_stop`` returns True."""


@dataclass(eq=False)
class Candidate:
    """One reply being decoded for one request."""

    request: int
    """Index of the request this candidate answers."""
    index: int
    """Candidate number within its request (0 … n−1)."""
    prompt_ids: list[int]
    """Token ids of the rendered prompt."""
    generator: torch.Generator | None = None
    """Source of this candidate's uniforms (None for greedy decoding)."""
    seed: int | None = None
    """The seed ``generator`` was made from (an engine that samples elsewhere, such as
    vLLM, seeds the candidate's request with it); None for greedy decoding."""
    token_ids: list[int] = field(default_factory=list)
    """Generated ids so far (an end-of-sequence token is not included)."""
    token_logprobs: list[float] = field(default_factory=list)
    """Log-probability of each of ``token_ids`` under the untempered model, recorded
    by :meth:`~langchain_aligned.engines.transformers.DecodingEngine.step`; valid only while as long as ``token_ids`` (tokens
    appended otherwise, e.g. accepted draft tokens, are not recorded)."""
    finish_reason: str | None = None
    """``"stop"`` (EOS or stop string) or ``"length"`` once finished, else None."""
    text: str | None = None
    """The reply text once finished (cut before a stop string)."""
    tokens_sampled: int = 0
    """Tokens this candidate's reply took (:meth:`ReplyEngine.append`): sampled, or
    accepted from a draft, up to the one that ended it — its end-of-sequence token
    and a stop string's tokens included (so at least ``len(token_ids)``)."""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class EngineCounters:
    """Work done on one model for one call (summed over every state it touched)."""

    forward_passes: int = 0
    """Forward passes, prefills included."""
    prefill_passes: int = 0
    """Forward passes that started a KV cache from prompts (prefills)."""
    prefill_tokens: int = 0
    """Prompt tokens processed by prefills."""
    tokens_fed: int = 0
    """Non-prompt tokens appended to KV caches."""
    tokens_sampled: int = 0
    """Tokens drawn by :meth:`~langchain_aligned.engines.transformers.DecodingEngine.step` (EOS included)."""
    peak_batch_size: int = 0
    """Largest number of rows in one forward pass."""
    peak_cache_slots: int = 0
    """Largest ``rows × slots`` held in a KV cache (memory proxy)."""
    counts_passes: bool = True
    """Whether the engine sees its forward passes (a server's are unseen: the pass
    counts and peaks above then mean nothing, and statistics leave them absent)."""


@dataclass(eq=False)
class DecodeState:
    """The rows of one batch on one model, with their KV cache."""

    candidates: list[Candidate]
    """Row ``i`` decodes ``candidates[i]``."""
    counters: EngineCounters
    cache: Any = None
    mask: torch.Tensor | None = None
    """``[rows, slots]`` attention mask of the KV cache (1 = valid slot)."""
    next_logits: torch.Tensor | None = None
    """``[rows, logits]`` logits for each row's next token, after the last feed."""

    @property
    def num_rows(self) -> int:
        return len(self.candidates)

    @property
    def num_slots(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def valid_lengths(self) -> torch.Tensor:
        """``[rows]`` number of valid slots per row (prompt plus fed tokens)."""
        if self.mask is None:
            return torch.zeros(self.num_rows, dtype=torch.long)
        return self.mask.sum(1)


class ReplyEngine:
    """What every engine shares: the model's handle, prompts, and how a candidate's
    reply grows and ends (end-of-sequence tokens, stop strings, the length cap).

    Sampling, Best-of-N and Speculative Rejection decode through three calls (the
    engine seam): :meth:`prefill` starts candidates, :meth:`decode` advances every
    alive row by up to ``max_steps`` tokens, :meth:`select` keeps some rows and drops
    the others. :class:`~langchain_aligned.engines.transformers.DecodingEngine` implements them with its own KV cache; the
    engines of :mod:`langchain_aligned.engines` implement them over vLLM.
    """

    name: str = "transformers"
    """The engine's name in statistics and errors."""
    computes_logits: bool = False
    """Whether this process sees the model's next-token logits (and can feed, roll
    back and score given tokens): true of this library's transformers engine; the
    vLLM engines sample elsewhere. The speculative strategies' own acceptance rules
    need it; without it, speculative sampling asks vLLM to speculate."""

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle
        self.tokenizer = handle.tokenizer
        self.vocab_size = handle.vocab_size
        self.eos_ids = frozenset(handle.eos_token_ids)
        self.pad_id = handle.pad_token_id

    def prefill(
        self,
        candidates: Sequence[Candidate],
        prompts: Sequence[Sequence[int]] | None = None,
        counters: EngineCounters | None = None,
    ) -> DecodeState:
        """Start a state decoding ``candidates`` (from their prompts, or ``prompts``)."""
        raise NotImplementedError

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
        """Advance every row by up to ``max_steps`` tokens (see :meth:`~langchain_aligned.engines.transformers.DecodingEngine.decode`)."""
        raise NotImplementedError

    def select(self, state: DecodeState, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order) and drop the others' work."""
        raise NotImplementedError

    def release(self, state: DecodeState) -> None:
        """Drop every row of ``state`` and the engine's work on them (a vLLM engine
        aborts their requests, freeing their KV blocks). A strategy calls it on every
        way out of a decode that leaves rows alive — a reward that raised, a callback
        that raised, cancellation — so nothing keeps decoding for nobody."""
        if state.num_rows:
            self.select(state, [])

    # ------------------------------------------------------------------ prompts
    def encode(self, text: str) -> list[int]:
        """Token ids of rendered prompt text.

        Chat templates write their own special tokens; base models without a
        template get the tokenizer's usual BOS.
        """
        ids = self.tokenizer(text, add_special_tokens=not self.handle.has_chat_template)[
            "input_ids"
        ]
        if not ids:
            raise InvalidInputError("The rendered prompt is empty; pass at least one message")
        return list(ids)

    def check_prompt(self, prompt_ids: Sequence[int]) -> None:
        """Raise :class:`ContextLengthError` if the prompt leaves no room to generate."""
        limit = self.handle.context_length
        if limit is not None and len(prompt_ids) >= limit:
            raise ContextLengthError(
                f"The prompt is {len(prompt_ids)} tokens but {self.handle.name} has a "
                f"context of {limit} tokens; shorten the conversation"
            )

    # ------------------------------------------------------------ reply rules
    def append(
        self,
        candidate: Candidate,
        tokens: Sequence[int],
        params: SamplingParams,
        matchers: dict[int, StopMatcher] | None = None,
    ) -> bool:
        """Append accepted tokens to a candidate and finish it if it ends.

        Handles EOS anywhere in ``tokens`` (the rest is dropped), stop strings and
        the length cap. Every token taken counts in ``candidate.tokens_sampled``, the
        one that ends the reply included (an end-of-sequence token, the last token of
        a stop string); tokens after it are not taken. Returns whether the candidate
        finished.
        """
        for token in tokens:
            candidate.tokens_sampled += 1
            if token in self.eos_ids and not params.ignore_eos:
                self.finish(candidate, "stop")
                return True
            candidate.token_ids.append(int(token))
            if params.stop:
                matcher = None if matchers is None else matchers.get(id(candidate))
                if matcher is None:
                    matcher = StopMatcher(self.tokenizer, params.stop)
                    if matchers is not None:
                        matchers[id(candidate)] = matcher
                cut = matcher.check(candidate.token_ids)
                if cut is not None:
                    # A stop string is not part of the reply: neither its text nor its
                    # tokens (nor their log-probabilities) stay.
                    kept = tokens_within(self.tokenizer, candidate.token_ids, cut)
                    del candidate.token_ids[kept:]
                    del candidate.token_logprobs[kept:]
                    self.finish(candidate, "stop", text=cut)
                    return True
            if self.room(candidate, params) == 0:
                self.finish(candidate, "length")
                return True
        return False

    def stop_token_ids(self, params: SamplingParams) -> list[int]:
        """The token ids that end a reply under ``params``: the end-of-sequence ids, or
        none with ``ignore_eos`` (an engine that samples elsewhere is sent exactly
        these, so a request stops where :meth:`append` would stop it)."""
        return [] if params.ignore_eos else sorted(self.eos_ids)

    def room(self, candidate: Candidate, params: SamplingParams) -> int:
        """Tokens ``candidate`` may still append before the length cap or the context
        limit (0 means it is finished by length)."""
        room = params.max_new_tokens - len(candidate.token_ids)
        limit = self.handle.context_length
        if limit is not None:
            room = min(room, limit - len(candidate.prompt_ids) - len(candidate.token_ids))
        return max(room, 0)

    def finish(self, candidate: Candidate, reason: str, text: str | None = None) -> None:
        """Mark a candidate finished and fix its text."""
        candidate.finish_reason = reason
        candidate.text = text if text is not None else decode(self.tokenizer, candidate.token_ids)
