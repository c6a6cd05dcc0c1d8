"""Speculative Rejection: α=0 ≡ Best-of-N, fewer tokens for α>0, no re-prefill."""

from __future__ import annotations

import math

import pytest
from scorers import CountingScorer, RaisingScorer
from tiny import tiny_pair

from langchain_aligned import BestOfN, Hooks, SpeculativeRejection, generate
from langchain_aligned.errors import InvalidInputError, RewardError

PAIR = tiny_pair(0)
PROMPTS = ["why is the sun red", "hello world", "what is a good answer"]
COMMON = dict(max_new_tokens=24, top_k=20)


def _run(strategy, prompt, seed, scorer=None, **kwargs):
    return generate(
        PAIR,
        prompt,
        strategy=strategy,
        reward=scorer or CountingScorer(),
        seed=seed,
        **{**COMMON, **kwargs},
    )[0]


@pytest.mark.parametrize("seed", range(4))
def test_alpha_zero_equals_best_of_n_under_one_seed(seed):
    for prompt in PROMPTS:
        spr = _run(SpeculativeRejection(n=6, rejection_rate=0.0, decision_tokens=3), prompt, seed)
        bon = _run(BestOfN(n=6), prompt, seed)
        assert spr.token_ids == bon.token_ids and spr.text == bon.text
        assert spr.stats.reward == bon.stats.reward
        assert spr.stats.candidate_rewards == bon.stats.candidate_rewards
        assert spr.stats.tokens_generated == bon.stats.tokens_generated


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7])
def test_rejection_decodes_fewer_tokens_with_one_prefill(alpha):
    spr_tokens = bon_tokens = 0
    for seed, prompt in enumerate(PROMPTS):
        spr = _run(SpeculativeRejection(n=8, rejection_rate=alpha, decision_tokens=4), prompt, seed)
        bon = _run(BestOfN(n=8), prompt, seed)
        spr_tokens += spr.stats.tokens_generated
        bon_tokens += bon.stats.tokens_generated
        assert spr.stats.prefill_passes == 1  # survivors are selected, never re-prefilled
        assert spr.stats.tokens_generated <= bon.stats.tokens_generated
    assert spr_tokens < bon_tokens


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.7])
def test_prompts_of_one_call_share_passes_and_each_pool_runs_as_if_alone(alpha):
    # Prompts of different lengths: each pool's decision points follow its own
    # memory rule (its own prompt length), so sharing the batch changes nothing.
    prompts = [*PROMPTS, "a much longer prompt than the others, to shift the schedule"]
    strategy = SpeculativeRejection(n=5, rejection_rate=alpha, decision_tokens=3)
    together = generate(PAIR, prompts, strategy=strategy, reward=CountingScorer(), seed=7, **COMMON)
    for prompt, shared in zip(prompts, together, strict=True):
        alone = _run(strategy, prompt, 7)
        assert shared.token_ids == alone.token_ids and shared.text == alone.text
        assert shared.stats.candidate_rewards == alone.stats.candidate_rewards
        assert shared.stats.rounds == alone.stats.rounds
        assert shared.stats.tokens_generated == alone.stats.tokens_generated
        assert shared.stats.reward_calls == alone.stats.reward_calls
        # One prefill for all pools; the batch held every candidate of every prompt.
        assert shared.stats.prefill_passes == 1
        assert shared.stats.peak_batch_size == 5 * len(prompts)


def test_survivors_are_exactly_the_best_of_n_candidates():
    # Per-candidate generators: a candidate that survives every round produces the
    # same reply as the same-index candidate of Best-of-N under one seed.
    scorer = CountingScorer()
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=4), PROMPTS[0], 3, scorer
    )
    bon_scorer = CountingScorer()
    _run(BestOfN(n=8), PROMPTS[0], 3, bon_scorer)
    assert spr.text in bon_scorer.calls[0]


