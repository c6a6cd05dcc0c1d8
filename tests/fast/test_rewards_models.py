"""Model-backed scorers on tiny in-process models: RewardModelScorer heads and
truncation, likelihood agreement with the engine, judge probabilities, load errors."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_pair, tiny_reward_model

import rewards
from langchain_aligned.decoding import DecodingEngine
from langchain_aligned.models import load_model, render_chat


def test_reward_model_scores_match_a_direct_forward_pass():
    model, tokenizer = tiny_reward_model()
    scorer = rewards.RewardModelScorer((model, tokenizer), max_tokens_per_batch=16)
    texts = ["the cat sat", "hello world the cat sat on the mat", ""]
    scores = scorer.score("why is the sun red", texts)
    for text, score in zip(texts, scores, strict=True):
        formatted = scorer.format(tokenizer, "why is the sun red", text)
        ids = tokenizer(formatted, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            expected = model(**ids).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-5)


def test_reward_model_head_selection_and_bad_ids():
    model, tokenizer = tiny_reward_model()
    with pytest.raises(rewards.InvalidScorerConfig, match="head=3"):
        rewards.RewardModelScorer((model, tokenizer), head=3).score("q", ["a"])
    with pytest.raises(rewards.InvalidScorerConfig, match="'helpfulness'"):
        rewards.RewardModelScorer((model, tokenizer), head="helpfulness").score("q", ["a"])
    with pytest.raises(rewards.RewardScorerError, match="no-such/reward-model"):
        rewards.RewardModelScorer("no-such/reward-model").score("q", ["a"])


def test_likelihood_is_the_mean_token_logprob():
    pair = tiny_pair(0)
    scorer = rewards.LikelihoodScorer(pair)
    score = scorer.score("hello", ["the cat sat", ""])
    handle = load_model(pair)
    engine = DecodingEngine(handle)
    prompt = engine.encode(render_chat(handle, [{"role": "user", "content": "hello"}]))
    cont = handle.tokenizer("the cat sat", add_special_tokens=False)["input_ids"]
    expected = engine.score_continuations([prompt], [cont])[0].mean().item()
    assert score[0] == pytest.approx(expected, abs=1e-5)
    assert score[1] == scorer.empty_score


def test_judge_returns_probabilities_and_validates_config():
    scores = rewards.LLMJudgeScorer(tiny_pair(0)).score("q", ["yes", "no", "the cat"])
    assert all(0.0 <= s <= 1.0 for s in scores)
    with pytest.raises(rewards.InvalidScorerConfig, match="mode"):
        rewards.LLMJudgeScorer(mode="vibes")
    with pytest.raises(rewards.InvalidScorerConfig, match=r"\{answer\}"):
        rewards.LLMJudgeScorer(template="{question} only")


def test_model_scorers_load_lazily():
    scorer = rewards.LikelihoodScorer("no-such/model-anywhere")
    assert scorer._handle is None  # nothing loaded at construction
    with pytest.raises(rewards.RewardScorerError, match="no-such/model-anywhere"):
        scorer.score("q", ["a"])
