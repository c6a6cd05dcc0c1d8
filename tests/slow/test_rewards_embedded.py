"""The embedded scorers on real models (slow tier)."""

from __future__ import annotations

import rewards


def test_default_scorer_prefers_the_better_answer_in_80_percent_of_pairs():
    pairs = rewards.preference_pairs()
    assert len(pairs) >= 40
    assert {p["category"] for p in pairs} == {"helpfulness", "relevance", "correctness", "tone"}
    scorer = rewards.default_scorer()
    right = sum(
        better > worse
        for better, worse in (scorer.score(p["prompt"], [p["better"], p["worse"]]) for p in pairs)
    )
    assert right / len(pairs) >= 0.8, f"accuracy {right}/{len(pairs)}"


def test_embedded_scorers_handle_partial_and_empty_text():
    texts = ["Paris is the capital of", "", "The capital of France is Paris."]
    for scorer in (
        rewards.EmbeddingSimilarityScorer(),
        rewards.LikelihoodScorer(),
        rewards.LLMJudgeScorer(),
    ):
        scores = scorer.score("What is the capital of France?", texts)
        assert len(scores) == 3
    similarity = rewards.EmbeddingSimilarityScorer().score("What is the capital of France?", texts)
    assert similarity[2] > similarity[1]
