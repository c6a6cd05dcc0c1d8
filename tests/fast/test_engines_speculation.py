"""SpeculativeSampling mapped to vLLM's own speculative decoding: the settings, the
errors and the statistics read back from vLLM's streams (the engine itself is tested
in tests/vllm/test_vllm_speculation.py)."""

from __future__ import annotations

import pytest

from langchain_aligned import (
    AlignedChatModel,
    PromptSteeredDraft,
    RewardShiftedSampling,
    SpeculativeSampling,
)
from langchain_aligned.engines.speculation import (
    engine_settings,
    speculative_config,
    verification_steps,
)
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import embedded_model_path

MODEL = "smollm2-135m-instruct"


def test_the_strategy_adds_vllms_speculative_config():
    settings = SpeculativeSampling(draft="/drafts/small", num_draft_tokens=3).engine_settings(
        "vllm", {"tensor_parallel_size": 2}
    )
    assert settings == {
        "tensor_parallel_size": 2,
        "speculative_config": {
            "method": "draft_model",
            "model": "/drafts/small",
            "num_speculative_tokens": 3,
        },
    }
    # An embedded alias becomes the folder vLLM loads.
    assert speculative_config(MODEL, 4)["model"] == str(embedded_model_path(MODEL))
    # The same config given twice is fine, and its other keys stay; another draft or
    # γ is an error naming both.
    assert engine_settings("/drafts/small", 3, settings) == settings
    extra = {"speculative_config": {"draft_tensor_parallel_size": 1}}
    assert engine_settings("/drafts/small", 3, extra)["speculative_config"] == {
        **settings["speculative_config"],
        "draft_tensor_parallel_size": 1,
    }
    with pytest.raises(InvalidInputError, match=r"disagrees.*give the draft in one place"):
        engine_settings("/other", 3, settings)
    with pytest.raises(InvalidInputError, match="disagrees"):
        engine_settings("/drafts/small", 4, settings)


def test_drafts_vllm_cannot_load_and_engines_that_cannot_speculate_fail_early():
    with pytest.raises(InvalidInputError, match="prompt-steered draft needs engine='transformers'"):
        SpeculativeSampling(draft=PromptSteeredDraft("Be kind.")).engine_settings("vllm", None)
    with pytest.raises(InvalidInputError, match="not a loaded model"):
        SpeculativeSampling(draft=object()).engine_settings("vllm", None)
    # A server speculates as it was started: the error says how to start it.
    with pytest.raises(InvalidInputError, match=r"'openai' engine.*--speculative-config"):
        AlignedChatModel(
            engine="openai",
            base_url="http://127.0.0.1:9",
            strategy=SpeculativeSampling(draft=MODEL),
        )
    with pytest.raises(InvalidInputError, match=r"'vllm' engine.*not pluggable"):
        AlignedChatModel(engine="vllm", strategy=RewardShiftedSampling(draft=MODEL))
    # The transformers engine takes no engine settings, as before.
    assert SpeculativeSampling(draft=MODEL).engine_settings("transformers", None) == {}


@pytest.mark.parametrize(
    ("sizes", "room", "reply_length", "expected"),
    [
        # Prefill's one token, then 1 + accepted per verification of γ = 3.
        ([1, 2, 4, 1], 100, 8, [(3, 1), (3, 3), (3, 0)]),
        # An end-of-sequence token ended the reply inside the last accepted run: the
        # reply kept 5 tokens (the 6th received is the end-of-sequence token).
        ([1, 4, 1], 100, 5, [(3, 3), (3, 0)]),
        # A stop string cut the second step's run after one of its tokens.
        ([1, 4, 4], 100, 6, [(3, 3), (3, 1)]),
        # Near the length cap a step verifies no more than the reply can still take
        # (room − received − 1), and a step with room for one token verifies none.
        ([1, 4, 1], 7, 6, [(3, 3), (1, 0)]),
        ([1, 4, 2], 7, 7, [(3, 3), (1, 1)]),
        ([1, 4, 1], 6, 6, [(3, 3)]),
        ([1, 3, 1, 1], 6, 6, [(3, 2), (1, 0)]),
        ([1], 10, 1, []),
        ([], 10, 0, []),
    ],
)
def test_verification_steps_follow_the_transformers_engines_accounting(
    sizes, room, reply_length, expected
):
    steps = verification_steps(sizes, 3, room, reply_length)
    assert steps == expected
    # Invariants: 0 ≤ accepted ≤ proposed ≤ γ, and the accepted tokens are part of the
    # reply, which also holds one sampled token per step (prefill's included).
    assert all(0 <= a <= p <= 3 for p, a in steps)
    assert sum(a for _, a in steps) <= max(reply_length - 1, 0)


def test_engine_settings_that_are_not_a_dict_fail_before_anything_loads():
    from langchain_aligned import generate

    with pytest.raises(InvalidInputError, match=r"engine_kwargs=\['tensor_parallel_size'\]"):
        generate(MODEL, "hi", engine="vllm", engine_kwargs=["tensor_parallel_size"])
