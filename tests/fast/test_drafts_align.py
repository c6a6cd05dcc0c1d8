"""align_draft on tiny random models: on-policy pairs, DPO through TRL, the saved
folder, the cache, given pairs, the restricted head, and the three-model SSS set-up."""

from __future__ import annotations

import inspect
import json
import math
import random
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from tiny import WORDS, tiny_pair

import rewards
from langchain_aligned import RewardShiftedSampling, generate
from langchain_aligned.drafts import AlignConfig, PreferencePair, align_draft, distill_draft
from langchain_aligned.drafts.align import on_policy_pairs, preference_rows
from langchain_aligned.drafts.distill import weights_fingerprint
from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import load_model
from langchain_aligned.models.restricted_head import HEAD_TOKENS_FILE, RestrictedHead

_WORDS = [w for w in WORDS if w.isalpha()]
_RNG = random.Random(1)
PROMPTS = tuple(" ".join(_RNG.choice(_WORDS) for _ in range(4)) for _ in range(32))
HELD_OUT = [" ".join(_RNG.choice(_WORDS) for _ in range(4)) for _ in range(16)]
# The alignment reward: how often the reply says "cat" (rare under a random draft:
# about one word in sixty), so best-of-6 pairs carry a clear preference.
CATS = rewards.FunctionScorer(
    lambda conversation, text: float(text.split().count("cat")), per_item=True, name="cats"
)
SETTINGS = dict(
    prompts=PROMPTS,
    samples_per_prompt=6,
    max_new_tokens=12,
    epochs=4,
    batch_size=8,
    learning_rate=1e-2,
    progress=False,
)


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGCHAIN_ALIGNED_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def draft():
    return load_model(tiny_pair(5, layers=2))


def cat_count(model, seeds=range(100, 106), strategy=None):
    """ "cat"s in sampled replies to the held-out prompts (6 seeds × 16 prompts)."""
    conversations = [[{"role": "user", "content": p}] for p in HELD_OUT]
    total = 0
    for seed in seeds:
        for result in generate(
            model, conversations, strategy=strategy, max_new_tokens=12, seed=seed
        ):
            total += result.text.split().count("cat")
    return total


def poisson_margin(a, b):
    """Two standard deviations of the difference of two Poisson counts (a, b): a rise
    beyond it is not sampling noise (the counts are sums of many rare events)."""
    return 2 * math.sqrt(a + b)


def test_aligned_draft_says_what_the_reward_prefers_and_the_input_stays(draft):
    before = weights_fingerprint(draft)
    report = align_draft(draft, CATS, **SETTINGS)
    assert weights_fingerprint(draft) == before  # the input is the draft reference
    assert report.reward == "FunctionScorer(cats)" and not report.cached
    assert report.pairs > 8 and report.mean_reward_gap > 0
    assert report.losses[-1] < report.losses[0] and report.losses[0] == pytest.approx(
        math.log(2), abs=1e-3
    )  # DPO starts at log 2: the policy equals its reference
    assert report.reward_accuracy[-1] >= 0.75
    aligned = load_model(report.folder)
    reference_cats, aligned_cats = cat_count(draft), cat_count(aligned)
    assert aligned_cats - reference_cats > poisson_margin(reference_cats, aligned_cats)
    saved = json.loads((Path(report.folder) / "align.json").read_text())
    assert saved["pairs"] == report.pairs and saved["losses"] == report.losses


def test_the_cache_is_reused_and_keyed_by_settings_and_reward(draft):
    settings = {**SETTINGS, "epochs": 1}
    first = align_draft(draft, CATS, **settings)
    weights = Path(first.folder) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = align_draft(draft, CATS, **settings)
    assert again.cached and again.folder == first.folder
    assert weights.stat().st_mtime_ns == stamp
    assert align_draft(draft, CATS, **{**settings, "beta": 0.5}).folder != first.folder
    # A scorer with the same name and repr that prefers something else is another
    # draft: the cache is keyed by the pairs, not by what a scorer calls itself.
    dogs = rewards.FunctionScorer(
        lambda c, t: float(t.split().count("dog")), per_item=True, name="cats"
    )
    assert (dogs.name, repr(dogs)) == (CATS.name, repr(CATS))
    other = align_draft(draft, dogs, **settings)
    assert other.folder != first.folder and not other.cached


