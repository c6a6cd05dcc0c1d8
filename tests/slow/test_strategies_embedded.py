"""Every strategy on the embedded SmolLM2-135M-Instruct (slow tier)."""

from __future__ import annotations

import rewards
from langchain_aligned import (
    BestOfN,
    PromptSteeredDraft,
    RewardShiftedSampling,
    Sampling,
    SpeculativeRejection,
    SpeculativeSampling,
    generate,
)

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["Give me one tip for sleeping better.", "How can I save money on groceries?"]


def test_speculative_rejection_decodes_fewer_tokens_than_best_of_n_on_smollm2():
    reward = rewards.LikelihoodScorer(MODEL)
    kwargs = dict(reward=reward, seed=0, max_new_tokens=32, dtype="float32")
    bon = generate(MODEL, QUESTIONS, strategy=BestOfN(n=4), **kwargs)
    spr = generate(
        MODEL,
        QUESTIONS,
        strategy=SpeculativeRejection(n=4, rejection_rate=0.5, decision_tokens=8),
        **kwargs,
    )
    assert sum(r.stats.tokens_generated for r in spr) < sum(r.stats.tokens_generated for r in bon)
    for result in spr:
        assert result.stats.prefill_passes == 1 and result.stats.rounds
        assert result.stats.reward == max(result.stats.candidate_rewards)
        assert result.text


def test_greedy_speculative_sampling_equals_greedy_decoding_on_smollm2():
    kwargs = dict(temperature=0, max_new_tokens=24, dtype="float32")
    plain = generate(MODEL, QUESTIONS, strategy=Sampling(), **kwargs)
    steered = SpeculativeSampling(
        draft=PromptSteeredDraft("Answer in one short sentence."), num_draft_tokens=4
    )
    spec = generate(MODEL, QUESTIONS, strategy=steered, **kwargs)
    assert [r.token_ids for r in spec] == [r.token_ids for r in plain]
    assert 0 < spec[0].stats.acceptance_rate <= 1


def test_reward_shifted_sampling_runs_with_prompt_steered_drafts():
    sss = RewardShiftedSampling(
        draft=PromptSteeredDraft("You are warm, kind and positive."), num_draft_tokens=4
    )
    (result,) = generate(
        MODEL, "Describe a rainy day.", strategy=sss, seed=1, max_new_tokens=24, dtype="float32"
    )
    stats = result.stats
    assert result.text and stats.draft_tokens_proposed > 0
    assert 0 <= stats.acceptance_rate <= 1
    # Every lane runs on the target's weights (prompt-steered draft and default
    # reference): three prefills, and all their passes are target passes.
    assert stats.prefill_passes == 3 and stats.draft_forward_passes == 0
    assert stats.draft_tokens_accepted <= len(result.token_ids)


def test_self_reward_costs_no_forward_pass_on_smollm2():
    # The default reward's likelihood part runs on the policy's own weights: inside
    # decoding it reads the recorded log-probs, so every forward pass of the model is a
    # decoding pass (MiniLM and VADER are other models).
    from langchain_aligned.decoding.stats import sum_stats
    from langchain_aligned.models import load_model

    handle = load_model(MODEL, dtype="float32")
    calls: list[int] = []
    hook = handle.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        for strategy in (
            BestOfN(n=4),
            SpeculativeRejection(n=4, rejection_rate=0.5, decision_tokens=8),
        ):
            calls.clear()
            results = generate(
                handle,
                QUESTIONS,
                strategy=strategy,
                reward=rewards.default_scorer(handle),
                seed=1,
                max_new_tokens=32,
            )
            assert len(calls) == sum_stats(r.stats for r in results)["target_forward_passes"]
    finally:
        hook.remove()
