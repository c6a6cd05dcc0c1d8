"""Validation of scorer output and the error hierarchy."""

from __future__ import annotations

import math

import pytest

import rewards
from rewards.base import conversation_to_messages, last_user_text


@pytest.mark.parametrize(
    ("fn", "needle", "index"),
    [
        (lambda c, t: [1.0], "1 scores for 2", None),
        (lambda c, t: [1.0, math.nan], "completion 1", 1),
        (lambda c, t: [math.inf, 1.0], "completion 0", 0),
        (lambda c, t: [1.0, "x"], "non-numeric", 1),
        (lambda c, t: 1 / 0, "ZeroDivisionError", None),
    ],
)
def test_bad_scores_name_scorer_and_index(fn, needle, index):
    scorer = rewards.FunctionScorer(fn, name="broken")
    with pytest.raises(rewards.RewardScorerError) as info:
        scorer.score("q", ["a", "b"])
    assert needle in str(info.value) and "broken" in str(info.value)
    assert info.value.scorer == scorer.name and info.value.index == index
    assert isinstance(info.value, rewards.RewardsError)


def test_per_item_functions_and_string_guard():
    scorer = rewards.FunctionScorer(lambda c, text: len(text), per_item=True)
    assert scorer.score("q", ["ab", ""]) == [2.0, 0.0]
    with pytest.raises(rewards.RewardScorerError, match="not one string"):
        scorer.score("q", "ab")
    with pytest.raises(rewards.InvalidScorerConfig):
        rewards.FunctionScorer(42)


def test_conversation_helpers():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "b"},
    ]
    assert last_user_text(messages) == "b" and last_user_text("q") == "q"
    assert conversation_to_messages("q") == [{"role": "user", "content": "q"}]
    assert conversation_to_messages(messages)[1]["content"] == ""
    with pytest.raises(rewards.InvalidScorerConfig):
        conversation_to_messages(["nope"])


def test_conversion_raises_the_callers_error_and_names_the_bad_item():
    class OwnError(Exception):
        pass

    for bad, needle in (
        (42, "int"),
        ([{"content": "no role"}], "message 0"),
        ([{"role": "user", "content": [{"type": "image"}]}], "list content"),
    ):
        with pytest.raises(rewards.InvalidScorerConfig, match=needle):
            conversation_to_messages(bad)
        with pytest.raises(OwnError, match=needle):
            conversation_to_messages(bad, error=OwnError)
