"""Speculative sampling — Leviathan, Kalman & Matias, ICML 2023; Chen et al., 2023.

A small draft proposes γ draft tokens; the target scores all of them in one target
pass and accepts a prefix, so several tokens come out of one target pass while the
replies still follow the target's distribution exactly. Terms (target, draft, draft
tokens, γ and γ_r, accepted / recovered / bonus token, lane, target pass) are defined
in the glossary of :mod:`langchain_aligned.decoding`.

The papers' symbols are used in code:

* **p** — the target's distribution at each position, ``[rows, γ+1, vocab]`` (after
  temperature / top-k / top-p; one-hot for greedy decoding).
* **q** — the draft's distribution at each drafted position, ``[rows, γ, vocab]``.
* **ŷ₁…ŷ_γ** — the draft tokens, sampled from q.
* ŷ_t is accepted with probability min(1, p(ŷ_t)/q(ŷ_t)); the accepted tokens are the
  longest prefix so accepted. The recovered token is drawn from the residual
  norm((p − q)₊) at the first rejected position; the bonus token from p at position
  γ+1 (the target computed it anyway).

Every step therefore yields between 1 and γ+1 tokens for one target pass.

:func:`speculative_accept` is the pure acceptance rule: its randomness comes in as
arguments (uniforms), so it is tested exactly on hand-built distributions.
:func:`run_speculative` is the decoding loop and :class:`SpeculativeStrategy` the
strategy around it, both shared with Reward-Shifted Speculative Sampling, which only
changes the models taking part and the weights the draft tokens are verified against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch

from ..engines.base import DecodeState, EngineCounters, ReplyEngine
from ..engines.transformers import DecodingEngine
from ..errors import InvalidInputError
from . import strategy_parts as parts
from .base import EVENT_DONE, Hooks, Request, Result, Strategy, score_replies
from .drafts import BoundDraft, bind_draft
from .params import SamplingParams, draw_uniforms, sample_from, warp
from .stats import AlignmentStats, new_batch_id
from .text import StopMatcher

__all__ = [
    "Lane",
    "SpeculativeSampling",
    "SpeculativeStrategy",
    "Verifier",
    "run_speculative",
    "speculative_accept",
]


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
        p: ``[rows, γ+1, vocab]`` target weights per position. They may be
            unnormalised (Reward-Shifted Speculative Sampling passes p̃); the
            acceptance ratio uses them as given and the recovered / bonus tokens are
            drawn from their normalised positive parts.
        q: ``[rows, γ, vocab]`` draft distributions the draft tokens came from.
        draft_tokens: ``[rows, γ]`` the draft tokens ŷ.
        accept_uniforms: ``[rows, γ]`` uniforms, one per draft token.
        recover_uniforms: ``[rows]`` uniforms for the recovered or bonus token.
        num_proposed: ``[rows]`` γ_r ≤ γ, how many of the draft tokens each row
            verifies (default: all γ). Row r ignores its tokens past γ_r and draws its
            bonus token at position γ_r + 1 — exactly what it would do alone with
            γ = γ_r, so rows of one batch may verify different numbers of tokens.

    Returns:
        ``(num_accepted, next_token)``, both ``[rows]``: how many draft tokens are
        accepted (0…γ_r) and the recovered token (if one was rejected) or the bonus
        token (if all γ_r were accepted).
    """
    num_rows, gamma = draft_tokens.shape
    p = p.float()
    q = q.float()
    # p(ŷ_t) and q(ŷ_t) of each draft token: [rows, γ]
    p_draft = p[:, :gamma].gather(-1, draft_tokens.unsqueeze(-1)).squeeze(-1)
    q_draft = q.gather(-1, draft_tokens.unsqueeze(-1)).squeeze(-1)
    # Accept ŷ_t with probability min(1, p/q): u < p/q. A drafted token has q > 0; the
    # clamp only guards against a distribution that lost all mass to rounding.
    accepted = accept_uniforms < p_draft / q_draft.clamp(min=torch.finfo(torch.float32).tiny)
    # A row verifies only its first γ_r tokens: [rows, γ]
    proposed = torch.full((num_rows,), gamma) if num_proposed is None else num_proposed.cpu()
    accepted &= torch.arange(gamma).unsqueeze(0) < proposed.unsqueeze(1)
    # Only the prefix before the first rejection counts: [rows]
    num_accepted = accepted.to(torch.long).cumprod(dim=1).sum(dim=1)
    # The distribution of the next token at position n+1: the residual (p − q)₊ after a
    # rejection; after γ_r acceptances q is taken as 0 there, so it is p itself (bonus).
    rows = torch.arange(num_rows)
    p_next = p[rows, num_accepted]  # [rows, vocab]
    q_padded = torch.cat([q, q.new_zeros(num_rows, 1, p.shape[-1])], dim=1)  # [rows, γ+1, vocab]
    bonus = (num_accepted == proposed).unsqueeze(1)  # [rows, 1]
    q_next = torch.where(bonus, 0.0, q_padded[rows, num_accepted])  # [rows, vocab]
    residual = (p_next - q_next).clamp(min=0)  # [rows, vocab]
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
    """A lane: one model's view of the batch (see the glossary).

    The target, the draft and every reference are lanes; each step feeds every lane,
    and after verification :meth:`settle` puts each lane's cache back on the accepted
    prefix, whatever it fed.
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
    """Decode every request of one batch with draft-then-verify steps.

    ``references`` score the draft tokens like the target does (SSS's draft
    reference); ``verify`` turns the logits into the weights the kernel verifies
    against. With ``draft_bonus_position`` the draft also computes its logits at
    position γ+1 (one more small forward pass), which SSS needs for its bonus token.
    Every forward pass on the target's weights — also a prompt-steered draft's or
    reference's without weights of its own — is counted as a target pass.

    Raises:
        InvalidInputError: the requests do not share sampling parameters, or a prompt
            is shorter than 2 tokens.
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
    streams = parts.ReplyStreams(hooks, engine.tokenizer, params.stop, candidates)
    matchers: dict[int, StopMatcher] = {}
    step = 0
    while target.state.num_rows:
        parts.check_cancelled(hooks)
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
        draft_ids = draft_tokens.tolist()
        p_logits = target.feed(draft_ids, keep=gamma_step + 1)  # [rows, γ+1, vocab]
        ref_logits = [lane.feed(draft_ids, keep=gamma_step + 1) for lane in verifiers]

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
                candidate, [*draft_ids[row][:n], new_tokens[row]], params, matchers
            )
            # A stop string may take back tokens of earlier steps: never below zero.
            kept = max(0, min(n, len(candidate.token_ids) - before))
            parts.record_verification(
                stats[candidate.request], hooks, candidate.request, step, own_gamma[row], kept
            )
            streams.send(candidate, done)
            if not done:
                keep_rows.append(row)

        # Step 5: every lane forgets its rejected draft tokens and queues the tokens it
        # has not fed; finished candidates leave every lane's batch.
        for lane in lanes:
            lane.settle(draft_ids, accepted, new_tokens)
            lane.select(keep_rows)

    elapsed = time.perf_counter() - start
    results = []
    for candidate, request_stats in zip(candidates, stats, strict=True):
        request_stats.add_counters(target_counters, batch=batch)
        request_stats.add_counters(draft_counters, target=False)
        request_stats.tokens_generated = candidate.tokens_sampled
        request_stats.tokens_returned = len(candidate.token_ids)
        request_stats.generation_seconds = elapsed / len(requests)
        hooks.event(EVENT_DONE, {"request": candidate.request, "stats": request_stats.to_dict()})
        results.append(parts.result_of(candidate, request_stats))
    return results