def test_on_policy_pairs_are_the_best_and_worst_samples_as_sampled(draft):
    config = AlignConfig(prompts=PROMPTS[:8], samples_per_prompt=4, max_new_tokens=12)
    pairs = on_policy_pairs(draft, CATS, config)
    assert pairs
    for pair in pairs:
        assert pair.chosen_reward == pair.chosen.split().count("cat")
        assert pair.chosen_reward > pair.rejected_reward
        # The ids are the sampled tokens; their text is the reply.
        text_ids = [t for t in pair.chosen_ids if t not in draft.eos_token_ids]
        assert draft.tokenizer.decode(text_ids, skip_special_tokens=True) == pair.chosen
    # The same settings sample the same pairs (seeded per request).
    assert on_policy_pairs(draft, CATS, config) == pairs


def test_given_pairs_raise_the_chosen_replies_likelihood(draft):
    pairs = [
        {"prompt": p, "chosen": "the cat sat on the mat", "rejected": "a dog ran"}
        for p in PROMPTS[:16]
    ]
    report = align_draft(draft, pairs=pairs, **SETTINGS)
    assert report.reward is None and report.pairs == 16
    aligned = load_model(report.folder)
    rows = preference_rows(draft, [PreferencePair(**pairs[0])])

    def margin(model):
        """log π(chosen | x) − log π(rejected | x) for the first pair."""
        values = []
        for reply in (rows["chosen_ids"][0], rows["rejected_ids"][0]):
            ids = torch.tensor([rows["prompt_ids"][0] + reply])
            logp = torch.log_softmax(model.model(input_ids=ids).logits[0, :-1], -1)
            start = len(rows["prompt_ids"][0]) - 1
            values.append(logp[start:].gather(-1, ids[0, start + 1 :, None]).sum())
        return float(values[0] - values[1])

    with torch.no_grad():
        assert margin(aligned) > margin(draft) + 5.0  # nats; DPO's loss fell near 0


def test_a_restricted_head_draft_stays_restricted():
    target = load_model(tiny_pair(3, layers=4))
    distilled = distill_draft(
        target,
        num_layers=2,
        prompts=PROMPTS[:8],
        replies_per_prompt=1,
        max_new_tokens=8,
        epochs=1,
        head_tokens=24,
        progress=False,
    )
    draft = load_model(distilled.folder)
    # The kept tokens may not hold "cat": this reward prefers longer replies instead.
    words = rewards.FunctionScorer(lambda c, t: float(len(t.split())), per_item=True)
    report = align_draft(draft, words, **{**SETTINGS, "epochs": 1})
    kept = set(distilled.head_tokens)
    pairs = on_policy_pairs(draft, words, AlignConfig(prompts=PROMPTS[:8], max_new_tokens=12))
    assert pairs and all(set(p.chosen_ids) | set(p.rejected_ids) <= kept for p in pairs)
    folder = Path(report.folder)
    assert json.loads((folder / HEAD_TOKENS_FILE).read_text()) == distilled.head_tokens
    aligned = load_model(report.folder)
    assert isinstance(aligned.model.get_output_embeddings(), RestrictedHead)


