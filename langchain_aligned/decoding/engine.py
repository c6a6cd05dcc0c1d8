"""The batched, KV-cached decoding engine every strategy shares.

Terms (request, candidate, row, slot and its holes, prefill, feed, forward pass, …)
are defined in the glossary of :mod:`langchain_aligned.decoding`.

Primitives: :meth:`DecodingEngine.prefill`, :meth:`~DecodingEngine.feed`,
:meth:`~DecodingEngine.select` (drop rows by pruning the KV cache in place — no
re-prefill), :meth:`~DecodingEngine.rollback` (forget the last ``k`` tokens of each
row), :meth:`~DecodingEngine.step` / :meth:`~DecodingEngine.decode` (sample and
extend rows by one or ``k`` tokens) and :meth:`~DecodingEngine.score_continuations`
(log-probs of given continuations in one forward pass).

The engine object holds no per-request state: everything lives in the
:class:`DecodeState` a call creates, so one engine serves many threads.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ContextLengthError, InvalidInputError
from ..models.loading import ModelHandle
from .params import SamplingParams, draw_uniforms, sample_from, warp
from .text import StopMatcher, decode, tokens_within

__all__ = [
    "Candidate",
    "DecodeCancelled",
    "DecodeState",
    "DecodingEngine",
    "EngineCounters",
]


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
    by :meth:`DecodingEngine.step`; valid only while as long as ``token_ids`` (tokens
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
    """Tokens drawn by :meth:`DecodingEngine.step` (EOS included)."""
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
    the others. :class:`DecodingEngine` implements them with its own KV cache; the
    engines of :mod:`langchain_aligned.engines` implement them over vLLM.
    """

    name: str = "transformers"
    """The engine's name in statistics and errors."""

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
        """Advance every row by up to ``max_steps`` tokens (see :meth:`DecodingEngine.decode`)."""
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


