"""Strategy.run: one entry point that checks its arguments and hands over to decode."""

from __future__ import annotations

from typing import ClassVar

import pytest
from scorers import CountingScorer
from tiny import tiny_pair, tiny_tokenizer

from langchain_aligned import (
    BestOfN,
    RewardShiftedSampling,
    Sampling,
    SpeculativeRejection,
    SpeculativeSampling,
    generate,
)
from langchain_aligned.decoding import AlignmentStats, Hooks, Result, Strategy
from langchain_aligned.decoding.text import decode
from langchain_aligned.errors import InvalidInputError


class Recording(Strategy):
    """Records what decode() receives and returns one result per request."""

    name: ClassVar[str] = "recording"

    def __init__(self, needs_reward: bool = False) -> None:
        self.needs_reward = needs_reward  # type: ignore[misc]
        self.calls: list[tuple] = []

    def decode(self, engine, requests, reward, hooks):
        self.calls.append((engine, list(requests), reward, hooks))
        return [Result(str(r), [], "stop", AlignmentStats(strategy=self.name)) for r in requests]


def test_run_hands_decode_its_arguments_with_hooks_filled_in():
    strategy, engine, scorer = Recording(), object(), CountingScorer()
    results = strategy.run(engine, ["a", "b"], reward=scorer)
    ((got_engine, requests, reward, hooks),) = strategy.calls
    assert got_engine is engine and requests == ["a", "b"] and reward is scorer
    # No hooks given: decode gets empty ones, never None.
    assert isinstance(hooks, Hooks) and hooks.on_text is hooks.on_event is None
    assert [r.text for r in results] == ["a", "b"]
    mine = Hooks(on_text=lambda i, d: None)
    strategy.run(engine, ["c"], hooks=mine)
    assert strategy.calls[-1][3] is mine


@pytest.mark.parametrize("reward", [None, "not a scorer", 3])
def test_run_rejects_a_missing_reward_before_decoding(reward):
    strategy = Recording(needs_reward=True)
    with pytest.raises(InvalidInputError, match="reward="):
        strategy.run(object(), ["a"], reward=reward)
    assert strategy.calls == []
    Recording(needs_reward=False).run(object(), ["a"], reward=reward)


def test_a_strategy_that_overrides_run_keeps_working():
    class OldStyle(Strategy):
        def run(self, engine, requests, *, reward=None, hooks=None):
            return [Result("old", [], "stop", AlignmentStats(strategy="old")) for _ in requests]

    assert [r.text for r in OldStyle().run(object(), [1, 2])] == ["old", "old"]


def test_a_strategy_without_an_algorithm_says_so():
    class Empty(Strategy):
        pass

    with pytest.raises(NotImplementedError, match="Empty implements neither"):
        Empty().run(object(), [])


def test_score_together_accounts_each_request_and_names_a_bad_reply():
    import time

    from scorers import BatchCountingScorer

    from langchain_aligned.decoding.base import RewardCall, score_together
    from langchain_aligned.errors import RewardError

    class Slow(BatchCountingScorer):
        def score_batch(self, items):
            time.sleep(0.2)
            return super().score_batch(items)

    scorer = Slow()
    first, second, empty = (AlignmentStats(strategy="x") for _ in range(3))
    calls = [
        RewardCall("q", ["a b", "c"], first),
        RewardCall("q", [], empty),
        RewardCall("r", ["a", "b", "c", "d", "e", "f"], second),
    ]
    values = score_together(scorer, calls)
    assert values == [scorer.score("q", ["a b", "c"]), [], scorer.score("r", list("abcdef"))]
    assert scorer.batches == [2]  # the empty request is not sent
    assert (first.reward_calls, second.reward_calls, empty.reward_calls) == (1, 1, 0)
    assert (first.reward_texts_scored, second.reward_texts_scored) == (2, 6)
    # The call's seconds are shared in proportion to texts: 2 : 6.
    assert second.scoring_seconds == pytest.approx(3 * first.scoring_seconds)
    assert first.scoring_seconds + second.scoring_seconds >= 0.2

    class Short(BatchCountingScorer):
        def score_batch(self, items):
            return super().score_batch(items)[:1]

    with pytest.raises(RewardError, match="batch-counting returned 1 score lists for 2"):
        score_together(Short(), [calls[0], calls[2]])


# ---------------------------------------------------------------- what a result counts
# Tokens generated and tokens returned mean one thing for every strategy (glossary of
# langchain_aligned.decoding): defects 3 and 4 of issue 28.

PAIR = tiny_pair(0)
DRAFT = tiny_pair(1)
STRATEGIES = {
    "sampling": Sampling(),
    "best_of_n": BestOfN(n=3),
    "speculative_rejection": SpeculativeRejection(n=4, decision_tokens=3),
    "speculative_sampling": SpeculativeSampling(draft=DRAFT, num_draft_tokens=3),
    "reward_shifted_sampling": RewardShiftedSampling(
        draft=DRAFT, draft_reference=tiny_pair(2), num_draft_tokens=2
    ),
}
# Questions and seeds whose tiny-model replies end every way: end-of-sequence, the
# stop string (a word of the tiny vocabulary, so one token) and the length cap.
QUESTIONS = ["why is the sun red", "hello world", "what is a good answer", "the cat sat on"]
SEEDS = range(4)


def _results(strategy, **options):
    return [
        result
        for seed in SEEDS
        for result in generate(
            PAIR,
            QUESTIONS,
            strategy=strategy,
            reward=CountingScorer(),
            seed=seed,
            temperature=1.0,
            max_new_tokens=16,
            **options,
        )
    ]


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_replys_ids_counts_and_text_agree(name):
    results = _results(STRATEGIES[name], stop=("the", "."))
    tokenizer = tiny_tokenizer()
    reasons = set()
    for result in results:
        # The stop string is not part of the reply: neither its text nor its tokens.
        # The text may keep what came before the stop string in the token it starts
        # in — with this word-level tokenizer only the space between two words.
        decoded = decode(tokenizer, result.token_ids)
        assert result.text.startswith(decoded)
        assert result.text[len(decoded) :].strip() == ""
        assert result.stats.tokens_returned == len(result.token_ids)
        assert not any(word in ("the", ".") for word in result.text.split())
        reasons.add(result.finish_reason)
    assert reasons == {"stop", "length"}


@pytest.mark.parametrize("name", STRATEGIES)
def test_tokens_generated_counts_each_replys_ending_token(name):
    strategy = STRATEGIES[name]
    for result in _results(strategy, stop=("the",)):
        stats = result.stats
        assert stats.tokens_generated >= stats.tokens_returned
        if stats.num_candidates == 1:
            # One candidate: its reply's tokens, plus the end-of-sequence token or the
            # one-token stop string that ended it.
            ended = result.finish_reason == "stop"
            assert stats.tokens_generated == stats.tokens_returned + ended


def test_the_same_seeded_reply_counts_the_same_whatever_the_strategy():
    # One candidate each, the same generator: the same reply and the same counts.
    for options in ({}, {"stop": ("the",)}):
        alone = _results(Sampling(), **options)
        for other in (BestOfN(n=1), SpeculativeRejection(n=1)):
            for a, b in zip(alone, _results(other, **options), strict=True):
                assert (a.token_ids, a.text, a.finish_reason) == (
                    b.token_ids,
                    b.text,
                    b.finish_reason,
                )
                assert a.stats.tokens_generated == b.stats.tokens_generated
                assert a.stats.tokens_returned == b.stats.tokens_returned
