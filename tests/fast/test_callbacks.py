"""AlignmentStatsHandler aggregates across calls."""

from __future__ import annotations

from scorers import CountingScorer
from tiny import tiny_pair

from langchain_aligned import AlignedChatModel, AlignmentStatsHandler, SpeculativeRejection


def test_summary_aggregates_calls_rewards_and_rounds():
    handler = AlignmentStatsHandler(progress=True, total=2)
    model = AlignedChatModel(
        model=tiny_pair(0),
        strategy=SpeculativeRejection(n=6, decision_tokens=2),
        reward=CountingScorer(),
        max_tokens=16,
        seed=1,
        callbacks=[handler],
    )
    replies = [model.invoke(p) for p in ("hello world", "why is the sun red")]
    summary = handler.summary()
    handler.close()
    assert summary["calls"] == 2 and summary["strategies"] == ["speculative_rejection"]
    rewards = [r.response_metadata["alignment"]["reward"] for r in replies]
    assert summary["reward_max"] == max(rewards) and summary["reward_min"] == min(rewards)
    assert summary["tokens_generated"] == sum(
        r.response_metadata["alignment"]["tokens_generated"] for r in replies
    )
    assert summary["candidates_rejected"] == sum(
        x["rejected"] for r in replies for x in r.response_metadata["alignment"]["rounds"]
    )
    assert summary["events"].get("aligned.done") == 2
    assert summary["acceptance_rate"] is None


def test_stream_path_reaches_the_handler_and_tokens_saved_is_consistent():
    handler = AlignmentStatsHandler()
    model = AlignedChatModel(
        model=tiny_pair(0),
        strategy=SpeculativeRejection(n=4, decision_tokens=2),
        reward=CountingScorer(),
        max_tokens=16,
        seed=2,
    )
    chunks = list(model.stream("hello world", config={"callbacks": [handler]}))
    alignment = chunks[-1].response_metadata["alignment"]
    summary = handler.summary()
    assert summary["calls"] == 1 and summary["events"]["aligned.done"] == 1
    assert summary["events"]["aligned.round"] == len(alignment["rounds"])
    expected = max(
        alignment["num_candidates"] * alignment["tokens_returned"] - alignment["tokens_generated"],
        0,
    )
    assert summary["tokens_saved_vs_best_of_n"] == expected
