"""``ignore_eos`` means one thing on every engine (issue 28, defect 2): the reply goes
on past an end-of-sequence token to ``max_new_tokens``, as on the transformers engine.

vLLM's own ``ignore_eos`` skips only its EOS check, not ``stop_token_ids``: an engine
that always sent the EOS ids there would stop at EOS anyway. These tests read vLLM's
own stop rule (``check_stop``) and run the strategies end to end, in process and on a
server.
"""

from __future__ import annotations

import pytest

from langchain_aligned import BestOfN, Sampling
from langchain_aligned.decoding import SamplingParams, build_requests
from langchain_aligned.engines.select import open_engine

MODEL = "smollm2-135m-instruct"
# A question SmolLM2 answers in a few tokens, so its greedy reply reaches EOS well
# inside max_new_tokens (asserted below, so the test cannot pass vacuously).
SHORT = ["Answer with one word only: is the sky blue?"]
LENGTH = 48


def vllm_stops(engine, params: SamplingParams, token: int) -> bool:
    """Whether vLLM's scheduler stops a request of ``params`` that just sampled
    ``token``, by vLLM's own rule."""
    from vllm.v1.core.sched.utils import check_stop
    from vllm.v1.request import Request

    vllm_params = engine.sampling_params(params, seed=0, max_tokens=params.max_new_tokens)
    # What vLLM's input processor does with every request: its EOS rule.
    eos = engine.tokenizer.eos_token_id
    vllm_params.update_from_generation_config({}, eos)
    request = Request(
        "r", prompt_token_ids=[1, 2, 3], sampling_params=vllm_params, pooling_params=None
    )
    request.append_output_token_ids(token)
    return check_stop(request, max_model_len=2048)


def test_vllm_stops_at_every_eos_id_unless_ignore_eos(vllm_engine):
    assert vllm_engine.eos_ids
    for eos in vllm_engine.eos_ids:
        assert vllm_stops(vllm_engine, SamplingParams(max_new_tokens=8), eos)
        assert not vllm_stops(vllm_engine, SamplingParams(max_new_tokens=8, ignore_eos=True), eos)


def decode_past_eos(engine, strategy):
    """Greedy replies with and without ``ignore_eos`` through the public strategies."""
    out = {}
    for ignore in (False, True):
        params = SamplingParams(temperature=0.0, max_new_tokens=LENGTH, ignore_eos=ignore)
        requests = build_requests(engine, SHORT, params, seed=0)
        (out[ignore],) = strategy.run(
            engine, requests, reward=None if isinstance(strategy, Sampling) else Words()
        )
    return out


class Words:
    name = "words"

    def score(self, conversation, completions):
        return [float(len(set(text.split()))) for text in completions]


def check_same_rule_as_transformers(engine):
    transformers = open_engine(MODEL, "transformers")
    for strategy in (Sampling(), BestOfN(n=2)):
        ours = decode_past_eos(engine, strategy)
        reference = decode_past_eos(transformers, strategy)
        # Without ignore_eos the reply ends at EOS, early: the prompt does reach EOS.
        assert ours[False].finish_reason == "stop"
        assert ours[False].stats.tokens_generated < LENGTH
        # With it, the reply goes on to the length cap, EOS ids inside it, as on the
        # transformers engine.
        assert reference[True].finish_reason == "length"
        assert ours[True].finish_reason == "length"
        assert ours[True].stats.tokens_generated == LENGTH
        assert len(ours[True].token_ids) == LENGTH
        assert set(ours[True].token_ids) & set(engine.eos_ids)


def test_ignore_eos_decodes_to_the_length_cap_in_process(vllm_engine):
    check_same_rule_as_transformers(vllm_engine)


def test_ignore_eos_decodes_to_the_length_cap_on_a_server(vllm_server):
    check_same_rule_as_transformers(open_engine(MODEL, "openai", {"base_url": vllm_server}))


@pytest.mark.parametrize("ignore", [False, True])
def test_the_server_is_sent_the_same_stop_ids(vllm_server, vllm_engine, ignore):
    server = open_engine(MODEL, "openai", {"base_url": vllm_server})
    params = SamplingParams(max_new_tokens=8, ignore_eos=ignore)
    body = server.payload([1, 2], params, seed=0, max_tokens=8)
    assert body["stop_token_ids"] == list(vllm_engine.sampling_params(params, 0, 8).stop_token_ids)
    assert body["ignore_eos"] is ignore
