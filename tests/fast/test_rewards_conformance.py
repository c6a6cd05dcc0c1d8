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