def test_round_statistics_add_up_and_finished_are_never_rejected():
    events = []
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=3),
        PROMPTS[0],
        1,
        hooks=Hooks(on_event=lambda name, data: events.append((name, data))),
    )
    rounds = spr.stats.rounds
    assert rounds, "expected at least one decision point"
    pool = 8
    for r in rounds:
        assert r.alive >= r.rejected
        # keep = ⌈(1 − α)·|pool|⌉ of the pool; rejections come only from alive ones.
        assert r.rejected <= pool - math.ceil(0.5 * pool)
        pool -= r.rejected
        assert r.threshold is None or r.best_reward >= r.threshold
    assert [n for n, _ in events].count("aligned.round") == len(rounds)
    assert sum(r.tokens_decoded for r in rounds) <= spr.stats.tokens_generated
    assert len(spr.stats.candidate_rewards) == 8 - sum(r.rejected for r in rounds)


def test_decision_points_follow_the_memory_rule():
    # With α = 0.5 the survivors decode until the cache budget fills again, so the
    # second decision comes at roughly twice the first decision's length.
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=4),
        PROMPTS[1],
        0,
        max_new_tokens=40,
    )
    rounds = spr.stats.rounds
    assert rounds[0].decision_token == 4
    if len(rounds) > 1:
        assert rounds[1].decision_token > rounds[0].decision_token


def test_memory_budget_mode_decides_when_the_budget_is_exceeded():
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, memory_budget_slots=8 * 12), PROMPTS[0], 0
    )
    assert spr.stats.rounds
    assert spr.stats.peak_cache_slots <= 8 * 12 + 8


def test_repeated_runs_identical_and_single_survivor_streams_live():
    a = _run(SpeculativeRejection(n=4, rejection_rate=0.7, decision_tokens=2), PROMPTS[2], 7)
    b = _run(SpeculativeRejection(n=4, rejection_rate=0.7, decision_tokens=2), PROMPTS[2], 7)
    assert a.token_ids == b.token_ids and a.stats.candidate_rewards == b.stats.candidate_rewards
    pieces = []
    c = _run(
        SpeculativeRejection(n=4, rejection_rate=0.7, decision_tokens=2),
        PROMPTS[2],
        7,
        hooks=Hooks(on_text=lambda i, d: pieces.append(d)),
    )
    assert "".join(pieces) == c.text == a.text


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n": 0}, "n=0"),
        ({"rejection_rate": 1.0}, "rejection_rate=1.0"),
        ({"rejection_rate": -0.1}, "-0.1"),
        ({"decision_tokens": 0}, "decision_tokens=0"),
    ],
)
def test_bad_config(kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        SpeculativeRejection(**kwargs)


def test_failing_reward_is_named_and_model_stays_usable():
    with pytest.raises(RewardError, match="raising"):
        _run(SpeculativeRejection(n=4, decision_tokens=2), PROMPTS[0], 0, RaisingScorer())
    assert _run(SpeculativeRejection(n=4, decision_tokens=2), PROMPTS[0], 0).text is not None


def test_decode_time_excludes_scoring_and_is_shared_equally():
    # Several prompts decode together; each gets an equal share of the decode time,
    # which excludes every reward call (slow here on purpose) of every pool.
    import time

    class SlowScorer(CountingScorer):
        def score(self, conversation, completions):
            time.sleep(0.05)
            return super().score(conversation, completions)

    start = time.perf_counter()
    results = generate(
        PAIR,
        ["why is the sun red", "hello", "what"],
        strategy=SpeculativeRejection(n=4, decision_tokens=2),
        reward=SlowScorer(),
        seed=0,
        max_new_tokens=8,
    )
    elapsed = time.perf_counter() - start
    shares = [r.stats.generation_seconds for r in results]
    assert shares[0] > 0 and shares == [shares[0]] * 3
    scoring = sum(r.stats.scoring_seconds for r in results)
    assert scoring >= 0.05 * sum(r.stats.reward_calls for r in results)
    assert sum(shares) + scoring <= elapsed
