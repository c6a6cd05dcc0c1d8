"""Speculative sampling: the acceptance kernel (exact and statistical), whole-sequence
exactness on an enumerable space, and the equivalences of the strategy."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_pair

from langchain_aligned import Sampling, SpeculativeSampling, generate
from langchain_aligned.decoding import (
    Candidate,
    DecodingEngine,
    PromptSteeredDraft,
    Request,
    SamplingParams,
)
from langchain_aligned.decoding.speculative_sampling import speculative_accept
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


def _exact_sequences(engine, prompt, params, length):
    """P(sequence) under the target's warped distributions, by enumeration."""
    out = {}
    frontier = [((), 1.0)]
    for _ in range(length):
        nxt = []
        for prefix, prob in frontier:
            state = engine.prefill([Candidate(0, 0, prompt + list(prefix))])
            dist = engine.distributions(state.next_logits, params)[0]
            for token in torch.nonzero(dist).flatten().tolist():
                p = prob * float(dist[token])
                if token in engine.eos_ids:
                    out[prefix] = out.get(prefix, 0.0) + p
                else:
                    nxt.append(((*prefix, token), p))
        frontier = nxt
    for prefix, prob in frontier:
        out[prefix] = out.get(prefix, 0.0) + prob
    return out


def test_whole_sequence_distribution_equals_the_target():
    # top_k=2 and 2 new tokens: at most 4 sequences, so the target's sequence
    # distribution is enumerated exactly. 6000 independent requests (own seeds); TV
    # mean ≤ ½·sqrt(4/6000) ≈ 0.013, tolerance 0.04 (3×).
    handle = load_model(TARGET)
    engine = DecodingEngine(handle)
    params = SamplingParams(temperature=1.0, top_k=2, max_new_tokens=2)
    prompt = engine.encode("<|user|> why is the sun red </s> <|assistant|>")
    exact = _exact_sequences(engine, prompt, params, 2)
    draws = 6000
    requests = [
        Request(conversation="why is the sun red", prompt_ids=prompt, params=params, seed=s)
        for s in range(draws)
    ]
    # A prompt-steered draft: same weights, another prompt — it agrees with the target
    # only partly, so both acceptance and rejection paths are exercised.
    draft = PromptSteeredDraft("red blue green")
    requests = [
        Request(
            conversation=[{"role": "user", "content": "why is the sun red"}],
            prompt_ids=prompt,
            params=params,
            seed=s,
        )
        for s in range(draws)
    ]
    results = SpeculativeSampling(draft=draft, num_draft_tokens=2).run(engine, requests)
    counts: dict[tuple, int] = {}
    for result in results:
        counts[tuple(result.token_ids)] = counts.get(tuple(result.token_ids), 0) + 1
    assert set(counts) <= set(exact)
    tv = 0.5 * sum(abs(counts.get(s, 0) / draws - p) for s, p in exact.items())
    assert tv < 0.04, (tv, exact, counts)
    assert results[0].stats.acceptance_rate > 0 or any(
        r.stats.draft_tokens_accepted for r in results
    )


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
