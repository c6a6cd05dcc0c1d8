"""distill_draft on tiny random models: the draft is cut from the target, trains
towards it, is saved, loads, and is reused from the cache."""

from __future__ import annotations

import inspect
import json
import math
import random
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch
from tiny import WORDS, tiny_pair

from langchain_aligned.drafts import DistillConfig, distill_draft, init_draft
from langchain_aligned.drafts import distill as distill_module
from langchain_aligned.drafts.distill import distillation_loss, teacher_examples
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import load_model

# 32 prompts of four random words of the tiny vocabulary: the training set; two
# sentences the training set does not hold are the held-out prompts.
_WORDS = [w for w in WORDS if w.isalpha()]
_RNG = random.Random(0)
PROMPTS = tuple(" ".join(_RNG.choice(_WORDS) for _ in range(4)) for _ in range(32))
HELD_OUT = ("how is the moon ?", "they sat on a blue mat")
# A 4-layer random target (std 0.3 weights, so the context changes the next-token law)
# and a 2-layer draft; training settings small enough for the fast tier (seconds).
SETTINGS = dict(
    prompts=PROMPTS,
    replies_per_prompt=2,
    max_new_tokens=12,
    top_k=16,
    epochs=8,
    batch_size=8,
    learning_rate=3e-3,
    progress=False,
)


@pytest.fixture()
def target():
    model, tokenizer = tiny_pair(3, layers=4)
    return load_model((model, tokenizer))


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGCHAIN_ALIGNED_CACHE", str(tmp_path / "cache"))


def expected_acceptance(target, draft, prompts):
    """Mean over the target's sampled reply positions of Σ_x min(p(x), q(x)): the
    probability that speculative sampling accepts a draft token there (temperature 1)."""
    config = DistillConfig(prompts=tuple(prompts), replies_per_prompt=2, max_new_tokens=12)
    values = []
    with torch.no_grad():
        for example in teacher_examples(target, config):
            ids = torch.tensor([example.input_ids])
            span = slice(example.start - 1, len(example.input_ids) - 1)
            p = torch.softmax(target.model(input_ids=ids).logits[0, span], -1)
            q = torch.softmax(draft(input_ids=ids).logits[0, span], -1)
            values.append(torch.minimum(p, q).sum(-1))
    return float(torch.cat(values).mean())


def test_the_draft_is_the_targets_bottom_layers(target):
    draft = init_draft(target.model, 2)
    assert draft.config.num_hidden_layers == 2 and len(draft.model.layers) == 2
    assert target.model.config.num_hidden_layers == 4  # the target is unchanged
    ids = torch.tensor([[4, 10, 11, 12, 5]])
    with torch.no_grad():
        ours = draft(input_ids=ids, output_hidden_states=True).hidden_states
        theirs = target.model(input_ids=ids, output_hidden_states=True).hidden_states
    # Embeddings and the two kept layers compute exactly what the target's do.
    for layer in range(2):
        torch.testing.assert_close(ours[layer], theirs[layer])
    torch.testing.assert_close(draft.lm_head.weight, target.model.lm_head.weight)
    assert draft.lm_head.weight.data_ptr() != target.model.lm_head.weight.data_ptr()
    for bad in (0, 4, 7, 2.0, True):
        with pytest.raises(InvalidInputError, match=f"num_layers={bad!r}"):
            init_draft(target.model, bad)


