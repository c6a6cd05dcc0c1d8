"""Sampling parameters and the logits → token functions."""

from __future__ import annotations

import math

import pytest
import torch

from langchain_aligned.decoding.params import (
    SamplingParams,
    derive_seed,
    draw_uniforms,
    make_generator,
    sample_from,
    warp,
)
from langchain_aligned.errors import AlignedError, InvalidInputError


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": -0.1}, "temperature=-0.1"),
        ({"temperature": math.nan}, "temperature=nan"),
        ({"top_p": 0.0}, "top_p=0.0"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"top_k": -1}, "top_k=-1"),
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"stop": ("",)}, "stop="),
    ],
)
def test_bad_values_are_rejected_at_construction(kwargs, needle):
    with pytest.raises(InvalidInputError) as info:
        SamplingParams(**kwargs)
    assert needle in str(info.value)
    assert isinstance(info.value, AlignedError) and isinstance(info.value, ValueError)


def test_single_stop_string_becomes_a_tuple():
    assert SamplingParams(stop="END").stop == ("END",)


def test_greedy_is_one_hot_argmax_and_masks_padded_ids():
    logits = torch.tensor([[0.0, 3.0, 1.0, 9.0]])
    dist = warp(logits, SamplingParams(temperature=0), vocab_size=3)
    assert dist.tolist() == [[0.0, 1.0, 0.0, 0.0]]


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top_k = warp(logits, SamplingParams(top_k=2))
    torch.testing.assert_close(top_k, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    # top_p=0.7: 0.5 alone is below 0.7, 0.5+0.3 crosses it → keep two tokens.
    top_p = warp(logits, SamplingParams(top_p=0.7))
    torch.testing.assert_close(top_p, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    # temperature 2 flattens: p ∝ sqrt(p)
    flat = warp(logits, SamplingParams(temperature=2.0))
    expected = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).sqrt()
    torch.testing.assert_close(flat, expected / expected.sum())


def test_inverse_cdf_sampling_matches_the_distribution():
    # 200k draws; the standard error of each frequency is ≤ sqrt(0.25/2e5) ≈ 0.0011,
    # so 0.005 (≈ 4.5 σ) makes a false failure practically impossible.
    p = torch.tensor([0.1, 0.0, 0.6, 0.3])
    generator = make_generator(0)
    uniforms = torch.rand(200_000, generator=generator)
    tokens = sample_from(p.expand(200_000, 4), uniforms)
    freq = torch.bincount(tokens, minlength=4).float() / 200_000
    assert freq[1] == 0  # zero-probability tokens are never drawn
    torch.testing.assert_close(freq, p, atol=0.005, rtol=0)


def test_sample_from_edges_never_pick_zero_mass_tokens():
    p = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    tokens = sample_from(p, torch.tensor([0.0, 1.0]))
    assert tokens.tolist() == [1, 1]


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, 0) == derive_seed(1, 0)
    seeds = {derive_seed(1, i) for i in range(1000)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    a = draw_uniforms([make_generator(derive_seed(5, i)) for i in range(3)])
    b = draw_uniforms([make_generator(derive_seed(5, i)) for i in range(3)])
    assert torch.equal(a, b)
