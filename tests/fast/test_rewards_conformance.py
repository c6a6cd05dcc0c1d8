"""Every scorer honours the RewardScorer protocol (shape, partial/empty text,
determinism, threads, async)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from tiny import tiny_model, tiny_pair, tiny_reward_model, tiny_tokenizer

import rewards


class _FakeChat:
    """A duck-typed chat model that rates by answer length."""

    def invoke(self, messages):
        text = messages[-1][1]
        return type("Reply", (), {"content": f"Rating: {min(len(text) % 11, 10)}/10"})()


def _scorers():
    pair = tiny_pair(0)
    encoder = (tiny_model(1).model, tiny_tokenizer())
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
            },
        },
    }
    base = [
        rewards.FunctionScorer(lambda c, texts: [float(len(t)) for t in texts], name="length"),
        rewards.RegexScorer(r"\bcat\b"),
        rewards.LengthScorer(min_words=2, max_words=6),
        rewards.JSONSchemaScorer({"type": "object"}),
        rewards.ToolCallScorer([tool]),
        rewards.SentimentScorer(),
        rewards.LikelihoodScorer(pair),
        rewards.LLMJudgeScorer(pair),
        rewards.LLMJudgeScorer(pair, mode="rating"),
        rewards.EmbeddingSimilarityScorer(encoder=encoder),
        rewards.RewardModelScorer(tiny_reward_model()),
        rewards.LangChainJudgeScorer(_FakeChat()),
    ]
    return [
        *base,
        rewards.WeightedScorer({base[0]: 0.1, base[1]: 1.0}, normalization="zscore"),
        rewards.CachedScorer(base[2]),
    ]


SCORERS = _scorers()
COMPLETIONS = [
    "the cat sat on the mat",
    "hello world the",
    "",
    '{"a": 1',
    '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>',
]
CONVERSATIONS = [
    "why is the sun red",
    [{"role": "system", "content": "be good"}, {"role": "user", "content": "hello"}],
]


@pytest.mark.parametrize("scorer", SCORERS, ids=lambda s: s.name)
def test_protocol(scorer):
    for conversation in CONVERSATIONS:
        scores = scorer.score(conversation, COMPLETIONS)
        assert len(scores) == len(COMPLETIONS) and all(isinstance(s, float) for s in scores)
        assert scorer.score(conversation, COMPLETIONS) == scores  # deterministic
        assert scorer.score(conversation, []) == []
        assert scorer.score_batch([(conversation, COMPLETIONS[:2])]) == [
            scorer.score(conversation, COMPLETIONS[:2])
        ]
    expected = scorer.score(CONVERSATIONS[0], COMPLETIONS)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(scorer.score(CONVERSATIONS[0], COMPLETIONS)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4
    assert asyncio.run(scorer.ascore(CONVERSATIONS[0], COMPLETIONS)) == expected
    assert isinstance(scorer.name, str) and scorer.name


@pytest.mark.parametrize("scorer", SCORERS, ids=lambda s: s.name)
def test_score_batch_gives_each_item_its_scores_alone(scorer):
    # Several conversations, uneven items (one empty): a scorer that encodes every
    # item's texts together must still give each item exactly its own scores, and a
    # normalising one must normalise within each item, not across the batch.
    items = [
        (CONVERSATIONS[0], COMPLETIONS[:3]),
        (CONVERSATIONS[1], []),
        (CONVERSATIONS[1], COMPLETIONS[1:]),
        (CONVERSATIONS[0], COMPLETIONS[3:]),
    ]
    together = scorer.score_batch(items)
    alone = [scorer.score(conversation, texts) for conversation, texts in items]
    assert [len(values) for values in together] == [len(texts) for _, texts in items]
    for batched, single in zip(together, alone, strict=True):
        # Texts padded in another batch differ in the last float digits only.
        assert batched == pytest.approx(single, abs=1e-5)