def test_the_callers_random_state_is_kept(draft):
    import numpy as np

    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    align_draft(draft, CATS, **{**SETTINGS, "epochs": 1})
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_the_three_model_set_up_shifts_the_target_toward_the_reward():
    """The paper's set-up: target, its distilled draft (the draft reference), and the
    aligned copy of that draft, through RewardShiftedSampling unchanged."""
    target = load_model(tiny_pair(3, layers=4))
    reference = distill_draft(
        target,
        num_layers=2,
        prompts=PROMPTS,
        replies_per_prompt=2,
        max_new_tokens=12,
        epochs=4,
        learning_rate=3e-3,
        progress=False,
    )
    aligned = align_draft(reference.folder, CATS, **SETTINGS)
    sss = RewardShiftedSampling(
        draft=aligned.folder, draft_reference=reference.folder, num_draft_tokens=3
    )
    plain_cats = cat_count(target)
    sss_cats = cat_count(target, strategy=sss)
    assert sss_cats - plain_cats > poisson_margin(plain_cats, sss_cats)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: align_draft(d, progress=False), "exactly one of reward="),
        (
            lambda d: align_draft(d, CATS, pairs=[{"prompt": "a", "chosen": "b", "rejected": "c"}]),
            "exactly one of reward=",
        ),
        (lambda d: align_draft(d, pairs="the cat"), "non-empty list"),
        (lambda d: align_draft(d, pairs=[{"prompt": "a", "chosen": "b"}]), "lacks ['rejected']"),
        (
            lambda d: align_draft(d, pairs=[{"prompt": "a", "chosen": "b", "rejected": "b"}]),
            "the same text",
        ),
        (lambda d: align_draft(d, object()), "not a RewardScorer"),
        (lambda d: align_draft(d, CATS, betta=0.1), "unknown settings ['betta']"),
        (lambda d: align_draft(d, CATS, beta=0), "beta=0"),
        (lambda d: align_draft(d, CATS, samples_per_prompt=1), "samples_per_prompt=1"),
        (lambda d: align_draft(d, CATS, min_reward_gap=-1), "min_reward_gap=-1"),
        (
            lambda d: align_draft(
                d,
                rewards.FunctionScorer(lambda c, t: 1.0, per_item=True, name="flat"),
                **{**SETTINGS, "prompts": PROMPTS[:2]},
            ),
            "no preference pair",
        ),
    ],
)
def test_bad_input_is_named(draft, call, message):
    with pytest.raises(InvalidInputError, match=None) as error:
        call(draft)
    assert message in str(error.value)


# For every AlignConfig field, a valid value that is not its default.
NOT_DEFAULT = {
    "prompts": ("hello world", "the cat"),
    "samples_per_prompt": 3,
    "max_new_tokens": 5,
    "temperature": 0.5,
    "min_reward_gap": 0.5,
    "beta": 0.5,
    "epochs": 1,
    "batch_size": 3,
    "learning_rate": 1e-3,
    "train_embeddings": True,
    "seed": 7,
}
ONE_PAIR = [{"prompt": "a", "chosen": "the cat", "rejected": "a dog"}]
# (whether the config sets the field, whether the call gives it, and which value wins):
# a given argument wins, even with the default's value; a config's field is never
# replaced by a keyword the call left out.
RESOLUTIONS = {
    "config-only": ("other", None, "other"),
    "given-default-over-config": ("other", "default", "default"),
    "given-over-defaults": (None, "other", "other"),
    "neither": (None, None, "default"),
}


@pytest.mark.parametrize("resolution", sorted(RESOLUTIONS))
@pytest.mark.parametrize("name", sorted(NOT_DEFAULT))
def test_align_settings_come_from_the_config_unless_given(draft, monkeypatch, name, resolution):
    from langchain_aligned.drafts import align as align_module

    values = {"default": getattr(AlignConfig(), name), "other": NOT_DEFAULT[name]}
    in_config, in_call, winner = RESOLUTIONS[resolution]
    config = AlignConfig(**({} if in_config is None else {name: values[in_config]}))
    given = {} if in_call is None else {name: values[in_call]}
    used: list[AlignConfig] = []
    # The call stops where it first uses its settings: the aligned draft's folder.
    monkeypatch.setattr(align_module, "_aligned_folder", lambda _h, c, _p: used.append(c) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        align_draft(draft, pairs=ONE_PAIR, config=config, progress=False, **given)
    assert getattr(used[0], name) == values[winner]
    assert replace(used[0], **{name: getattr(config, name)}) == config  # the rest: config's


def test_every_align_setting_is_covered_and_has_no_keyword_default():
    assert set(NOT_DEFAULT) == {f.name for f in fields(AlignConfig)}
    signature = inspect.signature(align_draft).parameters
    assert all(signature[n].default is None for n in NOT_DEFAULT if n in signature)
