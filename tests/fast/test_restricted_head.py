"""A restricted output head: its logits, its loading, and exact speculative sampling
with a draft whose head keeps half the vocabulary."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from laws import ContextLaw, chi_square_pvalue, noisy_copy, product_law
from tiny import tiny_model, tiny_tokenizer

from langchain_aligned import SpeculativeSampling
from langchain_aligned.decoding import SamplingParams, build_requests, engine_for
from langchain_aligned.decoding.params import warp
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import load_model
from langchain_aligned.models.restricted_head import (
    HEAD_TOKENS_FILE,
    RestrictedHead,
    restrict_head,
)


def test_kept_tokens_have_the_full_heads_logits_and_the_others_none():
    model = tiny_model(0)
    hidden = torch.randn(2, 3, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    full = model.lm_head(hidden)  # [2, 3, vocab]
    kept = [3, 7, 8, 20]
    head = RestrictedHead(model.lm_head, kept)
    logits = head(hidden)
    assert logits.shape == full.shape
    torch.testing.assert_close(logits[..., kept], full[..., kept])
    others = [t for t in range(full.shape[-1]) if t not in kept]
    assert torch.isneginf(logits[..., others]).all()
    with pytest.raises(InvalidInputError, match="head tokens must be ids"):
        RestrictedHead(model.lm_head, [full.shape[-1]])


def test_a_folder_with_head_tokens_loads_restricted(tmp_path):
    model, tokenizer = tiny_model(2), tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert not isinstance(load_model(str(tmp_path)).model.get_output_embeddings(), RestrictedHead)
    (tmp_path / HEAD_TOKENS_FILE).write_text(json.dumps([1, 2, 3]))
    from langchain_aligned.models.loading import clear_model_cache

    clear_model_cache()
    head = load_model(str(tmp_path)).model.get_output_embeddings()
    assert isinstance(head, RestrictedHead) and head.weight.shape[0] == 3


def test_speculative_sampling_stays_exact_with_a_restricted_draft_head():
    # The draft keeps the even token ids only: its proposals never hold an odd token,
    # so every odd token of a reply came from a recovered or bonus token. The replies
    # still follow the target's law exactly (chi-square against the law computed by
    # enumeration; p > 1e-3 fails a correct sampler 0.1 % of the time, and the seeds
    # are fixed). Drawing the recovered token from the draft's support instead, or
    # renormalising p over the kept tokens, removes the odd tokens and fails at once.
    base = tiny_model(0)
    tokenizer = tiny_tokenizer()
    target = load_model((base, tokenizer))
    draft_model = noisy_copy(base, 0.04, 11)
    kept = list(range(0, base.config.vocab_size, 2))
    restrict_head(draft_model, kept)
    params = SamplingParams(temperature=0.9, top_k=3, max_new_tokens=3)
    engine = engine_for(target)
    prompts = build_requests(engine, ["why is the sun red", "hello world"], params, seed=0)
    requests = [dataclasses.replace(r, seed=s) for s in range(1500) for r in prompts]
    results = SpeculativeSampling(draft=(draft_model, tokenizer), num_draft_tokens=2).run(
        engine, requests
    )
    for index, prompt in enumerate(prompts):
        law = ContextLaw(engine, prompt.prompt_ids)
        exact = product_law(
            lambda prefix, t=law: warp(t.logits(prefix), params),
            params.max_new_tokens,
            engine.eos_ids,
        )
        replies = [r.token_ids for r in results[index :: len(prompts)]]
        assert chi_square_pvalue(replies, exact) > 1e-3
    tokens = {t for r in results for t in r.token_ids}
    assert any(t % 2 for t in tokens)  # reached only through recovered / bonus tokens
    steps = [a for r in results for a in r.stats.acceptance_per_step]
    assert 0.0 in steps and 1.0 in steps  # the draft was both overruled and accepted
