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
