"""Reward-Shifted Speculative Sampling (SSS) — Li, Wu, Luo & Zhang, *Reward-Shifted
Speculative Sampling Is An Efficient Test-Time Weak-to-Strong Aligner*, EMNLP 2025
(arXiv:2508.15044).

Weak-to-strong alignment with no reward model at decode time. Terms (target, draft,
aligned draft, reference, draft tokens, γ, accepted / recovered / bonus token) are
defined in the glossary of :mod:`langchain_aligned.decoding`. Three models share one
vocabulary; the paper's symbols are used in code:

* **π_ref** — the target: large, unaligned, unchanged;
* **π_draft** — the draft reference: small and unaligned;
* **π_r^draft** — the aligned draft: small, assumed to be the KL-regularised optimum
  π_draft·exp(r/β) around π_draft.

The RLHF optimum for the target, π* ∝ π_ref·exp(r/β), is then approximated per token
by **p̃ = π_ref · π_r^draft / π_draft**. Each step:

1. draft γ tokens from π_r^draft;
2. accept ŷ_t with probability min(1, π_ref(ŷ_t) / π_draft(ŷ_t)) — equation 6; the
   denominator is the *unaligned* draft;
3. at the first rejection draw the recovered token from
   norm((π_r^draft · (π_ref/π_draft − 1))₊) — equation 7.

With q = π_r^draft these are exactly speculative sampling's rules toward p̃ (step 2 is
min(1, p̃/q), step 3 is norm((p̃ − q)₊)), so the shared kernel
:func:`~langchain_aligned.decoding.speculative_sampling.speculative_accept` runs on the
weights computed here (:func:`reward_shifted_weights`). It samples p̃ exactly per
token only when Σ_v p̃(v) = 1; the ``"normalized"`` variant makes it so.

Sampling parameters (temperature T, top-k, top-p) — one definition for both variants:

* the tilt **p̃ ∝ π_ref·π_r^draft/π_draft** is formed from the three models'
  *untruncated* log-probabilities (log p̃ = log π_ref + log π_r^draft − log π_draft),
  so a token outside one model's top-k is never vetoed by a zero;
* the request's temperature, top-k and top-p then shape p̃ exactly as they shape p
  in plain sampling: **p̃_w = warp(log p̃)** (temperature divides log p̃, top-k and
  top-p keep p̃'s own most likely tokens). Greedy decoding takes argmax p̃;
* the draft proposes from **q = warp(log π_r^draft)**, the aligned draft sampled with
  the same parameters;
* ``variant="normalized"`` verifies against p̃_w: every token is drawn exactly from
  p̃_w (speculative sampling toward a distribution);
* ``variant="paper"`` verifies against **Z_T·p̃_w**, where Z_T = Σ_v π_ref,T·π_r,T^draft
  /π_draft,T is the mass of the paper's unnormalised product of the three models at
  temperature T. With T = 1 and no truncation this is equations 6 and 7 exactly
  (accept with min(1, π_ref/π_draft), residual norm((π_r^draft·(π_ref/π_draft − 1))₊));
  with a temperature alone it is those equations on the tempered models; top-k and
  top-p shape it like p̃_w. Its per-token law is min(q, Z·p̃_w) + (1 − Σ min(q, Z·p̃_w))
  ·norm((Z·p̃_w − q)₊), which equals p̃_w only when Z = 1.

Choices the paper leaves open, made here and tested:

* **All γ drafts accepted** — the paper is silent; like speculative sampling, a bonus
  token is drawn from the verified weights at position γ+1 (the aligned draft
  computes its logits there with one extra small forward pass).
* **π_draft(v) = 0** (a reference whose head gives some token no mass) — the shift
  π_r^draft/π_draft is undefined; such tokens keep the target's weight. A position
  where p̃ is 0 everywhere keeps π_ref.

Differences from the public SSS code (which this module does not reproduce): that code
divides by the aligned draft, takes the bonus token by argmax of norm(p̃) without the
residual, adds no token when all drafts are accepted, and reads probabilities at
shifted positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..engines.transformers import DecodingEngine
from ..errors import InvalidInputError
from .drafts import BoundDraft, PromptSteeredDraft, bind_draft
from .params import SamplingParams, warp
from .speculative_sampling import SpeculativeStrategy, Verifier, speculative_accept

__all__ = ["RewardShiftedSampling", "reward_shifted_accept", "reward_shifted_weights"]

VARIANTS = ("paper", "normalized")
_UNWARPED = SamplingParams()  # temperature 1, no top-k / top-p


def reward_shifted_weights(
    target_logits: torch.Tensor,
    aligned_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    params: SamplingParams = _UNWARPED,
    variant: str = "paper",
) -> torch.Tensor:
    """The weights SSS verifies draft tokens against, ``[..., vocab]``.

    Args:
        target_logits: ``[..., vocab]`` logits (or log-probabilities) of π_ref.
        aligned_logits: ``[..., vocab]`` logits of π_r^draft.
        reference_logits: ``[..., vocab]`` logits of π_draft.
        params: the request's temperature / top-k / top-p.
        variant: ``"normalized"`` returns p̃_w, a distribution; ``"paper"`` returns
            Z·p̃_w (see the module docstring).
    """
    if variant not in VARIANTS:
        raise InvalidInputError(f"variant={variant!r}: use 'paper' or 'normalized'")
    # The tilt log p̃ = log π_ref + log π_r^draft − log π_draft from the untruncated
    # log-probabilities, so a token outside one model's top-k is never vetoed.
    tilt = _tilt(target_logits, aligned_logits, reference_logits)  # [..., vocab]
    # The request's temperature, top-k and top-p shape p̃ as they shape p in plain
    # sampling: p̃_w = warp(log p̃).
    shaped = warp(tilt, params)  # [..., vocab]
    if variant == "normalized" or params.greedy:
        return shaped
    # The paper's rule verifies against the unnormalised product of the three models'
    # distributions at the request's temperature; its mass Z = Σ_v π_ref·π_r^draft/π_draft
    # (not 1 in general) is what makes it inexact. Keep that mass on the warped shape.
    t = params.temperature
    tempered = (
        tilt if t == 1 else _tilt(target_logits / t, aligned_logits / t, reference_logits / t)
    )
    mass = tempered.logsumexp(-1, keepdim=True).exp()  # [..., 1] Z
    return shaped * mass


def _tilt(target: torch.Tensor, aligned: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """log π_ref + log π_r^draft − log π_draft, ``[..., vocab]`` (−inf where p̃ = 0)."""
    log_target = target.float().log_softmax(-1)
    log_aligned = aligned.float().log_softmax(-1)
    log_reference = reference.float().log_softmax(-1)
    # The reward shift exp(r/β) ≈ π_r^draft/π_draft; where π_draft = 0 it is undefined
    # and the target's weight is kept (shift 1).
    defined = torch.isfinite(log_reference)
    shift = torch.where(defined, log_aligned - log_reference, torch.zeros_like(log_aligned))
    tilt = log_target + shift
    # If the shift removes all of the target's mass (π_r^draft = 0 wherever π_ref > 0),
    # p̃ is identically 0 and defines no distribution: keep the target's.
    empty = ~torch.isfinite(tilt).any(-1, keepdim=True)
    return torch.where(empty, log_target, tilt)


def reward_shifted_accept(
    target_logits: torch.Tensor,
    aligned_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    draft_tokens: torch.Tensor,
    accept_uniforms: torch.Tensor,
    recover_uniforms: torch.Tensor,
    params: SamplingParams = _UNWARPED,
    variant: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSS's acceptance rule (equations 6 and 7, or the normalised variant).

    Args:
        target_logits: ``[rows, γ+1, vocab]`` π_ref's logits at the γ+1 positions.
        aligned_logits: ``[rows, γ+1, vocab]`` π_r^draft's logits at the γ+1 positions
            (the draft tokens were drawn from ``warp`` of the first γ; the last one is
            used only for the bonus token).
        reference_logits: ``[rows, γ+1, vocab]`` π_draft's logits at the γ+1 positions.
        draft_tokens, accept_uniforms, recover_uniforms: as in
            :func:`~langchain_aligned.decoding.speculative_sampling.speculative_accept`.
        params: the request's temperature / top-k / top-p.

    Returns:
        ``(num_accepted, next_token)``, both ``[rows]``.
    """
    gamma = draft_tokens.shape[1]
    weights = reward_shifted_weights(
        target_logits, aligned_logits, reference_logits, params, variant
    )
    q = warp(aligned_logits[:, :gamma], params)  # [rows, γ, vocab] the draft's q
    return speculative_accept(weights, q, draft_tokens, accept_uniforms, recover_uniforms)


