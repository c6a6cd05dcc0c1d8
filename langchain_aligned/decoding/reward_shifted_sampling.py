"""Reward-Shifted Speculative Sampling (SSS) — Li, Wu, Luo & Zhang, *Reward-Shifted
Speculative Sampling Is An Efficient Test-Time Weak-to-Strong Aligner*, EMNLP 2025
(arXiv:2508.15044).

Weak-to-strong alignment with no reward model at decode time. Three models share one
vocabulary (the paper's symbols are used in code):

* **π_ref** — the target: large, unaligned, unchanged (``p_target``);
* **π_draft** — the unaligned small draft reference (``p_draft_reference``);
* **π_r^draft** — the aligned small draft (``q_aligned``), assumed to be the
  KL-regularised optimum π_draft·exp(r/β) around π_draft.

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
weights p̃ computed here. It samples p̃ exactly per token only when Σ_v p̃(v) = 1.

Choices the paper leaves open, made here and tested:

* **All γ drafts accepted** — the paper is silent; like speculative sampling, a bonus
  token is drawn from norm(p̃) at position γ+1 (the aligned draft computes
  π_r^draft there with one extra small forward pass).
* **π_draft(v) = 0** — the shift π_r^draft/π_draft is undefined; such tokens keep the
  target's weight (p̃(v) = π_ref(v)). A position where p̃ is 0 everywhere (the aligned
  draft gives no mass to any token the target allows) keeps π_ref.
* ``variant="normalized"`` divides p̃ by Z = Σ_v p̃(v) at each position (accept with
  min(1, p̃/(Z·q)), residual norm((p̃/Z − q)₊)), which samples exactly from the
  per-token normalised p̃; Z is free because all three distributions are computed.

Differences from the public SSS code (which this module does not reproduce): that code
divides by the aligned draft, takes the bonus token by argmax of norm(p̃) without the
residual, adds no token when all drafts are accepted, and reads probabilities at
shifted positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from .base import Hooks, Request, Result, Strategy, score_replies
from .drafts import PromptSteeredDraft, bind_draft
from .engine import DecodingEngine
from .speculative_sampling import _check_gamma, run_speculative, speculative_accept

__all__ = ["RewardShiftedSampling", "reward_shifted_accept", "reward_shifted_weights"]

VARIANTS = ("paper", "normalized")


def reward_shifted_weights(
    p_target: torch.Tensor,
    q_aligned: torch.Tensor,
    p_draft_reference: torch.Tensor,
    variant: str = "paper",
) -> torch.Tensor:
    """p̃ = π_ref · π_r^draft / π_draft per position (``[..., vocab]`` each).

    ``variant="normalized"`` returns p̃ / Σ_v p̃(v).
    """
    if variant not in VARIANTS:
        raise InvalidInputError(f"variant={variant!r}: use 'paper' or 'normalized'")
    p_target = p_target.float()
    q_aligned = q_aligned.float()
    p_draft_reference = p_draft_reference.float()
    # The reward shift exp(r/β) ≈ π_r^draft/π_draft; where π_draft = 0 it is undefined
    # and the target's weight is kept.
    defined = p_draft_reference > 0
    shift = torch.where(
        defined, q_aligned / p_draft_reference.clamp(min=1e-30), torch.ones_like(q_aligned)
    )
    weights = p_target * shift  # [..., vocab]
    # If the shift removes all of the target's mass (π_r^draft = 0 wherever π_ref > 0),
    # p̃ is identically 0 and defines no distribution: keep the target's weights.
    empty = weights.sum(-1, keepdim=True) <= 0
    weights = torch.where(empty, p_target, weights)
    if variant == "normalized":
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-30)
    return weights


def reward_shifted_accept(
    p_target: torch.Tensor,
    q_aligned: torch.Tensor,
    p_draft_reference: torch.Tensor,
    draft_tokens: torch.Tensor,
    accept_uniforms: torch.Tensor,
    recover_uniforms: torch.Tensor,
    variant: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSS's acceptance rule (equations 6 and 7, or the normalised variant).

    Args:
        p_target: ``[batch, γ+1, vocab]`` π_ref at the γ+1 positions.
        q_aligned: ``[batch, γ+1, vocab]`` π_r^draft at the γ+1 positions (the last one
            is used only for the bonus token).
        p_draft_reference: ``[batch, γ+1, vocab]`` π_draft at the γ+1 positions.
        draft_tokens, accept_uniforms, recover_uniforms: as in
            :func:`~langchain_aligned.decoding.speculative_sampling.speculative_accept`.

    Returns:
        ``(num_accepted, next_token)``, both ``[batch]``.
    """
    gamma = draft_tokens.shape[1]
    weights = reward_shifted_weights(p_target, q_aligned, p_draft_reference, variant)
    return speculative_accept(
        weights, q_aligned[:, :gamma], draft_tokens, accept_uniforms, recover_uniforms
    )


@dataclass(frozen=True)
class RewardShiftedSampling(Strategy):
    """SSS: an aligned small draft steers an unaligned large target."""

    draft: Any = None
    """The aligned draft π_r^draft: an id, alias, pair, handle or
    :class:`~langchain_aligned.decoding.drafts.PromptSteeredDraft`."""
    draft_reference: Any = None
    """The unaligned draft π_draft; ``None`` means the target's weights with the plain
    conversation (``PromptSteeredDraft(None)``), the natural reference for a
    prompt-steered draft."""
    num_draft_tokens: int = 4
    """γ: draft tokens per verification step (the paper uses 4)."""
    variant: str = "paper"
    """``"paper"`` (equations 6 and 7) or ``"normalized"`` (exact per-token norm(p̃))."""

    name: ClassVar[str] = "reward_shifted_sampling"

    def __post_init__(self) -> None:
        _check_gamma("RewardShiftedSampling", self.num_draft_tokens)
        if self.draft is None:
            raise InvalidInputError(
                "RewardShiftedSampling needs draft=... (the aligned draft π_r^draft), e.g. "
                "PromptSteeredDraft('You are helpful and kind.') or an aligned small model"
            )
        if self.variant not in VARIANTS:
            raise InvalidInputError(
                f"RewardShiftedSampling(variant={self.variant!r}): use 'paper' or 'normalized'"
            )

    def _reference(self) -> Any:
        return (
            self.draft_reference if self.draft_reference is not None else PromptSteeredDraft(None)
        )

    def bind(self, engine: DecodingEngine) -> None:
        bind_draft(self.draft, engine, "aligned draft")
        bind_draft(self._reference(), engine, "draft reference")

    def run(
        self,
        engine: DecodingEngine,
        requests: Sequence[Request],
        *,
        reward: Any = None,
        hooks: Hooks | None = None,
    ) -> list[Result]:
        draft = bind_draft(self.draft, engine, "aligned draft")
        reference = bind_draft(self._reference(), engine, "draft reference")
        variant = self.variant

        def verify(p: torch.Tensor, q: torch.Tensor, refs: list[torch.Tensor]) -> torch.Tensor:
            return reward_shifted_weights(p, q, refs[0], variant)

        results = run_speculative(
            self.name,
            engine,
            requests,
            draft,
            [reference],
            self.num_draft_tokens,
            verify,
            hooks or Hooks(),
            draft_bonus_position=True,
        )
        score_replies(reward, requests, results)
        return results
