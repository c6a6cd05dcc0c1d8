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
    score_replies,
)
from .drafts import BoundDraft, bind_draft
from .engine import DecodeCancelled, DecodingEngine, EngineCounters
from .params import draw_uniforms, sample_from
from .text import StopMatcher, TextStream

__all__ = ["SpeculativeSampling", "run_speculative", "speculative_accept"]


def speculative_accept(
    p: torch.Tensor,
    q: torch.Tensor,
    draft_tokens: torch.Tensor,
    accept_uniforms: torch.Tensor,
    recover_uniforms: torch.Tensor,
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

    Returns:
        ``(num_accepted, next_token)``, both ``[batch]``: how many draft tokens are
        accepted (0…γ) and the recovered token (if one was rejected) or the bonus token
        (if all were accepted).
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
    # Only the prefix before the first rejection counts: [batch]
    num_accepted = accepted.to(torch.long).cumprod(dim=1).sum(dim=1)
    # The distribution of the next token at position n+1: the residual (p − q)₊ after a
    # rejection; after γ acceptances q is taken as 0 there, so it is p itself (bonus).
    rows = torch.arange(batch)
    p_next = p[rows, num_accepted]  # [batch, vocab]
    q_padded = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1)  # [batch, γ+1, vocab]
    residual = (p_next - q_padded[rows, num_accepted]).clamp(min=0)  # [batch, vocab]
    # When p ≤ q everywhere (only possible for an unnormalised p), no residual mass is
    # left: fall back to the target weights themselves.
    empty = residual.sum(-1, keepdim=True) <= 0
    residual = torch.where(empty, p_next.clamp(min=0), residual)
    next_token = sample_from(residual, recover_uniforms)
    return num_accepted, next_token


