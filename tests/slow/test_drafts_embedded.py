"""A short real distillation of SmolLM2-135M-Instruct (slow tier): the draft trains,
loads with its restricted head, and speculative sampling with it stays lossless."""

from __future__ import annotations

import pytest

from langchain_aligned import Sampling, SpeculativeSampling, generate
from langchain_aligned.drafts import DISTILL_PROMPTS, HELD_OUT_PROMPTS, distill_draft
from langchain_aligned.models import load_model
from langchain_aligned.models.restricted_head import RestrictedHead

MODEL = "smollm2-135m-instruct"


@pytest.fixture()
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGCHAIN_ALIGNED_CACHE", str(tmp_path / "cache"))


def test_a_short_distillation_of_smollm2_trains_and_stays_lossless(own_cache):
    # 8 prompts × 1 reply × 24 tokens, 2 epochs of 2 steps: about a minute here. A
    # cut's first steps fall fast (a 6-layer cut: 16.8 → 11.7 nats in 3 steps at this
    # learning rate), so a 20 % fall over 4 steps is a wide margin.
    report = distill_draft(
        MODEL,
        4,
        prompts=DISTILL_PROMPTS[:8],
        replies_per_prompt=1,
        max_new_tokens=24,
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        head_tokens=4096,
        progress=False,
    )
    assert len(report.losses) == 4
    assert report.losses[-1] < 0.8 * report.losses[0]
    draft = load_model(report.folder)
    assert isinstance(draft.model.get_output_embeddings(), RestrictedHead)
    assert draft.vocab_size == load_model(MODEL).vocab_size
    # Lossless: greedy speculative sampling with the distilled draft is greedy
    # decoding of the target, token for token.
    kwargs = dict(temperature=0, max_new_tokens=24, dtype="float32")
    questions = list(HELD_OUT_PROMPTS[:2])
    plain = generate(MODEL, questions, strategy=Sampling(), **kwargs)
    spec = generate(
        MODEL,
        questions,
        strategy=SpeculativeSampling(draft=report.folder, num_draft_tokens=3),
        **kwargs,
    )
    assert [r.token_ids for r in spec] == [r.token_ids for r in plain]
    assert all(r.stats.draft_tokens_proposed > 0 for r in spec)
