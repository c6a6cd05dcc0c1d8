"""Reward-Shifted Speculative Sampling: kernel (exact and statistical) and strategy."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from laws import (
    ContextLaw,
    chi_square_pvalue,
    noisy_copy,
    product_law,
    speculative_law,
    sss_rule,
    tilt_distribution,
    total_variation,
)
from tiny import tiny_model, tiny_pair, tiny_tokenizer

from langchain_aligned import (
    PromptSteeredDraft,
    RewardShiftedSampling,
    SpeculativeSampling,
    generate,
)
from langchain_aligned.decoding import SamplingParams, build_requests, engine_for
from langchain_aligned.decoding.params import warp
from langchain_aligned.decoding.reward_shifted_sampling import (
    reward_shifted_accept,
    reward_shifted_weights,
)
from langchain_aligned.decoding.stats import sum_stats
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import load_model

TARGET = tiny_pair(0)


def test_weights_are_the_shifted_product_and_undefined_shift_keeps_p():
    p = torch.tensor([0.2, 0.3, 0.5])
    q = torch.tensor([0.5, 0.25, 0.25])
    ref = torch.tensor([0.25, 0.75, 0.0])
    # The functions take logits; log-probabilities are logits.
    paper = reward_shifted_weights(p.log(), q.log(), ref.log(), variant="paper")
    torch.testing.assert_close(paper, torch.tensor([0.4, 0.1, 0.5]))  # last: π_draft = 0 → p
    normalized = reward_shifted_weights(p.log(), q.log(), ref.log(), variant="normalized")
    torch.testing.assert_close(normalized, paper / paper.sum())


def test_truncation_shapes_the_tilt_and_never_vetoes_a_token():
    # top_k = 2 keeps p̃'s own two most likely tokens — here tokens 0 and 2, although
    # token 2 is outside the aligned draft's top-2 (the old rule formed p̃ from the
    # truncated distributions: token 2 got weight 0 and token 1 the raw target weight).
    p = torch.tensor([0.2, 0.1, 0.3, 0.4])
    q = torch.tensor([0.5, 0.3, 0.15, 0.05])
    ref = torch.tensor([0.25, 0.5, 0.1, 0.15])
    tilde = p * q / ref  # (0.4, 0.06, 0.45, 0.1333)
    params = SamplingParams(top_k=2, temperature=0.5)
    normalized = reward_shifted_weights(p.log(), q.log(), ref.log(), params, "normalized")
    kept = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = kept * tilde ** (1 / 0.5)
    torch.testing.assert_close(normalized, expected / expected.sum())
    # The paper variant keeps that shape and the mass Z_T of the tempered product.
    t = 0.5
    tempered = lambda d: d ** (1 / t) / (d ** (1 / t)).sum()  # noqa: E731
    mass = (tempered(p) * tempered(q) / tempered(ref)).sum()
    paper = reward_shifted_weights(p.log(), q.log(), ref.log(), params, "paper")
    torch.testing.assert_close(paper, normalized * mass)
    # Temperature 1 without truncation: the paper's equations exactly.
    torch.testing.assert_close(
        reward_shifted_weights(p.log(), q.log(), ref.log(), variant="paper"), tilde
    )


def test_paper_rule_accepts_with_p_over_p_reference_and_exact_residual():
    # One draft token (γ = 1), token 0: accept iff u < π_ref/π_draft = 0.2/0.4 = 0.5.
    p = torch.tensor([[[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]])
    q = torch.tensor([[[0.6, 0.2, 0.2], [0.0, 1.0, 0.0]]])
    ref = torch.tensor([[[0.4, 0.3, 0.3], [0.5, 0.5, 0.0]]])
    draft = torch.tensor([[0]])
    n, _ = reward_shifted_accept(
        p.log(), q.log(), ref.log(), draft, torch.tensor([[0.49]]), torch.tensor([0.5])
    )
    assert n.tolist() == [1]
    # Rejected: residual ∝ (q·(π_ref/π_draft − 1))₊ = (0.6·(−0.5), 0.2·(2/3), 0.2·0)₊ = (0, 2/15, 0) → token 1.
    k = 300
    n, tokens = reward_shifted_accept(
        p.log().expand(k, -1, -1),
        q.log().expand(k, -1, -1),
        ref.log().expand(k, -1, -1),
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
        p.log().expand(k, -1, -1),
        q.log().expand(k, -1, -1),
        ref.log().expand(k, -1, -1),
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
        two(p.log()),
        two(q.log()),
        two(ref.log()),
        draft,
        torch.rand(draws, 1, generator=generator),
        torch.rand(draws, generator=generator),
        variant=variant,
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


# Statistical tests through the strategy: thousands of independent requests of two
# prompts in one batch (ragged acceptance), replies compared with the law computed by
# enumeration (tests/laws.py, a fresh forward pass over the full context of every
# prefix, for every model). Tolerance as in test_speculative_sampling.py: p > 1e-3
# (0.1 % false failures for a correct sampler, fixed seeds), while a corrupted draft
# context moves the law by a total variation ≥ 0.1 and gives p < 1e-10.
DRAWS = 1500  # per prompt
CONVERSATIONS = ["why is the sun red", "hello world"]
BASE = tiny_model(0)
# The target and the draft reference have output layers padded past the tokenizer
# (random rows that must never be sampled); the aligned draft is a close copy of the
# target, the reference another one.
TARGET_WIDE = noisy_copy(BASE, 0.0, 7, extra_vocab=3)
ALIGNED = noisy_copy(BASE, 0.04, 21)
REFERENCE_WIDE = noisy_copy(BASE, 0.04, 22, extra_vocab=6)
LAW_CASES = [
    ("paper", 1, SamplingParams(temperature=0.7, top_k=2, max_new_tokens=4)),
    ("paper", 3, SamplingParams(temperature=1.3, top_k=2, max_new_tokens=4)),
    ("normalized", 2, SamplingParams(temperature=0.8, top_k=2, max_new_tokens=4)),
    ("normalized", 3, SamplingParams(temperature=1.0, top_k=2, max_new_tokens=4)),
]


def _engine(model):
    return engine_for(load_model((model, tiny_tokenizer())))


def _requests(engine, params):
    base = build_requests(engine, CONVERSATIONS, params, seed=0)
    return [dataclasses.replace(r, seed=seed) for seed in range(DRAWS) for r in base], base


def _run(strategy, engine, params):
    requests, prompts = _requests(engine, params)
    results = strategy.run(engine, requests)
    return (
        [[r.token_ids for r in results[i :: len(prompts)]] for i in range(len(prompts))],
        prompts,
        results,
    )


@pytest.mark.parametrize(("variant", "gamma", "params"), LAW_CASES)
def test_replies_follow_the_documented_law(variant, gamma, params):
    engine = _engine(TARGET_WIDE)
    strategy = RewardShiftedSampling(
        draft=(ALIGNED, tiny_tokenizer()),
        draft_reference=(REFERENCE_WIDE, tiny_tokenizer()),
        num_draft_tokens=gamma,
        variant=variant,
    )
    replies, prompts, results = _run(strategy, engine, params)
    for index, prompt in enumerate(prompts):
        target, aligned, reference = (
            ContextLaw(e, prompt.prompt_ids)
            for e in (engine, _engine(ALIGNED), _engine(REFERENCE_WIDE))
        )
        rule = sss_rule(target, aligned, reference, params, variant)
        law = speculative_law(rule, gamma, params.max_new_tokens, engine.eos_ids)
        tilted = product_law(
            tilt_distribution(target, aligned, reference, params),
            params.max_new_tokens,
            engine.eos_ids,
        )
        if variant == "normalized":
            # Exact per token: the replies' law is the product of p̃_w.
            assert total_variation(law, tilted) < 1e-6
        assert chi_square_pvalue(replies[index], law) > 1e-3
    steps = [a for r in results for a in r.stats.acceptance_per_step]
    assert 0.0 in steps and 1.0 in steps  # rejections and all-accepted steps both ran


@pytest.mark.parametrize("variant", ["paper", "normalized"])
def test_aligned_draft_equal_to_its_reference_samples_the_target_exactly(variant):
    # π_r^draft = π_draft (one model, two KV caches) makes the shift 1 and Z = 1, so
    # both variants must sample the target's own law — while the draft differs from
    # the target, so tokens are rejected and the aligned draft's context matters: a
    # token left in its cache after a rejection shifts the law.
    params = SamplingParams(temperature=0.9, top_k=2, max_new_tokens=4)
    engine = _engine(TARGET_WIDE)
    draft = (ALIGNED, tiny_tokenizer())
    strategy = RewardShiftedSampling(
        draft=draft, draft_reference=draft, num_draft_tokens=2, variant=variant
    )
    replies, prompts, results = _run(strategy, engine, params)
    for index, prompt in enumerate(prompts):
        target = ContextLaw(engine, prompt.prompt_ids)
        exact = product_law(
            lambda prefix, t=target: warp(t.logits(prefix), params),
            params.max_new_tokens,
            engine.eos_ids,
        )
        assert chi_square_pvalue(replies[index], exact) > 1e-3
    rate = sum(r.stats.draft_tokens_accepted for r in results) / sum(
        r.stats.draft_tokens_proposed for r in results
    )
    assert 0.05 < rate < 0.95


def test_greedy_takes_the_argmax_of_the_tilt():
    # Greedy SSS must return argmax p̃ token by token, with every model's context right.
    params = SamplingParams(temperature=0, max_new_tokens=8)
    engine = _engine(TARGET_WIDE)
    strategy = RewardShiftedSampling(
        draft=(ALIGNED, tiny_tokenizer()),
        draft_reference=(REFERENCE_WIDE, tiny_tokenizer()),
        num_draft_tokens=3,
    )
    (request,) = build_requests(engine, ["why is the sun red"], params, seed=0)
    (result,) = strategy.run(engine, [request])
    target, aligned, reference = (
        ContextLaw(e, request.prompt_ids)
        for e in (engine, _engine(ALIGNED), _engine(REFERENCE_WIDE))
    )
    distribution = tilt_distribution(target, aligned, reference, params)
    expected: list[int] = []
    while len(expected) < 8:
        token = int(distribution(tuple(expected)).argmax())
        if token in engine.eos_ids:
            break
        expected.append(token)
    assert result.token_ids == expected
    assert 0 < result.stats.draft_tokens_accepted < result.stats.draft_tokens_proposed


def test_reference_on_the_target_weights_counts_as_target_passes():
    # The default reference is the target's weights with the plain conversation: its
    # forward calls run on the target's weights and are target passes.
    target_model = tiny_model(0)
    calls = [0]
    target_model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    aligned = noisy_copy(target_model, 0.04, 21)
    strategy = RewardShiftedSampling(draft=(aligned, tiny_tokenizer()), num_draft_tokens=2)
    results = generate(
        (target_model, tiny_tokenizer()),
        ["hello world", "why is the sun red"],
        strategy=strategy,
        seed=1,
        max_new_tokens=10,
    )
    totals = sum_stats([r.stats for r in results])
    assert totals["target_forward_passes"] == calls[0]
    assert results[0].stats.prefill_passes == 2  # the target's and the reference's


def test_three_models_with_prompt_steering_run_batched_and_reproducibly():
    strategy = RewardShiftedSampling(draft=PromptSteeredDraft("good yes sure"), num_draft_tokens=3)
    a = generate(
        TARGET, ["hello world", "why is the sun red"], strategy=strategy, seed=3, max_new_tokens=16
    )
    b = generate(
        TARGET, ["hello world", "why is the sun red"], strategy=strategy, seed=3, max_new_tokens=16
    )
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    alone = generate(TARGET, "why is the sun red", strategy=strategy, seed=3, max_new_tokens=16)
    assert alone[0].token_ids == a[1].token_ids  # a row decodes as it would alone
    stats = a[0].stats
    # All three lanes run on the target's weights: three prefills, no draft passes.
    assert stats.prefill_passes == 3 and stats.draft_forward_passes == 0
    # The default reference is the target with the plain conversation, so π_ref/π_draft
    # is 1: every draft token is accepted and SSS reproduces the aligned draft.
    assert stats.acceptance_rate == 1.0


def test_bad_config():
    with pytest.raises(InvalidInputError, match="draft="):
        RewardShiftedSampling()
    with pytest.raises(InvalidInputError, match="variant='exact'"):
        RewardShiftedSampling(draft=PromptSteeredDraft("x"), variant="exact")
    with pytest.raises(InvalidInputError, match="num_draft_tokens=-1"):
        RewardShiftedSampling(draft=PromptSteeredDraft("x"), num_draft_tokens=-1)
    assert SpeculativeSampling(draft=TARGET).name == "speculative_sampling"