# A verifier turns the target's (and possibly a reference model's) logits at the γ+1
# positions plus the draft's q into the weights the draft tokens are verified against.
Verifier = Callable[[torch.Tensor, torch.Tensor, list[torch.Tensor]], torch.Tensor]


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
    (SSS's unaligned draft reference); ``verify(p, q, [p_ref…])`` returns the weights
    the kernel verifies against (``p`` itself for lossless speculative sampling). With
    ``draft_bonus_position`` the draft also computes q at position γ+1 (one more small
    forward pass), which SSS needs for its bonus token; ``q`` then has γ+1 positions.
    """
    params = requests[0].params
    if any(r.params != params for r in requests):
        raise InvalidInputError("requests decoded together must share sampling parameters")
    start = time.perf_counter()
    target_counters, draft_counters = EngineCounters(), EngineCounters()
    candidates = [c for i, r in enumerate(requests) for c in r.candidates(i, 1)]
    stats = [
        AlignmentStats(strategy=strategy_name, prompt_tokens=len(r.prompt_ids), seed=r.seed)
        for r in requests
    ]

    # Each model holds all but the last prompt token in its KV cache; that token is the
    # first "pending" token, fed together with the draft tokens of the first step.
    def start_state(model: DecodingEngine, prompts: list[list[int]], counters: EngineCounters):
        if any(len(p) < 2 for p in prompts):
            raise InvalidInputError("speculative strategies need prompts of at least 2 tokens")
        state = model.prefill(candidates, [p[:-1] for p in prompts], counters)
        return state, [[p[-1]] for p in prompts]

    target_state, target_pending = start_state(
        engine, [list(r.prompt_ids) for r in requests], target_counters
    )
    draft_state, draft_pending = start_state(
        draft.engine, [draft.prompt(r) for r in requests], draft_counters
    )
    ref_states = [
        start_state(ref.engine, [ref.prompt(r) for r in requests], draft_counters)
        for ref in references
    ]
    streams = {
        id(c): TextStream(engine.tokenizer, params.stop) for c in candidates if hooks.on_text
    }
    matchers: dict[int, StopMatcher] = {}
    step = 0
    while target_state.num_rows:
        if hooks.should_stop is not None and hooks.should_stop():
            raise DecodeCancelled()
        step += 1
        rows = list(target_state.candidates)

        def uniforms(count: int, rows: list[Any] = rows) -> torch.Tensor:
            # [rows, count] from each candidate's own generator (zeros when greedy:
            # one-hot distributions make every draw decide the same way).
            if params.greedy:
                return torch.zeros(len(rows), count)
            return torch.stack([draw_uniforms([c.generator] * count) for c in rows])

        # Step 1: the draft proposes γ tokens autoregressively from q.
        drafted, q_steps = [], []
        chunks = draft_pending
        for _ in range(gamma):
            logits = draft.engine.feed(draft_state, chunks, keep=1)[:, -1]  # [rows, vocab]
            q_t = draft.engine.distributions(logits, params)  # [rows, vocab]
            token = q_t.argmax(-1) if params.greedy else sample_from(q_t, uniforms(1)[:, 0])
            drafted.append(token)
            q_steps.append(q_t)
            chunks = [[int(t)] for t in token]
        if draft_bonus_position:
            logits = draft.engine.feed(draft_state, chunks, keep=1)[:, -1]
            q_steps.append(draft.engine.distributions(logits, params))
        draft_tokens = torch.stack(drafted, dim=1)  # [rows, γ]
        q = torch.stack(q_steps, dim=1)  # [rows, γ (+1), vocab]

        # Step 2: the target scores pending + γ draft tokens in one forward pass, giving
        # p at the γ+1 positions (the last one is for the bonus token).
        verify_chunks = [
            pending + tokens
            for pending, tokens in zip(target_pending, draft_tokens.tolist(), strict=True)
        ]
        p = engine.distributions(engine.feed(target_state, verify_chunks, keep=gamma + 1), params)
        p_refs = []
        for (ref_state, ref_pending), ref in zip(ref_states, references, strict=True):
            chunks_ref = [
                pend + toks for pend, toks in zip(ref_pending, draft_tokens.tolist(), strict=True)
            ]
            p_refs.append(
                ref.engine.distributions(
                    ref.engine.feed(ref_state, chunks_ref, keep=gamma + 1), params
                )
            )

        # Step 3: accept a prefix and draw the recovered or bonus token.
        weights = verify(p, q, p_refs)
        accept_u = uniforms(gamma)
        recover_u = uniforms(1)[:, 0]
        num_accepted, next_token = speculative_accept(
            weights, q[:, :gamma], draft_tokens, accept_u, recover_u
        )

        # Step 4: append the new tokens, roll back what was rejected, and carry the
        # new token as the next pending token of every model.
        keep_rows: list[int] = []
        for row, candidate in enumerate(rows):
            n = int(num_accepted[row])
            new_tokens = [*draft_tokens[row, :n].tolist(), int(next_token[row])]
            request_stats = stats[candidate.request]
            request_stats.draft_tokens_proposed += gamma
            request_stats.draft_tokens_accepted += n
            request_stats.acceptance_per_step.append(n / gamma)
            hooks.event(
                EVENT_VERIFY,
                {"request": candidate.request, "proposed": gamma, "accepted": n, "step": step},
            )
            done = engine.append(candidate, new_tokens, params, matchers)
            stream = streams.get(id(candidate))
            if stream is not None and hooks.on_text is not None:
                delta = stream.delta(
                    candidate.token_ids, final_text=candidate.text if done else None
                )
                if delta:
                    hooks.on_text(candidate.request, delta)
            if not done:
                keep_rows.append(row)
        rejected = [gamma - int(n) for n in num_accepted]
        engine.rollback(target_state, rejected)
        for (ref_state, _), ref in zip(ref_states, references, strict=True):
            ref.engine.rollback(ref_state, rejected)
        # The draft fed pending + ŷ₁…ŷ_{γ−1}: keep ŷ₁…ŷ_n; after γ acceptances ŷ_γ was
        # never fed and joins the new token in the draft's next chunk.
        draft.engine.rollback(draft_state, [max(gamma - 1 - int(n), 0) for n in num_accepted])
        new_token = [int(t) for t in next_token]
        target_pending = [[t] for t in new_token]
        draft_pending = [
            ([int(draft_tokens[row, -1])] if int(num_accepted[row]) == gamma else [])
            + [new_token[row]]
            for row in range(len(rows))
        ]
        ref_states = [(ref_state, [[t] for t in new_token]) for ref_state, _ in ref_states]
        # Step 5: finished candidates leave every model's batch (KV rows pruned in place).
        engine.select(target_state, keep_rows)
        draft.engine.select(draft_state, keep_rows)
        for (ref_state, _), ref in zip(ref_states, references, strict=True):
            ref.engine.select(ref_state, keep_rows)
        target_pending = [target_pending[r] for r in keep_rows]
        draft_pending = [draft_pending[r] for r in keep_rows]
        ref_states = [(state, [pend[r] for r in keep_rows]) for state, pend in ref_states]

    elapsed = time.perf_counter() - start
    results = []
    for candidate, request_stats in zip(candidates, stats, strict=True):
        request_stats.add_counters(target_counters)
        request_stats.add_counters(draft_counters, target=False)
        request_stats.tokens_generated = len(candidate.token_ids)
        request_stats.tokens_returned = len(candidate.token_ids)
        request_stats.generation_seconds = elapsed
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
            lambda p, q, refs: p,
            hooks or Hooks(),
        )
        score_replies(reward, requests, results)
        return results
