"""Best-of-N: argmax of rewards, equivalence with Sampling at n=1, bad input."""

from __future__ import annotations

import pytest
from scorers import BatchCountingScorer, CountingScorer, RaisingScorer
from tiny import tiny_pair

from langchain_aligned import BestOfN, Hooks, Sampling, generate
from langchain_aligned.errors import InvalidInputError, RewardError

PAIR = tiny_pair(0)
PROMPT = "why is the sun red"


def _best_of(strategy, **kwargs):
    """The one result of ``strategy`` on PROMPT, ranked by a CountingScorer."""
    (result,) = generate(PAIR, PROMPT, strategy=strategy, reward=CountingScorer(), **kwargs)
    return result


def test_returns_the_argmax_of_candidate_rewards():
    scorer = CountingScorer()
    (result,) = generate(
        PAIR, PROMPT, strategy=BestOfN(n=6), reward=scorer, seed=2, max_new_tokens=12
    )
    stats = result.stats
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 6  # each candidate scored once
    rescored = CountingScorer().score(PROMPT, scorer.calls[0])
    assert stats.candidate_rewards == rescored
    assert stats.reward == max(rescored)
    assert result.text == scorer.calls[0][rescored.index(max(rescored))]
    assert stats.num_candidates == 6 and stats.reward_calls == 1
    assert stats.tokens_generated >= 6 * 1 and stats.tokens_returned == len(result.token_ids)


def test_n1_equals_sampling_under_one_seed():
    for seed in range(5):
        (best,) = generate(
            PAIR,
            PROMPT,
            strategy=BestOfN(n=1),
            reward=CountingScorer(),
            seed=seed,
            max_new_tokens=10,
        )
        (plain,) = generate(PAIR, PROMPT, strategy=Sampling(), seed=seed, max_new_tokens=10)
        assert best.token_ids == plain.token_ids and best.text == plain.text


def test_batch_size_does_not_change_the_result():
    kwargs = dict(reward=CountingScorer(), seed=9, max_new_tokens=10)
    (together,) = generate(PAIR, PROMPT, strategy=BestOfN(n=5), **kwargs)
    (split,) = generate(PAIR, PROMPT, strategy=BestOfN(n=5, max_batch_size=2), **kwargs)
    assert together.token_ids == split.token_ids
    assert together.stats.candidate_rewards == split.stats.candidate_rewards
    assert split.stats.prefill_passes == 3 and split.stats.peak_batch_size == 2


def test_requests_of_one_call_share_forward_passes_without_changing_replies():
    prompts = [PROMPT, "a much longer question about the colour of the evening sky", "hi"]
    kwargs = dict(strategy=BestOfN(n=3), seed=4, max_new_tokens=8)
    together = generate(PAIR, prompts, reward=CountingScorer(), **kwargs)
    alone = [generate(PAIR, p, reward=CountingScorer(), **kwargs)[0] for p in prompts]
    for shared, single in zip(together, alone, strict=True):
        # Each candidate draws from its own generator: other requests in the batch
        # change neither the replies nor their rewards nor their token counts.
        assert shared.token_ids == single.token_ids
        assert shared.stats.candidate_rewards == single.stats.candidate_rewards
        assert shared.stats.tokens_generated == single.stats.tokens_generated
    # One prefill and one decoding loop for all nine candidates, not one per request.
    assert together[0].stats.prefill_passes == 1
    assert together[0].stats.peak_batch_size == 9
    assert together[0].stats.target_forward_passes < sum(
        r.stats.target_forward_passes for r in alone
    )


def test_memory_budget_sizes_batches():
    result = _best_of(BestOfN(n=4, memory_budget_slots=60), seed=0, max_new_tokens=20)
    assert result.stats.peak_batch_size < 4


def test_repeated_runs_with_one_seed_are_identical():
    runs = [_best_of(BestOfN(n=4), seed=5, max_new_tokens=10) for _ in range(2)]
    assert runs[0].token_ids == runs[1].token_ids
    assert runs[0].stats.candidate_rewards == runs[1].stats.candidate_rewards


def test_greedy_degrades_to_one_candidate_and_says_so():
    result = _best_of(BestOfN(n=4), temperature=0, max_new_tokens=8)
    assert result.stats.num_candidates == 1
    assert "greedy" in result.stats.note


def test_winner_is_streamed_once_chosen():
    pieces = []
    hooks = Hooks(on_text=lambda i, d: pieces.append(d))
    result = _best_of(BestOfN(n=3), seed=1, max_new_tokens=10, hooks=hooks)
    assert "".join(pieces) == result.text


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.5}, {"n": True}, {"max_batch_size": 0}])
def test_bad_config_is_rejected_at_construction(kwargs):
    with pytest.raises(InvalidInputError) as info:
        BestOfN(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


def test_missing_or_failing_reward_and_recovery():
    with pytest.raises(InvalidInputError, match="reward"):
        generate(PAIR, PROMPT, strategy=BestOfN(n=2), max_new_tokens=4)
    with pytest.raises(RewardError, match="raising"):
        generate(
            PAIR, PROMPT, strategy=BestOfN(n=2), reward=RaisingScorer(), seed=0, max_new_tokens=4
        )
    # The model is still usable for the next request.
    (ok,) = generate(
        PAIR, PROMPT, strategy=BestOfN(n=2), reward=CountingScorer(), seed=0, max_new_tokens=4
    )
    assert ok.stats.num_candidates == 2


def test_requests_of_one_batch_are_scored_in_one_reward_call():
    prompts = [PROMPT, "a much longer question about the colour of the evening sky", "hi"]
    kwargs = dict(strategy=BestOfN(n=3), seed=4, max_new_tokens=8)
    scorer = BatchCountingScorer()
    together = generate(PAIR, prompts, reward=scorer, **kwargs)
    assert scorer.batches == [len(prompts)]  # one call, one item per request
    for prompt, shared in zip(prompts, together, strict=True):
        (alone,) = generate(PAIR, prompt, reward=CountingScorer(), **kwargs)
        assert shared.token_ids == alone.token_ids
        assert shared.stats.candidate_rewards == alone.stats.candidate_rewards
        assert shared.stats.reward_calls == alone.stats.reward_calls == 1


def test_a_budget_below_one_whole_candidate_is_refused():
    prompt_tokens = _best_of(BestOfN(n=1), seed=0, max_new_tokens=1).stats.prompt_tokens
    whole = prompt_tokens + 20
    with pytest.raises(
        InvalidInputError, match=rf"memory_budget_slots={whole - 1}\).*{whole} slots"
    ):
        _best_of(BestOfN(n=4, memory_budget_slots=whole - 1), seed=0, max_new_tokens=20)
    result = _best_of(BestOfN(n=4, memory_budget_slots=whole), seed=0, max_new_tokens=20)
    assert result.stats.peak_batch_size == 1
