"""Speculative sampling — Leviathan, Kalman & Matias, ICML 2023; Chen et al., 2023.

A small **draft** model q proposes γ tokens; the **target** p scores all of them in one
forward pass and accepts a prefix, so several tokens come out of one target pass while
the output distribution stays exactly p.

Terms (the papers' symbols are used in code):

* **p** — the target's sampling distribution at each position, ``[batch, γ+1, vocab]``
  (after temperature / top-k / top-p; one-hot for greedy decoding).
* **q** — the draft's distribution at each drafted position, ``[batch, γ, vocab]``.
* **γ** — ``num_draft_tokens``, tokens proposed per verification step.
* **draft tokens** — the γ tokens ŷ₁…ŷ_γ sampled from q.
* **accepted tokens** — the longest prefix of draft tokens each accepted with
  probability min(1, p(ŷ_t)/q(ŷ_t)).
* **recovered token** — at the first rejection, a token drawn from the residual
  norm((p − q)₊) at that position; it replaces the rejected draft token.
* **bonus token** — when all γ draft tokens are accepted, one more token drawn from p
  at position γ+1 (the target computed it anyway).

Every step therefore yields between 1 and γ+1 tokens for one target forward pass.

:func:`speculative_accept` is the pure acceptance rule: its randomness comes in as
arguments (uniforms), so it is tested exactly on hand-built distributions.
:func:`run_speculative` is the decoding loop, shared with Reward-Shifted Speculative
Sampling, which only changes the distribution the draft tokens are verified against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from .base import (
    EVENT_DONE,
    EVENT_VERIFY,
    AlignmentStats,
    Hooks,
    Request,
    Result,
    Strategy,
    new_batch_id,
    score_replies,
)
from .drafts import BoundDraft, bind_draft
from .engine import DecodeCancelled, DecodeState, DecodingEngine, EngineCounters
from .params import SamplingParams, draw_uniforms, sample_from, warp
from .text import StopMatcher, TextStream

__all__ = ["Lane", "SpeculativeSampling", "run_speculative", "speculative_accept"]


def speculative_accept(
    p: torch.Tensor,
    q: torch.Tensor,
    draft_tokens: torch.Tensor,
    accept_uniforms: torch.Tensor,
    recover_uniforms: torch.Tensor,
    num_proposed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The speculative sampling acceptance rule.

    Args:
        p: ``[batch, γ+1, vocab]`` target weights per position. They may be
            unnormalised (Reward-Shifted Speculative Sampling passes p̃); the
            acceptance ratio uses them as given and the recovered / bonus tokens are
            drawn from their normalised positive parts.
        q: ``[batch, γ, vocab]`` draft distributions the draft tokens came from.
        draft_tokens: ``[batch, γ]`` the draft tokens ŷ.
        accept_uniforms: ``[batch, γ]`` U(0, 1) draws, one per draft token.
        recover_uniforms: ``[batch]`` U(0, 1) draws for the recovered or bonus token.
        num_proposed: ``[batch]`` γ_r ≤ γ, how many of the draft tokens each row
            verifies (default: all γ). Row r ignores its tokens past γ_r and draws its
            bonus token at position γ_r + 1 — exactly what it would do alone with
            γ = γ_r, so rows of one batch may verify different numbers of tokens.

    Returns:
        ``(num_accepted, next_token)``, both ``[batch]``: how many draft tokens are
        accepted (0…γ_r) and the recovered token (if one was rejected) or the bonus
        token (if all γ_r were accepted).
    """
    batch, gamma = draft_tokens.shape
    p = p.float()
    q = q.float()
    # p(ŷ_t) and q(ŷ_t) of each draft token: [batch, γ]
    p_draft = p[:, :gamma].gather(-1, draft_tokens.unsqueeze(-1)).squeeze(-1)
    q_draft = q.gather(-1, draft_tokens.unsqueeze(-1)).squeeze(-1)
    # Accept ŷ_t with probability min(1, p/q): u < p/q. A drafted token has q > 0; the
    # clamp only guards against a distribution that lost all mass to rounding.
    accepted = accept_uniforms < p_draft / q_draft.clamp(min=torch.finfo(torch.float32).tiny)
    # A row verifies only its first γ_r tokens: [batch, γ]
    proposed = torch.full((batch,), gamma) if num_proposed is None else num_proposed.cpu()
    accepted &= torch.arange(gamma).unsqueeze(0) < proposed.unsqueeze(1)
    # Only the prefix before the first rejection counts: [batch]
    num_accepted = accepted.to(torch.long).cumprod(dim=1).sum(dim=1)
    # The distribution of the next token at position n+1: the residual (p − q)₊ after a
    # rejection; after γ_r acceptances q is taken as 0 there, so it is p itself (bonus).
    rows = torch.arange(batch)
    p_next = p[rows, num_accepted]  # [batch, vocab]
    q_padded = torch.cat([q, q.new_zeros(batch, 1, p.shape[-1])], dim=1)  # [batch, γ+1, vocab]
    bonus = (num_accepted == proposed).unsqueeze(1)  # [batch, 1]
    q_next = torch.where(bonus, 0.0, q_padded[rows, num_accepted])  # [batch, vocab]
    residual = (p_next - q_next).clamp(min=0)  # [batch, vocab]
    # When p ≤ q everywhere (only possible for an unnormalised p), no residual mass is
    # left: fall back to the target weights themselves.
    empty = residual.sum(-1, keepdim=True) <= 0
    residual = torch.where(empty, p_next.clamp(min=0), residual)
    next_token = sample_from(residual, recover_uniforms)
    return num_accepted, next_token


