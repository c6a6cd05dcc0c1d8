"""Reward-Shifted Speculative Sampling: kernel (exact and statistical) and strategy."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_pair

from langchain_aligned import (
    PromptSteeredDraft,
    RewardShiftedSampling,
    SpeculativeSampling,
    generate,
)
from langchain_aligned.decoding.reward_shifted_sampling import (
    reward_shifted_accept,
    reward_shifted_weights,
)
from langchain_aligned.errors import InvalidInputError

TARGET = tiny_pair(0)


def test_weights_are_the_shifted_product_and_undefined_shift_keeps_p():
    p = torch.tensor([0.2, 0.3, 0.5])
    q = torch.tensor([0.5, 0.25, 0.25])
    ref = torch.tensor([0.25, 0.5, 0.0])
    paper = reward_shifted_weights(p, q, ref, "paper")
    torch.testing.assert_close(paper, torch.tensor([0.4, 0.15, 0.5]))  # last: π_draft = 0 → p
    normalized = reward_shifted_weights(p, q, ref, "normalized")
    torch.testing.assert_close(normalized, paper / paper.sum())


def test_paper_rule_accepts_with_p_over_p_reference_and_exact_residual():
    # One draft token (γ = 1), token 0: accept iff u < π_ref/π_draft = 0.2/0.4 = 0.5.
    p = torch.tensor([[[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]])
    q = torch.tensor([[[0.6, 0.2, 0.2], [0.0, 1.0, 0.0]]])
    ref = torch.tensor([[[0.4, 0.3, 0.3], [0.5, 0.5, 0.0]]])
    draft = torch.tensor([[0]])
    n, _ = reward_shifted_accept(p, q, ref, draft, torch.tensor([[0.49]]), torch.tensor([0.5]))
    assert n.tolist() == [1]
    # Rejected: residual ∝ (q·(π_ref/π_draft − 1))₊ = (0.6·(−0.5), 0.2·(2/3), 0.2·0)₊ = (0, 2/15, 0) → token 1.
    k = 300
    n, tokens = reward_shifted_accept(
        p.expand(k, -1, -1),
        q.expand(k, -1, -1),
        ref.expand(k, -1, -1),
        draft.expand(k, -1),
        torch.full((k, 1), 0.51),
        (torch.arange(k) + 0.5) / k,
    )
    assert set(n.tolist()) == {0} and set(tokens.tolist()) == {1}


def test_all_accepted_draws_the_bonus_from_norm_p_tilde():
    # γ = 1, accepted; at position 2 p̃ = π_ref·q/π_draft = (1·0.5/0.5, 0, 0)... here
    # (0.5·0.5/0.25, 0.5·0.5/0.75) = (1, 1/3) → norm = (3/4, 1/4).
    p = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    q = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    ref = torch.tensor([[[0.5, 0.5], [0.25, 0.75]]])
    k = 400
    n, tokens = reward_shifted_accept(
        p.expand(k, -1, -1),
        q.expand(k, -1, -1),
        ref.expand(k, -1, -1),
        torch.zeros(k, 1, dtype=torch.long),
        torch.zeros(k, 1),
        (torch.arange(k) + 0.5) / k,
    )
    assert set(n.tolist()) == {1}
    assert torch.bincount(tokens, minlength=2).tolist() == [300, 100]


def _draws(variant, seed, draws=200_000, vocab=8):
    generator = torch.Generator().manual_seed(seed)

    def dist():
        return (torch.randn(vocab, generator=generator) * 1.5).softmax(-1)

    p, q, ref = dist(), dist(), dist()
    two = lambda t: torch.stack([t, t]).unsqueeze(0).expand(draws, -1, -1)  # noqa: E731 - [draws, γ+1=2, V]
    draft = torch.multinomial(q, draws, replacement=True, generator=generator).unsqueeze(1)
    n, token = reward_shifted_accept(
        two(p),
        two(q),
        two(ref),
        draft,
        torch.rand(draws, 1, generator=generator),
        torch.rand(draws, generator=generator),
        variant,
    )
    first = torch.where(n > 0, draft[:, 0], token)
    return torch.bincount(first, minlength=vocab).float() / draws, p, q, ref


@pytest.mark.parametrize("seed", [0, 1])
def test_paper_variant_matches_its_analytic_one_step_distribution(seed):
    # Derivation: the first token is ŷ (drawn from q) if accepted, with probability
    # q(v)·min(1, p̃(v)/q(v)) = min(q, p̃)(v); otherwise (probability
    # 1 − Σ_u min(q, p̃)(u)) it is drawn from the residual norm((p̃ − q)₊). So
    # P(v) = min(q, p̃)(v) + (1 − Σ min(q, p̃))·(p̃ − q)₊(v)/Σ(p̃ − q)₊.
    # 200k draws, V = 8: TV mean ≤ ½·sqrt(8/2e5) ≈ 0.0032; tolerance 0.01.
    empirical, p, q, ref = _draws("paper", seed)
    tilde = p * q / ref
    accepted = torch.minimum(q, tilde)
    residual = (tilde - q).clamp(min=0)
    analytic = accepted + (1 - accepted.sum()) * residual / residual.sum()
    assert 0.5 * (empirical - analytic).abs().sum() < 0.01
    # It is not norm(p̃) in general (the paper's rule is exact only when Σ p̃ = 1).
    assert abs(float(tilde.sum()) - 1) > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_normalized_variant_reproduces_norm_p_tilde(seed):
    empirical, p, q, ref = _draws("normalized", seed)
    target = p * q / ref
    target = target / target.sum()
    assert 0.5 * (empirical - target).abs().sum() < 0.01


def test_identical_drafts_reduce_to_the_target():
    # aligned draft = draft reference = target → p̃ = p, every draft token accepted,
    # and the reply equals lossless speculative sampling under the same seed.
    same = RewardShiftedSampling(
        draft=PromptSteeredDraft(None), draft_reference=PromptSteeredDraft(None)
    )
    (sss,) = generate(TARGET, "hello world", strategy=same, seed=4, max_new_tokens=14)
    assert sss.stats.acceptance_rate == 1.0
    (greedy_sss,) = generate(TARGET, "hello world", strategy=same, temperature=0, max_new_tokens=14)
    (greedy,) = generate(TARGET, "hello world", temperature=0, max_new_tokens=14)
    assert greedy_sss.token_ids == greedy.token_ids


def test_three_models_with_prompt_steering_run_batched_and_reproducibly():
    strategy = RewardShiftedSampling(draft=PromptSteeredDraft("good yes sure"), num_draft_tokens=3)
    a = generate(
        TARGET, ["hello world", "why is the sun red"], strategy=strategy, seed=3, max_new_tokens=16
    )
    b = generate(
        TARGET, ["hello world", "why is the sun red"], strategy=strategy, seed=3, max_new_tokens=16
    )
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    stats = a[0].stats
    assert stats.prefill_passes == 1 and stats.draft_forward_passes > 0
    assert 0 <= stats.acceptance_rate <= 1 and stats.draft_tokens_proposed % 3 == 0
    normalized = RewardShiftedSampling(
        draft=PromptSteeredDraft("good yes sure"), variant="normalized"
    )
    assert (
        generate(TARGET, "hello", strategy=normalized, seed=0, max_new_tokens=6)[0].text is not None
    )


def test_bad_config():
    with pytest.raises(InvalidInputError, match="draft="):
        RewardShiftedSampling()
    with pytest.raises(InvalidInputError, match="variant='exact'"):
        RewardShiftedSampling(draft=PromptSteeredDraft("x"), variant="exact")
    with pytest.raises(InvalidInputError, match="num_draft_tokens=-1"):
        RewardShiftedSampling(draft=PromptSteeredDraft("x"), num_draft_tokens=-1)
    assert SpeculativeSampling(draft=TARGET).name == "speculative_sampling"