def test_the_loss_is_the_cross_entropy_against_the_renormalised_top_k():
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    full = torch.log_softmax(torch.randn(3, 10, generator=torch.Generator().manual_seed(1)), -1)
    values, ids = full.topk(10, -1)
    # With K = vocabulary it is the full cross-entropy, and it is smallest (the
    # teacher's entropy) when the draft's distribution is the teacher's.
    expected = -(full.exp() * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(distillation_loss(logits, ids, values), expected)
    assert torch.all(distillation_loss(full, ids, values) <= distillation_loss(logits, ids, values))


def test_distillation_trains_towards_the_target_saves_and_is_cached(target):
    before = expected_acceptance(target, init_draft(target.model, 2), HELD_OUT)
    report = distill_draft(target, 2, **SETTINGS)
    assert not report.cached and report.examples == len(PROMPTS) * 2 and report.tokens > 0
    losses = report.losses
    assert len(losses) == 8 * 8  # 8 epochs × 64 replies / 8 per step
    # The loss falls: the last epoch's mean is below the first's by a clear margin
    # (each epoch sees the same replies; only their order changes).
    assert sum(losses[-8:]) / 8 < 0.9 * sum(losses[:8]) / 8
    # The saved folder is a model of its own sharing the target's vocabulary, and on
    # prompts it never saw it agrees with the target more than the cut draft did
    # (measured 0.573 → 0.611; deterministic: seeded replies, seeded batch order).
    draft = load_model(report.folder)
    assert draft.vocab_size == target.vocab_size
    assert draft.model.config.num_hidden_layers == 2
    after = expected_acceptance(target, draft.model, HELD_OUT)
    assert after > before + 0.02, (before, after)
    draft_path = Path(report.folder) / "distill.json"
    saved = json.loads(draft_path.read_text())
    assert saved["losses"] == losses
    # A second call finds it in the cache: same folder, no training.
    modified = draft_path.stat().st_mtime_ns
    again = distill_draft(target, 2, **SETTINGS)
    assert again.cached and again.folder == report.folder and again.losses == losses
    assert draft_path.stat().st_mtime_ns == modified
    # Other settings are another draft; training settings reuse the teacher data (the
    # same replies and top-K, so the same tokens), teacher settings do not.
    assert not report.teacher_cached
    other = distill_draft(target, 2, **{**SETTINGS, "epochs": 1})
    assert other.folder != report.folder and not other.cached
    assert other.teacher_cached and other.tokens == report.tokens
    assert not distill_draft(target, 2, **{**SETTINGS, "epochs": 1, "top_k": 8}).teacher_cached


def test_more_replies_reuse_the_rounds_already_cached(target):
    """Teacher data is cached round by round (one seed each): asking for more replies per
    prompt samples only the new rounds, and the cached rounds are the ones a fresh
    computation gives."""
    from langchain_aligned.drafts.distill import cached_teacher_examples
    from langchain_aligned.models import cache_dir

    one = DistillConfig(prompts=PROMPTS[:6], replies_per_prompt=1, max_new_tokens=8, top_k=8)
    first, cached = cached_teacher_examples(target, one)
    assert not cached
    files = {p: p.stat().st_mtime_ns for p in (cache_dir() / "teacher").glob("*.pt")}
    assert len(files) == 1
    two, cached = cached_teacher_examples(target, replace(one, replies_per_prompt=2))
    assert not cached  # round 2 was new
    new = {p: p.stat().st_mtime_ns for p in (cache_dir() / "teacher").glob("*.pt")}
    # Round 1's file is untouched and one file was added, for round 2 only.
    assert len(new) == 2 and all(new[p] == m for p, m in files.items())
    fresh = teacher_examples(target, replace(one, replies_per_prompt=2))
    assert len(two) == len(fresh) > len(first)
    for got, want in zip(two, fresh, strict=True):
        assert got.input_ids == want.input_ids and got.start == want.start
        assert torch.equal(got.top_ids, want.top_ids)
        assert torch.allclose(got.top_logprobs, want.top_logprobs)
    # The first round's replies differ from the second's (another seed), so the
    # reuse above is not of one round twice.
    assert [e.input_ids for e in two[: len(first)]] != [e.input_ids for e in two[len(first) :]]
    # Both rounds now cached.
    assert cached_teacher_examples(target, replace(one, replies_per_prompt=2))[1]


def test_bad_settings_are_named():
    with pytest.raises(InvalidInputError, match=r"epochs=0"):
        DistillConfig(epochs=0)
    with pytest.raises(InvalidInputError, match=r"temperature=0"):
        DistillConfig(temperature=0)
    with pytest.raises(InvalidInputError, match=r"prompts"):
        DistillConfig(prompts=())
    with pytest.raises(InvalidInputError, match=r"unknown settings \['epoch'\]"):
        distill_draft("unused", 2, epoch=3)


def test_a_restricted_head_keeps_the_heavy_tokens_and_loads_restricted(target):
    from langchain_aligned.models.restricted_head import RestrictedHead

    report = distill_draft(target, 2, **{**SETTINGS, "epochs": 1, "head_tokens": 20})
    kept = report.head_tokens
    # 20 tokens, every end-of-sequence and special token among them.
    assert len(kept) == 20 and set(target.eos_token_ids) <= set(kept)
    draft = load_model(report.folder)
    head = draft.model.get_output_embeddings()
    assert isinstance(head, RestrictedHead) and head.weight.shape[0] == 20
    ids = torch.tensor([[4, 10, 11, 12]])
    with torch.no_grad():
        logits = draft.model(input_ids=ids).logits[0, -1]  # [vocab]
    assert logits.shape[-1] == target.logits_size
    assert torch.isfinite(logits[kept]).all()
    outside = torch.ones_like(logits, dtype=torch.bool)
    outside[kept] = False
    assert torch.isneginf(logits[outside]).all()


def test_a_restricted_head_is_trained_as_it_decodes(target):
    """With head_tokens the loss is the restricted draft's own: its softmax over the
    kept tokens, against the teacher's top-K renormalised over the kept ones."""
    from langchain_aligned.drafts.distill import head_token_ids, train_draft
    from langchain_aligned.models.restricted_head import restrict_head

    config = DistillConfig(
        prompts=PROMPTS[:8], replies_per_prompt=1, max_new_tokens=12, top_k=16, batch_size=8
    )
    examples = teacher_examples(target, config)
    kept = head_token_ids(target, examples, 20)
    draft = init_draft(target.model, 2)
    restricted = init_draft(target.model, 2)
    restrict_head(restricted, kept)
    # The loss the restricted draft has on these examples, from its full-width logits.
    expected = []
    with torch.no_grad():
        for e in examples:
            logits = restricted(input_ids=torch.tensor([e.input_ids])).logits[0]
            span = logits[e.start - 1 : len(e.input_ids) - 1]  # [reply, vocab], −∞ off kept
            outside = ~torch.isin(e.top_ids, torch.tensor(kept))
            expected.append(
                distillation_loss(span, e.top_ids, e.top_logprobs.masked_fill(outside, -math.inf))
            )
    expected_loss = float(torch.cat(expected).mean())
    # One epoch of one batch: the recorded loss is the loss before the step.
    (loss,) = train_draft(draft, examples, replace(config, epochs=1), head_tokens=kept)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    # The full-head loss differs (the softmax spans every token): the option matters.
    (full_loss,) = train_draft(init_draft(target.model, 2), examples, replace(config, epochs=1))
    assert abs(full_loss - expected_loss) > 1e-3


# A valid value other than the default for every DistillConfig field.
OTHER_VALUES = {
    "num_layers": 3,
    "prompts": ("hello world",),
    "replies_per_prompt": 3,
    "max_new_tokens": 5,
    "temperature": 0.5,
    "top_k": 4,
    "epochs": 3,
    "batch_size": 3,
    "learning_rate": 1e-3,
    "train_embeddings": True,
    "head_tokens": 20,
    "seed": 7,
}


class _Resolved(Exception):
    """Stops distill_draft where it first uses its settings, carrying them."""


@pytest.fixture()
def settings_used(monkeypatch, target):
    """``distill_draft(target, *args, **kwargs)``'s DistillConfig, found without
    training: the call stops where it first uses it (the draft's cache folder)."""

    def stop(_handle, config):
        raise _Resolved(config)

    monkeypatch.setattr(distill_module, "draft_folder", stop)

    def call(*args, **kwargs):
        with pytest.raises(_Resolved) as stopped:
            distill_draft(target, *args, progress=False, **kwargs)
        return stopped.value.args[0]

    return call


def test_every_setting_has_an_example_and_no_keyword_default_of_its_own():
    assert set(OTHER_VALUES) == {f.name for f in fields(DistillConfig)}
    for name, parameter in inspect.signature(distill_draft).parameters.items():
        # A keyword that is a setting defaults to None: "the config's".
        assert name not in OTHER_VALUES or parameter.default is None, name


@pytest.mark.parametrize("name", sorted(OTHER_VALUES))
def test_a_setting_is_the_configs_unless_given(settings_used, name):
    """Explicit arguments override the config, even with the default's value; a
    keyword left out never does; every other setting is the config's."""
    default, other = getattr(DistillConfig(), name), OTHER_VALUES[name]
    configured = DistillConfig(**{name: other})
    for config, given, expected in (
        (configured, {}, other),  # the config alone is honoured
        (configured, {name: default}, default),  # a given value overrides it
        (None, {name: other}, other),  # over the defaults
        (None, {}, default),
    ):
        used = settings_used(config=config, **given)
        assert getattr(used, name) == expected
        assert replace(used, **{name: getattr(config or DistillConfig(), name)}) == (
            config or DistillConfig()
        )
    if name == "num_layers":  # also positional
        assert settings_used(2, config=configured).num_layers == 2
        assert settings_used(None, config=configured).num_layers == other


def test_a_config_alone_makes_a_draft_of_its_layer_count(target):
    """The issue's call: a 2-layer config on a 4-layer target trains 2 layers (the
    keyword's old default of 8 took over and failed)."""
    config = DistillConfig(
        num_layers=2, prompts=PROMPTS[:4], replies_per_prompt=1, max_new_tokens=6, top_k=8, epochs=1
    )
    report = distill_draft(target, config=config, progress=False)
    assert report.config == asdict(config)
    assert load_model(report.folder).model.config.num_hidden_layers == 2
