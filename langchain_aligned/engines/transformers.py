"""This library's own engine: batched, KV-cached decoding of a transformers model.

Primitives: :meth:`DecodingEngine.prefill`, :meth:`~DecodingEngine.feed`,
:meth:`~DecodingEngine.select` (drop rows by pruning the KV cache in place — no
re-prefill), :meth:`~DecodingEngine.rollback` (forget the last ``k`` tokens of each
row), :meth:`~DecodingEngine.step` / :meth:`~DecodingEngine.decode` (sample and
extend rows by one or ``k`` tokens) and :meth:`~DecodingEngine.score_continuations`
(log-probs of given continuations in one forward pass). :func:`engine_for` gives the
one engine of a loaded model.

The engine object holds no per-request state: everything lives in the
:class:`~.base.DecodeState` a call creates, so one engine serves many threads. Terms
are those of the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence

import torch

from ..decoding.params import SamplingParams, draw_uniforms, sample_from, warp
from ..decoding.text import StopMatcher
from ..errors import InvalidInputError
from ..models.loading import ModelHandle
from .base import Candidate, DecodeCancelled, DecodeState, EngineCounters, ReplyEngine
from .kv_cache import cache_keyword, output_cache

__all__ = ["DecodingEngine", "engine_for"]


class DecodingEngine(ReplyEngine):
    """Batched decoding over one :class:`~langchain_aligned.models.ModelHandle`, on this
    library's own KV cache."""

    computes_logits = True

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
        returned = output_cache(out)
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


_ENGINES: weakref.WeakKeyDictionary[ModelHandle, DecodingEngine] = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def engine_for(handle: ModelHandle) -> DecodingEngine:
    """The one engine of a loaded model (engines hold no per-request state)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(handle)
        if engine is None:
            engine = DecodingEngine(handle)
            _ENGINES[handle] = engine
        return engine