def _stack(
    steps: list[torch.Tensor], empty: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Stack per-position tensors along dim 1 (an empty ``empty``-shaped tensor when a
    step drafts nothing: γ_r = 0 for every row near the length cap)."""
    return torch.stack(steps, dim=1) if steps else torch.zeros(empty, dtype=dtype)


def _target_distribution(
    p_logits: torch.Tensor,
    q_logits: torch.Tensor,
    ref_logits: list[torch.Tensor],
    params: SamplingParams,
) -> torch.Tensor:
    """The :data:`Verifier` of lossless speculative sampling: p, ``[rows, γ+1, vocab]``."""
    return warp(p_logits, params)


class SpeculativeStrategy(Strategy):
    """Base of the speculative strategies: :func:`run_speculative` over a draft.

    A subclass is a frozen dataclass with the fields ``draft`` and
    ``num_draft_tokens`` (γ); it says which models take part (:meth:`models`) and
    which weights the draft tokens are verified against (:meth:`verifier`).
    """

    draft: Any
    num_draft_tokens: int

    draft_bonus_position: ClassVar[bool] = False
    """Whether the draft also computes its logits at position γ+1 (for the bonus token)."""
    draft_advice: ClassVar[str] = ""
    """How the error for a missing draft goes on after ``needs draft=...``."""

    def __post_init__(self) -> None:
        parts.check_gamma(type(self).__name__, self.num_draft_tokens)
        if self.draft is None:
            raise InvalidInputError(f"{type(self).__name__} needs draft=...{self.draft_advice}")

    def models(self, engine: DecodingEngine) -> tuple[BoundDraft, list[BoundDraft]]:
        """The draft and the references, bound to the target ``engine``."""
        return bind_draft(self.draft, engine), []

    def verifier(self) -> Verifier:
        """What turns the models' logits into the weights the draft tokens are verified
        against: for lossless speculative sampling, the target's distribution p."""
        return _target_distribution

    def engine_settings(
        self, engine: str, engine_kwargs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if engine != "transformers":
            raise self.engine_error(engine)
        return dict(engine_kwargs or {})

    def bind(self, engine: ReplyEngine) -> None:
        # Binding loads the models and checks their vocabularies, before any decoding.
        self.models(self.own_engine(engine))

    def own_engine(self, engine: ReplyEngine) -> DecodingEngine:
        """``engine`` as this library's transformers engine, which the speculative
        strategies need: they verify draft tokens against the target's logits by their
        own acceptance rule, and vLLM computes neither on request.

        Raises:
            InvalidInputError: ``engine`` is another engine (vLLM, a server).
        """
        if engine.computes_logits:
            return cast("DecodingEngine", engine)
        raise self.engine_error(engine.name)

    def engine_error(self, engine_name: str) -> InvalidInputError:
        """The error for running this strategy on the engine named ``engine_name``."""
        return InvalidInputError(
            f"{type(self).__name__} cannot run on the {engine_name!r} engine: {self.engine_advice}"
        )

    engine_advice: ClassVar[str] = (
        "its draft tokens are verified by this library's acceptance rule against the "
        "target's logits; use engine='transformers', or vLLM's own lossless "
        "speculative decoding: Sampling() with engine_kwargs={'speculative_config': "
        "{'model': DRAFT, 'num_speculative_tokens': 4, 'method': 'draft_model'}} "
        "(docs/scale.md)"
    )
    """Why another engine cannot run the strategy, and what to do instead."""

    def decode(
        self, engine: ReplyEngine, requests: Sequence[Request], reward: Any, hooks: Hooks
    ) -> list[Result]:
        engine = self.own_engine(engine)
        draft, references = self.models(engine)
        results = run_speculative(
            self.name,
            engine,
            requests,
            draft,
            references,
            self.num_draft_tokens,
            self.verifier(),
            hooks,
            draft_bonus_position=self.draft_bonus_position,
        )
        score_replies(reward, requests, results)
        return results


@dataclass(frozen=True)
class SpeculativeSampling(SpeculativeStrategy):
    """Lossless speculative decoding with a smaller draft sharing the vocabulary."""

    draft: Any = None
    """The draft: an id, alias, ``(model, tokenizer)`` pair, handle, or
    :class:`~langchain_aligned.decoding.drafts.PromptSteeredDraft`."""
    num_draft_tokens: int = 4
    """γ: draft tokens per step."""

    name: ClassVar[str] = "speculative_sampling"
    draft_advice: ClassVar[str] = (
        ": a smaller model sharing the target's vocabulary, or "
        "PromptSteeredDraft(system_prompt=...)"
    )
    engine_advice: ClassVar[str] = (
        "on engine='vllm' it is vLLM's own lossless speculative decoding; a server "
        "speculates as it was started: start vLLM with --speculative-config "
        '\'{"method": "draft_model", "model": DRAFT, "num_speculative_tokens": 4}\' '
        "and use Sampling() (docs/scale.md)"
    )

    # On vLLM in process the draft is vLLM's own speculative decoding
    # (langchain_aligned.engines.speculation): the same lossless rule, run by vLLM.
    def engine_settings(
        self, engine: str, engine_kwargs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if engine == "vllm":
            from ..engines import speculation

            return speculation.engine_settings(self.draft, self.num_draft_tokens, engine_kwargs)
        return super().engine_settings(engine, engine_kwargs)

    def bind(self, engine: ReplyEngine) -> None:
        # Asked, not guessed from its class: an engine whose logits this process sees
        # runs this library's acceptance rule; another one speculates itself (vLLM).
        if engine.computes_logits:
            super().bind(engine)
            return
        from ..engines import speculation

        speculation.check_speculation(engine, self.draft, self.num_draft_tokens)

    def decode(
        self, engine: ReplyEngine, requests: Sequence[Request], reward: Any, hooks: Hooks
    ) -> list[Result]:
        if engine.computes_logits:
            return super().decode(engine, requests, reward, hooks)
        from ..engines import speculation

        speculation.check_speculation(engine, self.draft, self.num_draft_tokens)
        speculation.check_sampling(engine, requests)
        results = speculation.decode_with_engine_drafts(
            self.name, self.num_draft_tokens, engine, requests, reward, hooks
        )
        score_replies(reward, requests, results)
        return results
