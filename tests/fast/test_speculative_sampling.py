"""Speculative sampling: the acceptance kernel (exact and statistical), whole-reply
exactness on an enumerable space, and the equivalences of the strategy."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from laws import (
    ContextLaw,
    chi_square_pvalue,
    noisy_copy,
    product_law,
    sd_rule,
    speculative_law,
    total_variation,
)
from tiny import tiny_model, tiny_pair, tiny_tokenizer

from langchain_aligned import Hooks, Sampling, SpeculativeSampling, generate
from langchain_aligned.decoding import (
    PromptSteeredDraft,
    SamplingParams,
    build_requests,
    engine_for,
)
from langchain_aligned.decoding.base import EVENT_VERIFY
from langchain_aligned.decoding.params import warp
from langchain_aligned.decoding.speculative_sampling import speculative_accept
from langchain_aligned.decoding.stats import sum_stats
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import load_model

TARGET = tiny_pair(0)
DRAFT = tiny_pair(1)
PROMPTS = ["hello world", "why is the sun red", "what"]


def _grid(k: int) -> torch.Tensor:
    # k evenly spaced quantiles: inverse-CDF sampling then yields every token exactly
    # round(k·probability) times, so residuals are checked exactly, not statistically.
    return (torch.arange(k, dtype=torch.float32) + 0.5) / k


def test_kernel_all_accepted_gives_a_bonus_token_from_p():
    p = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]]])  # [1, γ+1=3, 3]
    q = p[:, :2].clone()
    n, token = speculative_accept(
        p, q, torch.tensor([[0, 1]]), torch.tensor([[0.99, 0.99]]), torch.tensor([0.3])
    )
    assert n.tolist() == [2] and token.tolist() == [2]  # bonus from p at position 3


def test_kernel_rejection_and_exact_residual():
    # Position 1: p = (0.1, 0.6, 0.3), q = (0.5, 0.25, 0.25); draft token 0 has
    # p/q = 0.2: accepted iff u < 0.2. Residual (p − q)₊ = (0, 0.35, 0.05) → (0, 7/8, 1/8).
    p = torch.tensor([[[0.1, 0.6, 0.3], [1.0, 0.0, 0.0]]])
    q = torch.tensor([[[0.5, 0.25, 0.25]]])
    draft = torch.tensor([[0]])
    n, _ = speculative_accept(p, q, draft, torch.tensor([[0.19]]), torch.tensor([0.5]))
    assert n.tolist() == [1]
    k = 800
    n, tokens = speculative_accept(
        p.expand(k, -1, -1),
        q.expand(k, -1, -1),
        draft.expand(k, -1),
        torch.full((k, 1), 0.5),
        _grid(k),
    )
    assert set(n.tolist()) == {0}
    assert torch.bincount(tokens, minlength=3).tolist() == [0, 700, 100]


def test_kernel_counts_only_the_prefix_before_the_first_rejection():
    p = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])
    q = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]]])
    # Token 2 (index 1) has p/q = 0.5 and u = 0.7: rejected, so token 3's acceptance is ignored.
    n, token = speculative_accept(
        p, q, torch.tensor([[0, 0, 0]]), torch.tensor([[0.1, 0.7, 0.1]]), torch.tensor([0.9])
    )
    assert n.tolist() == [1] and token.tolist() == [
        1
    ]  # residual at position 2 is (0, 0.5) → token 1


def _random_distribution(generator, vocab, sharp=2.0):
    return (torch.randn(vocab, generator=generator) * sharp).softmax(-1)


@pytest.mark.parametrize("gamma", [1, 3])
def test_first_token_distribution_equals_p(gamma):
    # 200k draws over a vocabulary of 8. The total-variation distance of an empirical
    # distribution has mean ≤ ½·Σ sqrt(p_v/N) ≤ ½·sqrt(V/N) ≈ 0.0032; 0.01 is > 3× that.
    generator = torch.Generator().manual_seed(gamma)
    vocab, draws = 8, 200_000
    p = torch.stack([_random_distribution(generator, vocab) for _ in range(gamma + 1)])  # [γ+1, V]
    q = torch.stack([_random_distribution(generator, vocab) for _ in range(gamma)])  # [γ, V]
    draft = torch.stack(
        [
            torch.multinomial(q[t], draws, replacement=True, generator=generator)
            for t in range(gamma)
        ],
        1,
    )
    n, token = speculative_accept(
        p.expand(draws, -1, -1),
        q.expand(draws, -1, -1),
        draft,
        torch.rand(draws, gamma, generator=generator),
        torch.rand(draws, generator=generator),
    )
    first = torch.where(n > 0, draft[:, 0], token)
    empirical = torch.bincount(first, minlength=vocab).float() / draws
    assert 0.5 * (empirical - p[0]).abs().sum() < 0.01
    # With half the draws the distance is larger on average (it shrinks as draws grow).
    half = torch.bincount(first[: draws // 50], minlength=vocab).float() / (draws // 50)
    assert 0.5 * (half - p[0]).abs().sum() < 0.06


# The statistical tests below decode thousands of independent requests of two prompts
# in one batch (rows accept different numbers of tokens: ragged acceptance) and
# compare the replies with the law computed by enumeration (tests/laws.py: a fresh
# forward pass over the full context for every prefix). Tolerance: the chi-square
# p-value must exceed 1e-3 — a correct sampler fails with probability 0.1 % per test,
# and the seeds are fixed, so a pass is reproducible; a corrupted context moves the
# law by a total variation of 0.1 or more here, which gives p-values below 1e-10 at
# these sample sizes (checked by putting the defects back).
DRAWS = 1500  # per prompt
CONVERSATIONS = ["why is the sun red", "hello world"]
LAW_CASES = [
    # (γ, sampling parameters): temperature ≠ 1 and top-k throughout, 4 new tokens so
    # γ = 3 reaches "all accepted, then continue" within a reply.
    (1, SamplingParams(temperature=0.7, top_k=2, max_new_tokens=4)),
    (2, SamplingParams(temperature=1.3, top_k=2, max_new_tokens=4)),
    (3, SamplingParams(temperature=0.8, top_k=2, max_new_tokens=4)),
]


def _requests(engine, params, draws=DRAWS):
    base = build_requests(engine, CONVERSATIONS, params, seed=0)
    return [dataclasses.replace(r, seed=seed) for seed in range(draws) for r in base], base


@pytest.mark.parametrize(("gamma", "params"), LAW_CASES)
def test_replies_follow_the_target_law_with_wider_output_layers(gamma, params):
    # Target and draft have output layers padded past the tokenizer (by 3 and 5 rows,
    # random weights) as real checkpoints do; only the tokenizer's ids are tokens.
    base = tiny_model(0)
    target = load_model((noisy_copy(base, 0.0, 7, extra_vocab=3), tiny_tokenizer()))
    draft_model = noisy_copy(base, 0.04, 11, extra_vocab=5)
    engine = engine_for(target)
    requests, prompts = _requests(engine, params)
    results = SpeculativeSampling(
        draft=(draft_model, tiny_tokenizer()), num_draft_tokens=gamma
    ).run(engine, requests)
    draft_engine = engine_for(load_model((draft_model, tiny_tokenizer())))
    for index, prompt in enumerate(prompts):
        target_law = ContextLaw(engine, prompt.prompt_ids)
        rule = sd_rule(target_law, ContextLaw(draft_engine, prompt.prompt_ids), params)
        law = speculative_law(rule, gamma, params.max_new_tokens, engine.eos_ids)
        exact = product_law(
            lambda prefix, t=target_law: warp(t.logits(prefix), params),
            params.max_new_tokens,
            engine.eos_ids,
        )
        # The step-by-step law of the rules is the target's law (the papers' theorem).
        assert total_variation(law, exact) < 1e-6
        replies = [r.token_ids for r in results[index :: len(prompts)]]
        assert chi_square_pvalue(replies, exact) > 1e-3
    steps = [a for r in results for a in r.stats.acceptance_per_step]
    # Both paths ran: steps with a rejection and steps accepting every draft token.
    assert 0.0 in steps and 1.0 in steps


def _count_forward_calls(model) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_counters_sum_to_the_forward_calls_made_and_only_returned_tokens_count():
    # Real forward hooks count every call on each model's weights. The three requests
    # share one batch, so per-batch counters appear in every result: a naive sum
    # triples them, sum_stats counts them once.
    target_model, draft_model = tiny_model(0), noisy_copy(tiny_model(0), 0.04, 11)
    target_calls, draft_calls = (
        _count_forward_calls(target_model),
        _count_forward_calls(draft_model),
    )
    params = SamplingParams(temperature=1.0, max_new_tokens=7, ignore_eos=True)
    engine = engine_for(load_model((target_model, tiny_tokenizer())))
    events = []
    base = build_requests(engine, [*CONVERSATIONS, "what"], params, seed=3)
    results = SpeculativeSampling(draft=(draft_model, tiny_tokenizer()), num_draft_tokens=4).run(
        engine, base, hooks=Hooks(on_event=lambda name, data: events.append((name, data)))
    )
    totals = sum_stats([r.stats for r in results])
    assert totals["target_forward_passes"] == target_calls[0]
    assert totals["draft_forward_passes"] == draft_calls[0]
    assert sum(r.stats.target_forward_passes for r in results) == 3 * target_calls[0]
    assert len({r.stats.batch for r in results}) == 1 and totals["batches"] == 1
    for index, result in enumerate(results):
        stats = result.stats
        verify = [d for name, d in events if name == EVENT_VERIFY and d["request"] == index]
        assert sum(d["accepted"] for d in verify) == stats.draft_tokens_accepted
        assert sum(d["proposed"] for d in verify) == stats.draft_tokens_proposed
        # 7 tokens with γ = 4: no step may propose more than the reply can keep, and
        # each step's recovered or bonus token always fits — so the reply is exactly
        # the accepted draft tokens plus one token per step.
        assert len(result.token_ids) == 7
        assert stats.draft_tokens_accepted + len(verify) == 7
        assert all(d["proposed"] <= 7 - 1 for d in verify)
    assert totals["draft_tokens_accepted"] == sum(r.stats.draft_tokens_accepted for r in results)


def test_an_end_of_sequence_token_cuts_the_accepted_count():
    # A draft identical to the target accepts everything; when an accepted run holds
    # the end-of-sequence token, the tokens after it (and the token itself) are not
    # returned and must not count as accepted.
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    engine = engine_for(load_model(TARGET))
    requests = [
        dataclasses.replace(r, seed=s)
        for s in range(40)
        for r in build_requests(engine, ["hello world"], params, seed=0)
    ]
    results = SpeculativeSampling(draft=TARGET, num_draft_tokens=4).run(engine, requests)
    ended = [r for r in results if r.finish_reason == "stop"]
    assert ended, "some replies must end with the end-of-sequence token"
    for result in results:
        assert result.stats.draft_tokens_accepted <= len(result.token_ids)
        steps = len(result.stats.acceptance_per_step)
        # One recovered or bonus token per step, except the end-of-sequence one.
        assert len(result.token_ids) - result.stats.draft_tokens_accepted in (steps - 1, steps)


def test_draft_equal_to_target_accepts_every_token():
    (result,) = generate(
        TARGET, "hello world", strategy=SpeculativeSampling(draft=TARGET), seed=2, max_new_tokens=15
    )
    assert result.stats.acceptance_rate == 1.0
    (steered,) = generate(
        TARGET,
        "hello world",
        strategy=SpeculativeSampling(draft=PromptSteeredDraft()),
        seed=2,
        max_new_tokens=15,
    )
    assert steered.stats.acceptance_rate == 1.0 and steered.token_ids == result.token_ids


@pytest.mark.parametrize("gamma", [1, 2, 4])
def test_greedy_equals_greedy_target_decoding(gamma):
    plain = generate(TARGET, PROMPTS, strategy=Sampling(), temperature=0, max_new_tokens=20)
    spec = generate(
        TARGET,
        PROMPTS,
        strategy=SpeculativeSampling(draft=DRAFT, num_draft_tokens=gamma),
        temperature=0,
        max_new_tokens=20,
    )
    assert [r.token_ids for r in spec] == [r.token_ids for r in plain]
    longest = max(len(r.token_ids) for r in spec)
    for r in spec:
        assert r.stats.prefill_passes == 1  # never re-prefilled: rollback only
        # The batch shares its forward passes: one per verification step plus the
        # prefill, and every step yields at least one token of every live row.
        assert r.stats.target_forward_passes <= 1 + longest + 1


def test_seeded_runs_are_identical_and_batch_independent():
    strategy = SpeculativeSampling(draft=DRAFT, num_draft_tokens=3)
    a = generate(TARGET, PROMPTS, strategy=strategy, seed=5, max_new_tokens=16)
    b = generate(TARGET, PROMPTS, strategy=strategy, seed=5, max_new_tokens=16)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    alone = generate(TARGET, PROMPTS[1], strategy=strategy, seed=5, max_new_tokens=16)
    assert alone[0].token_ids == a[1].token_ids
    assert len({tuple(r.stats.acceptance_per_step) for r in a}) > 1  # rows accepted differently


def test_bad_config_and_vocabulary_mismatch():
    with pytest.raises(InvalidInputError, match="num_draft_tokens=0"):
        SpeculativeSampling(draft=DRAFT, num_draft_tokens=0)
    with pytest.raises(InvalidInputError, match="draft="):
        SpeculativeSampling()
    from tiny import tiny_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from langchain_aligned.errors import VocabularyMismatchError

    backend = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "a": 1, "b": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    other = (
        tiny_model(5, vocab_size=3),
        PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<unk>"),
    )
    with pytest.raises(VocabularyMismatchError) as info:
        generate(
            TARGET, "hello", strategy=SpeculativeSampling(draft=other), seed=0, max_new_tokens=4
        )
    assert "3 tokens" in str(info.value) and f"{len(TARGET[1])}" in str(info.value)
    assert generate(
        TARGET, "hello", strategy=SpeculativeSampling(draft=DRAFT), seed=0, max_new_tokens=4
    )[0].stats


def test_streamed_text_is_the_reply():
    from langchain_aligned import Hooks

    pieces = []
    (result,) = generate(
        TARGET,
        "hello world",
        strategy=SpeculativeSampling(draft=DRAFT),
        seed=1,
        max_new_tokens=12,
        hooks=Hooks(on_text=lambda i, d: pieces.append(d)),
    )
    assert "".join(pieces) == result.text