@dataclass(frozen=True)
class RewardShiftedSampling(SpeculativeStrategy):
    """SSS: an aligned small draft steers an unaligned large target."""

    draft: Any = None
    """The aligned draft π_r^draft: an id, alias, pair, handle or
    :class:`~langchain_aligned.decoding.drafts.PromptSteeredDraft`."""
    draft_reference: Any = None
    """The draft reference π_draft; ``None`` means the target's weights with the plain
    conversation (``PromptSteeredDraft(None)``), the natural reference for a
    prompt-steered draft."""
    num_draft_tokens: int = 4
    """γ: draft tokens per step (the paper uses 4)."""
    variant: str = "paper"
    """``"paper"`` (equations 6 and 7) or ``"normalized"`` (exact per-token norm(p̃))."""

    name: ClassVar[str] = "reward_shifted_sampling"
    draft_bonus_position: ClassVar[bool] = True
    draft_advice: ClassVar[str] = (
        " (the aligned draft π_r^draft), e.g. "
        "PromptSteeredDraft('You are helpful and kind.') or an aligned small model"
    )

    engine_advice: ClassVar[str] = (
        "its modified acceptance rule (equations 6 and 7) replaces speculative "
        "sampling's, and vLLM's acceptance rule is not pluggable; use "
        "engine='transformers' (docs/scale.md)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise InvalidInputError(
                f"RewardShiftedSampling(variant={self.variant!r}): use 'paper' or 'normalized'"
            )

    def models(self, engine: DecodingEngine) -> tuple[BoundDraft, list[BoundDraft]]:
        """The aligned draft and the draft reference, bound to the target ``engine``."""
        reference = (
            self.draft_reference if self.draft_reference is not None else PromptSteeredDraft(None)
        )
        return (
            bind_draft(self.draft, engine, "aligned draft"),
            [bind_draft(reference, engine, "draft reference")],
        )

    def verifier(self) -> Verifier:
        """SSS verifies against p̃ (:func:`reward_shifted_weights`), formed from the
        target's, the aligned draft's and the draft reference's logits."""
        variant = self.variant
        return lambda p_logits, q_logits, ref_logits, params: reward_shifted_weights(
            p_logits, q_logits, ref_logits[0], params, variant
        )