# A verifier turns the logits the models computed at the γ+1 positions — the target's
# ``[rows, γ+1, vocab]``, the draft's ``[rows, γ (+1), vocab]`` and each reference's
# ``[rows, γ+1, vocab]``, all restricted to the shared vocabulary — into the weights
# the draft tokens are verified against (the warped target p for lossless SD).
Verifier = Callable[[torch.Tensor, torch.Tensor, list[torch.Tensor], SamplingParams], torch.Tensor]


@dataclass(eq=False)
class Lane:
    """One model's view of the batch: its KV cache and the reply tokens it has not fed.

    The target, the draft and every reference model are lanes; each step feeds every
    lane, and after verification :meth:`settle` puts each lane's cache back on the
    accepted prefix, whatever it fed.
    """

    engine: DecodingEngine
    state: DecodeState
    pending: list[list[int]]
    """Per row: tokens of the reply (or the prompt's last token) not yet in the cache."""
    fed_draft_tokens: int = 0
    """Draft tokens of the current step this lane has fed (ŷ₁…ŷ_k, k = this value)."""

    def feed(self, draft_tokens: Sequence[Sequence[int]] | None, keep: int) -> torch.Tensor:
        """Feed the pending tokens plus ``draft_tokens`` per row; ``[rows, keep, vocab]``."""
        extra = draft_tokens if draft_tokens is not None else [[] for _ in self.pending]
        chunks = [list(p) + list(e) for p, e in zip(self.pending, extra, strict=True)]
        logits = self.engine.feed(self.state, chunks, keep=keep)
        self.pending = [[] for _ in self.pending]
        self.fed_draft_tokens += len(extra[0]) if extra else 0
        return self.engine.vocab_logits(logits)

    def settle(
        self, draft_tokens: list[list[int]], num_accepted: list[int], new_tokens: list[int]
    ) -> None:
        """Keep ŷ₁…ŷ_n in the cache, forget the rejected ones, queue what is left.

        The lane fed ``fed_draft_tokens`` = k draft tokens: it rolls back k − n of
        them (a rejected token must not stay in the context), and queues the accepted
        ones it never fed (ŷ_{k+1}…ŷ_n) with the recovered or bonus token.
        """
        k = self.fed_draft_tokens
        self.engine.rollback(self.state, [max(k - n, 0) for n in num_accepted])
        self.pending = [
            pending + drafted[k:n] + [token]
            for pending, drafted, n, token in zip(
                self.pending, draft_tokens, num_accepted, new_tokens, strict=True
            )
        ]
        self.fed_draft_tokens = 0

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` (finished candidates leave; KV rows pruned in place)."""
        self.engine.select(self.state, rows)
        self.pending = [self.pending[r] for r in rows]


def run_speculative(
    strategy_name: str,
    engine: DecodingEngine,
    requests: Sequence[Request],
    draft: BoundDraft,
    references: Sequence[BoundDraft],
    gamma: int,
    verify: Verifier,
    hooks: Hooks,
    *,
    draft_bonus_position: bool = False,
) -> list[Result]:
    """Decode every request with draft-then-verify steps.

    ``references`` are extra models that score the draft tokens like the target does
    (SSS's unaligned draft reference); ``verify`` turns the logits into the weights
    the kernel verifies against. With ``draft_bonus_position`` the draft also computes
    its logits at position γ+1 (one more small forward pass), which SSS needs for its
    bonus token. Forward passes on the target's weights — the target's, and those of
    a prompt-steered draft or reference without weights of its own — are counted as
    target passes.
    """
    params = requests[0].params
    if any(r.params != params for r in requests):
        raise InvalidInputError("requests decoded together must share sampling parameters")
    start = time.perf_counter()
    target_counters, draft_counters = EngineCounters(), EngineCounters()
    batch = new_batch_id()
    candidates = [c for i, r in enumerate(requests) for c in r.candidates(i, 1)]
    stats = [
        AlignmentStats(strategy=strategy_name, prompt_tokens=len(r.prompt_ids), seed=r.seed)
        for r in requests
    ]

    # Each lane holds all but the last prompt token in its KV cache; that token is the
    # first pending token, fed together with the draft tokens of the first step.
    def start_lane(model: DecodingEngine, prompts: list[list[int]]) -> Lane:
        if any(len(p) < 2 for p in prompts):
            raise InvalidInputError("speculative strategies need prompts of at least 2 tokens")
        counters = target_counters if model is engine else draft_counters
        state = model.prefill(candidates, [p[:-1] for p in prompts], counters)
        return Lane(model, state, [[p[-1]] for p in prompts])

    target = start_lane(engine, [list(r.prompt_ids) for r in requests])
    drafter = start_lane(draft.engine, [draft.prompt(r) for r in requests])
    verifiers = [start_lane(ref.engine, [ref.prompt(r) for r in requests]) for ref in references]
    lanes = [target, drafter, *verifiers]
    streams = {
        id(c): TextStream(engine.tokenizer, params.stop) for c in candidates if hooks.on_text
    }
    matchers: dict[int, StopMatcher] = {}
    step = 0
    while target.state.num_rows:
        if hooks.should_stop is not None and hooks.should_stop():
            raise DecodeCancelled()
        step += 1
        rows = list(target.state.candidates)
        # Each row verifies γ_r = min(γ, room − 1) tokens, where room is how many tokens
        # it can still take: then its accepted tokens plus the recovered or bonus token
        # always fit, and no draft work is spent on tokens the reply cannot keep. The
        # batch drafts max γ_r; a row draws uniforms for its own γ_r only, so it decodes
        # exactly as it would alone.
        own_gamma = [min(gamma, engine.room(c, params) - 1) for c in rows]
        gamma_step = max(own_gamma)

        def uniforms(counts: list[int], rows: list[Any] = rows) -> torch.Tensor:
            # [rows, max(counts)]: row i gets counts[i] draws from its candidate's own
            # generator, then zeros (positions it does not use). All zeros when greedy:
            # one-hot distributions make every draw decide the same way.
            width = max(counts, default=0)
            out = torch.zeros(len(rows), width)
            if not params.greedy:
                for i, (candidate, count) in enumerate(zip(rows, counts, strict=True)):
                    if count:
                        out[i, :count] = draw_uniforms([candidate.generator] * count)
            return out

        # Step 1: the draft proposes γ tokens autoregressively from q (and, for SSS,
        # computes its logits at position γ+1 too).
        drafted: list[torch.Tensor] = []
        q_steps: list[torch.Tensor] = []
        draft_logits: list[torch.Tensor] = []
        for t in range(gamma_step + (1 if draft_bonus_position else 0)):
            chunk = None if t == 0 else [[int(token)] for token in drafted[-1]]
            logits = drafter.feed(chunk, keep=1)[:, -1]  # [rows, vocab]
            draft_logits.append(logits)
            if t < gamma_step:
                q_t = warp(logits, params)  # [rows, vocab]
                # Only rows still drafting (t < γ_r) draw; the others' tokens are unused.
                u = uniforms([int(t < g) for g in own_gamma])[:, 0]  # [rows]
                token = q_t.argmax(-1) if params.greedy else sample_from(q_t, u)
                drafted.append(token)
                q_steps.append(q_t)
        vocab = engine.vocab_size
        draft_tokens = _stack(drafted, (len(rows), 0), torch.long)  # [rows, γ]
        q = _stack(q_steps, (len(rows), 0, vocab))  # [rows, γ, vocab]
        q_logits = _stack(draft_logits, (len(rows), 0, vocab))  # [rows, γ (+1), vocab]

        # Step 2: the target and every reference score pending + γ draft tokens in one
        # forward pass each, giving logits at the γ+1 positions (the last one is for
        # the bonus token).
        proposals = draft_tokens.tolist()
        p_logits = target.feed(proposals, keep=gamma_step + 1)  # [rows, γ+1, vocab]
        ref_logits = [lane.feed(proposals, keep=gamma_step + 1) for lane in verifiers]

        # Step 3: accept a prefix and draw the recovered or bonus token.
        weights = verify(p_logits, q_logits, ref_logits, params)  # [rows, γ+1, vocab]
        accept_u = uniforms(own_gamma)  # [rows, γ]
        num_accepted, next_token = speculative_accept(
            weights,
            q,
            draft_tokens,
            accept_u,
            uniforms([1] * len(rows))[:, 0],
            torch.as_tensor(own_gamma),
        )

        # Step 4: append the new tokens to each reply; count as accepted only the draft
        # tokens the reply keeps (an end-of-sequence token, a stop string or the length
        # cap cut an accepted run).
        keep_rows: list[int] = []
        accepted = [int(n) for n in num_accepted]
        new_tokens = [int(t) for t in next_token]
        for row, candidate in enumerate(rows):
            n = accepted[row]
            before = len(candidate.token_ids)
            done = engine.append(
                candidate, [*proposals[row][:n], new_tokens[row]], params, matchers
            )
            kept = min(n, len(candidate.token_ids) - before)
            proposed = own_gamma[row]
            request_stats = stats[candidate.request]
            if proposed:
                request_stats.draft_tokens_proposed += proposed
                request_stats.draft_tokens_accepted += kept
                request_stats.acceptance_per_step.append(kept / proposed)
            hooks.event(
                EVENT_VERIFY,
                {
                    "request": candidate.request,
                    "proposed": proposed,
                    "accepted": kept,
                    "step": step,
                },
            )
            stream = streams.get(id(candidate))
            if stream is not None and hooks.on_text is not None:
                delta = stream.delta(
                    candidate.token_ids, final_text=candidate.text if done else None
                )
                if delta:
                    hooks.on_text(candidate.request, delta)
            if not done:
                keep_rows.append(row)

        # Step 5: every lane forgets its rejected draft tokens and queues the tokens it
        # has not fed; finished candidates leave every lane's batch.
        for lane in lanes:
            lane.settle(proposals, accepted, new_tokens)
            lane.select(keep_rows)

    elapsed = time.perf_counter() - start
    results = []
    for candidate, request_stats in zip(candidates, stats, strict=True):
        request_stats.add_counters(target_counters, batch=batch)
        request_stats.add_counters(draft_counters, target=False)
        request_stats.tokens_generated = len(candidate.token_ids)
        request_stats.tokens_returned = len(candidate.token_ids)
        request_stats.generation_seconds = elapsed / len(requests)
        hooks.event(EVENT_DONE, {"request": candidate.request, "stats": request_stats.to_dict()})
        results.append(
            Result(
                text=candidate.text or "",
                token_ids=list(candidate.token_ids),
                finish_reason=candidate.finish_reason or "length",
                stats=request_stats,
            )
        )
    return results


def _stack(
    steps: list[torch.Tensor], empty: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Stack per-position tensors along dim 1 (an empty ``empty``-shaped tensor when a
    step drafts nothing: γ_r = 0 for every row near the length cap)."""
    return torch.stack(steps, dim=1) if steps else torch.zeros(empty, dtype=dtype)


def _check_gamma(owner: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{owner}(num_draft_tokens={value!r}): γ must be an integer ≥ 1")


@dataclass(frozen=True)
class SpeculativeSampling(Strategy):
    """Lossless speculative decoding with a smaller draft sharing the vocabulary."""

    draft: Any = None
    """The draft model: an id, alias, ``(model, tokenizer)`` pair, handle, or
    :class:`~langchain_aligned.decoding.drafts.PromptSteeredDraft`."""
    num_draft_tokens: int = 4
    """γ: draft tokens proposed per verification step."""

    name: ClassVar[str] = "speculative_sampling"

    def __post_init__(self) -> None:
        _check_gamma("SpeculativeSampling", self.num_draft_tokens)
        if self.draft is None:
            raise InvalidInputError(
                "SpeculativeSampling needs draft=...: a smaller model sharing the target's "
                "vocabulary, or PromptSteeredDraft(system_prompt=...)"
            )

    def bind(self, engine: DecodingEngine) -> None:
        bind_draft(self.draft, engine)

    def run(
        self,
        engine: DecodingEngine,
        requests: Sequence[Request],
        *,
        reward: Any = None,
        hooks: Hooks | None = None,
    ) -> list[Result]:
        draft = bind_draft(self.draft, engine)
        results = run_speculative(
            self.name,
            engine,
            requests,
            draft,
            [],
            self.num_draft_tokens,
            lambda p_logits, q_logits, refs, params: warp(p_logits, params),
            hooks or Hooks(),
        )
        score_replies(reward, requests, results)
        return results