class DecodingEngine(ReplyEngine):
    """Batched decoding over one :class:`~langchain_aligned.models.ModelHandle`, on this
    library's own KV cache."""

    def __init__(self, handle: ModelHandle) -> None:
        super().__init__(handle)
        self.model = handle.model
        self.device = handle.device
        self.lock = threading.RLock()
        """Serialises forward passes of concurrent requests on one model (optional)."""
        self.cache_keyword = cache_keyword(self.model)
        """Keyword under which ``model.forward`` takes the KV cache (see :func:`cache_keyword`)."""

    # --------------------------------------------------------------- primitives
    @torch.inference_mode()
    def feed(
        self, state: DecodeState, chunks: Sequence[Sequence[int]], keep: int = 1
    ) -> torch.Tensor:
        """Append one chunk of tokens per row and return logits of the last ``keep`` positions.

        Chunks may differ in length: shorter ones are left-filled with holes, so the
        last position of every row is a real token and ``logits[:, -1]`` is each
        row's next-token logits. Positions before a row's chunk are meaningless.

        Returns:
            ``[rows, keep, logits]`` float logits (also sets ``state.next_logits``).
        """
        if len(chunks) != state.num_rows:
            raise InvalidInputError(f"feed got {len(chunks)} chunks for {state.num_rows} rows")
        width = max((len(c) for c in chunks), default=0)
        if width == 0:
            raise InvalidInputError("feed needs at least one token in some chunk")
        rows = state.num_rows
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)  # [rows, width]
        new_mask = torch.zeros((rows, width), dtype=torch.long)  # [rows, width]
        for row, chunk in enumerate(chunks):
            if chunk:
                ids[row, width - len(chunk) :] = torch.as_tensor(list(chunk), dtype=torch.long)
                new_mask[row, width - len(chunk) :] = 1
        past_valid = state.valid_lengths()  # [rows]
        # Position of a token = number of valid slots before it, so holes (padding,
        # rolled-back tokens) never shift the positions of real tokens.
        positions = (past_valid.unsqueeze(1) + new_mask.cumsum(1) - 1).clamp(min=0)  # [rows, width]
        full_mask = new_mask if state.mask is None else torch.cat([state.mask, new_mask], 1)
        is_prefill = state.cache is None
        if is_prefill:
            from transformers import DynamicCache

            state.cache = DynamicCache(config=self.model.config)
        with self.lock:
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=full_mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
                logits_to_keep=keep,
                **{self.cache_keyword: state.cache},
            )
        # The DynamicCache is extended in place; adopt the returned one all the same
        # (read under its own field name: the old name logs a deprecation from 5.24 on).
        returned = _output_cache(out)
        if returned is not None:
            state.cache = returned
        state.mask = full_mask
        logits = out.logits[:, -keep:, :].float()  # [rows, keep, logits]
        state.next_logits = logits[:, -1, :]
        counters = state.counters
        counters.forward_passes += 1
        fed = int(new_mask.sum())
        if is_prefill:
            counters.prefill_passes += 1
            counters.prefill_tokens += fed
        else:
            counters.tokens_fed += fed
        counters.peak_batch_size = max(counters.peak_batch_size, rows)
        counters.peak_cache_slots = max(counters.peak_cache_slots, rows * state.num_slots)
        return logits

    def prefill(
        self,
        candidates: Sequence[Candidate],
        prompts: Sequence[Sequence[int]] | None = None,
        counters: EngineCounters | None = None,
    ) -> DecodeState:
        """Start a state for ``candidates`` (left-padded batch of their prompts).

        ``prompts`` overrides the candidates' own prompt ids (a speculative strategy
        prefills all but the last prompt token; a prompt-steered draft uses its own
        system prompt).
        """
        state = DecodeState(list(candidates), counters or EngineCounters())
        if not candidates:
            return state
        chunks = [
            list(p)
            for p in (prompts if prompts is not None else [c.prompt_ids for c in candidates])
        ]
        for chunk in chunks:
            self.check_prompt(chunk)
        if any(len(c) == 0 for c in chunks):
            raise InvalidInputError("Cannot prefill an empty prompt")
        # The candidates of one request share their prompt: prefill each distinct
        # prompt once and copy its KV cache and next-token logits to every row that
        # shares it (n candidates cost one prompt's prefill, not n).
        distinct: dict[tuple[int, ...], int] = {}
        source = [distinct.setdefault(tuple(chunk), len(distinct)) for chunk in chunks]  # [rows]
        if len(distinct) == len(chunks):
            self.feed(state, chunks, keep=1)
            return state
        state.candidates = [candidates[source.index(i)] for i in range(len(distinct))]
        self.feed(state, [list(chunk) for chunk in distinct], keep=1)
        self.select(state, source)  # repeated rows copy their source row
        state.candidates = list(candidates)
        return state

    def select(self, state: DecodeState, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order), pruning the KV cache in place."""
        rows = list(rows)
        if rows == list(range(state.num_rows)):
            return
        index = torch.as_tensor(rows, dtype=torch.long)
        state.candidates = [state.candidates[i] for i in rows]
        if state.mask is None:
            return
        if not rows:
            state.cache = None
            state.mask = None
            state.next_logits = None
            return
        state.cache.batch_select_indices(index.to(self.device))
        state.mask = state.mask[index]
        if state.next_logits is not None:
            state.next_logits = state.next_logits[index]
        self._trim_leading_holes(state)

    def rollback(self, state: DecodeState, counts: Sequence[int]) -> None:
        """Forget the last ``counts[i]`` fed tokens of each row (KV cache and mask only).

        The slots become holes; trailing columns that are holes in every row are
        cropped from the cache. ``state.next_logits`` is cleared: the caller knows
        the logits at the new end (it computed them before rolling back).
        """
        if state.mask is None:
            return
        amounts = torch.as_tensor(list(counts), dtype=torch.long)  # [rows]
        if amounts.numel() != state.num_rows:
            raise InvalidInputError(
                f"rollback got {amounts.numel()} counts for {state.num_rows} rows"
            )
        if amounts.numel() == 0 or int(amounts.max()) == 0:
            return
        mask = state.mask
        # valid_after[r, j] = valid slots at or after column j; the last k valid slots
        # of a row are exactly those with valid_after <= k.
        valid_after = mask.flip(1).cumsum(1).flip(1)  # [rows, slots]
        drop = (mask == 1) & (valid_after <= amounts.unsqueeze(1))
        if int((drop.sum(1) < amounts).sum()):
            raise InvalidInputError("rollback asked to remove more tokens than a row holds")
        mask = mask.masked_fill(drop, 0)
        column_used = mask.any(0)  # [slots]
        trailing = int((~column_used).flip(0).to(torch.long).cumprod(0).sum())
        if trailing and trailing < mask.shape[1] and self._crop(state, trailing):
            mask = mask[:, :-trailing]
        state.mask = mask
        state.next_logits = None

    # ----------------------------------------------------------------- decoding
    def vocab_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., logits]`` restricted to the tokenizer's vocabulary ``[..., vocab]``.

        Output layers are often padded wider than the tokenizer (and models sharing
        one tokenizer may be padded differently: Qwen2.5-0.5B has 151,936 logits,
        Qwen2.5-7B 152,064); padded ids are no tokens, so they are cut off before any
        distribution is formed, and every model of a speculative strategy yields
        ``[..., vocab]`` tensors of one width.
        """
        return logits[..., : self.vocab_size] if logits.shape[-1] > self.vocab_size else logits

    def distributions(self, logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
        """Warp logits ``[..., logits]`` into sampling distributions ``[..., vocab]``."""
        return warp(self.vocab_logits(logits), params)

    def sample(self, state: DecodeState, params: SamplingParams) -> torch.Tensor:
        """Draw each row's next token from ``state.next_logits``: ``[rows]``."""
        if state.next_logits is None:
            raise InvalidInputError("No next-token logits: feed tokens before sampling")
        distribution = self.distributions(state.next_logits, params)  # [rows, logits]
        if params.greedy:
            return distribution.argmax(-1)
        uniforms = draw_uniforms([self._generator(c) for c in state.candidates])  # [rows]
        return sample_from(distribution, uniforms)

    def step(
        self,
        state: DecodeState,
        params: SamplingParams,
        matchers: dict[int, StopMatcher] | None = None,
    ) -> list[Candidate]:
        """Sample one token per row, finish rows that end, and feed the rest.

        Finished rows are pruned from the state at once (no compute is spent on
        them). Returns the candidates that finished in this step.
        """
        sampled = self.sample(state, params)  # [rows]
        assert state.next_logits is not None  # sample() checked it
        # Each token's log-probability under the untempered model, whatever the sampling
        # parameters: a likelihood reward over these weights reads it instead of
        # running the model again (rewards.RecordedLogprobs).
        logprobs = (
            self.vocab_logits(state.next_logits)
            .float()
            .log_softmax(-1)  # [rows, vocab]
            .gather(1, sampled.unsqueeze(1))
            .squeeze(1)
            .tolist()
        )  # [rows]
        tokens = sampled.tolist()  # [rows]
        state.counters.tokens_sampled += len(tokens)
        finished: list[Candidate] = []
        keep: list[int] = []
        chunks: list[list[int]] = []
        for row, (candidate, token) in enumerate(zip(state.candidates, tokens, strict=True)):
            recorded = len(candidate.token_logprobs) == len(candidate.token_ids)
            ended = self.append(candidate, [token], params, matchers)
            if recorded and len(candidate.token_ids) > len(candidate.token_logprobs):
                candidate.token_logprobs.append(logprobs[row])
            if ended:
                finished.append(candidate)
            else:
                keep.append(row)
                chunks.append([token])
        self.select(state, keep)
        if keep:
            self.feed(state, chunks, keep=1)
        return finished

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
        """Advance every row by up to ``max_steps`` tokens (or until all rows finish).

        How Sampling, Best-of-N and Speculative Rejection decode (the engine seam:
        another engine may decode the ``max_steps`` tokens of each row as it likes;
        the speculative strategies step the target by hand). ``matchers``: the stop-string
        matchers of the rows, kept by a caller that decodes in several calls;
        ``on_step(rows, ended)`` after each token, with the candidates the step decoded
        and those it finished; ``should_stop()`` is polled before each step.

        Returns the candidates that finished, in the order they finished.
        """
        finished: list[Candidate] = []
        matchers = {} if matchers is None else matchers
        steps = 0
        while state.num_rows and (max_steps is None or steps < max_steps):
            if should_stop is not None and should_stop():
                raise DecodeCancelled()
            rows = list(state.candidates)
            ended = self.step(state, params, matchers)
            finished.extend(ended)
            steps += 1
            if on_step is not None:
                on_step(rows, ended)
        return finished

    @torch.inference_mode()
    def score_continuations(
        self,
        prompts: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        *,
        full: bool = False,
    ) -> list[torch.Tensor]:
        """Log-probs of each continuation token given its prompt, in one forward pass.

        Returns per row ``[len(continuation)]`` log-probs of the given tokens, or with
        ``full=True`` ``[len(continuation), vocab]`` log-probs of every token at every
        continuation position.
        """
        if len(prompts) != len(continuations):
            raise InvalidInputError(
                f"{len(prompts)} prompts but {len(continuations)} continuations; pass one each"
            )
        counters = EngineCounters()
        candidates = [
            Candidate(request=i, index=0, prompt_ids=list(p)) for i, p in enumerate(prompts)
        ]
        state = DecodeState(candidates, counters)
        chunks = [list(p) + list(c) for p, c in zip(prompts, continuations, strict=True)]
        for prompt, chunk in zip(prompts, chunks, strict=True):
            if not prompt:
                raise InvalidInputError("score_continuations needs a non-empty prompt per row")
            self.check_prompt(chunk[:-1] or chunk)
        longest = max((len(c) for c in continuations), default=0)
        if longest == 0:
            return [torch.zeros(0) for _ in continuations]
        logits = self.feed(state, chunks, keep=longest + 1)  # [rows, longest+1, logits]
        logits = self.vocab_logits(logits)
        out = []
        for row, cont in enumerate(continuations):
            n = len(cont)
            if n == 0:
                out.append(torch.zeros((0, logits.shape[-1])) if full else torch.zeros(0))
                continue
            # The logits predicting continuation token j sit one position earlier.
            row_logits = logits[row, -(n + 1) : -1, :]  # [n, vocab]
            logprobs = row_logits.log_softmax(-1)
            if full:
                out.append(logprobs)
            else:
                ids = torch.as_tensor(list(cont), dtype=torch.long).unsqueeze(1)
                out.append(logprobs.gather(1, ids.to(logprobs.device)).squeeze(1).cpu())
        return out

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _generator(candidate: Candidate) -> torch.Generator:
        if candidate.generator is None:
            raise InvalidInputError(
                f"candidate {candidate.index} of request {candidate.request} has no generator; "
                "sampling needs one (greedy decoding does not)"
            )
        return candidate.generator

    def _crop(self, state: DecodeState, count: int) -> bool:
        layers = getattr(state.cache, "layers", None)
        if not layers:
            return False
        from transformers.cache_utils import DynamicLayer

        if any(type(layer) is not DynamicLayer for layer in layers):
            # Sliding-window and other special layers cannot always be cropped; holes
            # are correct anyway (masked), only a little memory is kept.
            return False
        for layer in layers:
            # A negative count removes that many tokens on every supported version
            # (a positive value meant a target length in older releases; 5.24 rejects it).
            if layer.is_initialized:
                layer.crop(-count)
        return True

    def _trim_leading_holes(self, state: DecodeState) -> None:
        # After rows are dropped, leading columns may be padding in every kept row
        # (the longest prompt left); slicing them off makes later attention cheaper.
        if state.mask is None:
            return
        used = state.mask.any(0)
        leading = int((~used).to(torch.long).cumprod(0).sum())
        if leading == 0 or leading >= state.num_slots:
            return
        from transformers.cache_utils import DynamicLayer

        layers = getattr(state.cache, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return
        for layer in layers:
            if layer.is_initialized and layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys[..., leading:, :]
                layer.values = layer.values[..., leading:, :]
        state.mask = state.mask[:, leading:]


def _transformers_names_cache() -> bool:
    """Whether the installed transformers calls the KV cache ``cache`` (not ``past_key_values``)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}


def cache_keyword(model: Any) -> str:
    """The keyword under which ``model.forward`` takes its KV cache.

    transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache`` (and
    the output field with it). From 5.24 on the old name still works but warns (a
    ``FutureWarning``: removed in 5.40) and so does reading ``out.past_key_values``
    (a logged deprecation); releases before it
    (4.57 … 5.23, including the 5.16.1 … 5.19 range vLLM pins) know only
    ``past_key_values`` and would silently drop a ``cache`` keyword into ``**kwargs``,
    decoding every step without its KV cache. So the name is read off the model's own
    signature (which also covers remote-code models), falling back on the installed
    transformers' name when the signature only has ``**kwargs``.
    """
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    if "cache" in parameters:
        return "cache"
    if "past_key_values" in parameters:
        return "past_key_values"
    return "cache" if _transformers_names_cache() else "past_key_values"


def _output_cache(out: Any) -> Any:
    # ``keys()`` lists the fields that are set without going through transformers'
    # backward-compatible renaming (whose old-name lookups log a deprecation).
    keys = out.keys() if callable(getattr(out, "keys", None)) else ()
    for name in ("cache", "past_key_values"):
        if name in keys:
            return getattr(out, name)
    return None
