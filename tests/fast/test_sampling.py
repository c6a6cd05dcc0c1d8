"""The Sampling strategy and the framework-free ``generate`` entry point."""

from __future__ import annotations

import pytest
from tiny import tiny_pair

from langchain_aligned import Hooks, Sampling, generate
from langchain_aligned.decoding import DecodeCancelled
from langchain_aligned.errors import InvalidInputError, RewardError

PAIR = tiny_pair(0)
QUESTIONS = ["hello world", "why is the sun red", [{"role": "user", "content": "what"}]]


def test_seeded_generate_is_reproducible_and_independent_of_batching():
    batched = generate(PAIR, QUESTIONS, seed=11, max_new_tokens=12)
    again = generate(PAIR, QUESTIONS, seed=11, max_new_tokens=12)
    assert [r.token_ids for r in batched] == [r.token_ids for r in again]
    alone = generate(PAIR, QUESTIONS[1], seed=11, max_new_tokens=12)
    assert alone[0].token_ids == batched[1].token_ids


def test_stats_count_the_work():
    (result,) = generate(PAIR, "hello world", seed=1, max_new_tokens=7)
    stats = result.stats
    assert stats.strategy == "sampling"
    assert stats.tokens_returned == len(result.token_ids) == stats.tokens_generated
    assert stats.prefill_passes == 1
    # One prefill, then one forward per token fed back: every returned token is fed
    # unless it was the last one before the length cap (an EOS is never fed).
    fed = len(result.token_ids) - (result.finish_reason == "length")
    assert stats.target_forward_passes == 1 + fed
    assert stats.prompt_tokens > 0 and stats.seed == 1
    assert stats.to_dict()["acceptance_rate"] is None


def test_streamed_deltas_add_up_to_the_reply():
    pieces: dict[int, list[str]] = {0: [], 1: []}
    hooks = Hooks(on_text=lambda request, delta: pieces[request].append(delta))
    results = generate(PAIR, QUESTIONS[:2], seed=4, max_new_tokens=15, hooks=hooks)
    for i, result in enumerate(results):
        assert "".join(pieces[i]) == result.text


def test_cancellation_stops_decoding():
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(DecodeCancelled):
        generate(PAIR, "hello", seed=0, max_new_tokens=50, hooks=Hooks(should_stop=should_stop))
    # The model is still usable afterwards.
    assert generate(PAIR, "hello", seed=0, max_new_tokens=3)[0].token_ids


class _BadScorer:
    name = "bad"

    def __init__(self, scores):
        self.scores = scores

    def score(self, conversation, completions):
        return self.scores


@pytest.mark.parametrize(("scores", "needle"), [([float("nan")], "nan"), ([1.0, 2.0], "2 scores")])
def test_bad_reward_output_names_the_scorer(scores, needle):
    with pytest.raises(RewardError) as info:
        generate(PAIR, "hello", seed=0, max_new_tokens=3, reward=_BadScorer(scores))
    assert "bad" in str(info.value) and needle in str(info.value)


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match="strategy="):
        generate(PAIR, "hello", strategy="best")
    with pytest.raises(InvalidInputError, match="empty"):
        generate(PAIR, [])
    with pytest.raises(InvalidInputError, match="temperature=-1"):
        generate(PAIR, "hello", temperature=-1)
    with pytest.raises(InvalidInputError, match="'robot'"):
        generate(PAIR, [{"role": "robot", "content": "x"}])
    assert Sampling().name == "sampling"
