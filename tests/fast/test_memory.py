"""``kv_budget_slots`` and ``ModelHandle.kv_bytes_per_slot``: the slots a KV-cache budget
in bytes holds, counted against the cache a real forward pass allocates."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_pair

from langchain_aligned import InvalidInputError, kv_budget_slots, load_model


def test_bytes_per_slot_is_the_size_of_one_position_of_a_real_cache():
    handle = load_model(tiny_pair(0))
    rows, positions = 3, 5
    with torch.inference_mode():
        out = handle.model(torch.zeros(rows, positions, dtype=torch.long), use_cache=True)
    cache = out.past_key_values
    layers = getattr(cache, "layers", None)
    tensors = (
        [t for layer in layers for t in (layer.keys, layer.values)]
        if layers is not None
        else [t for pair in cache for t in pair]
    )
    allocated = sum(t.numel() * t.element_size() for t in tensors)
    assert handle.kv_bytes_per_slot * rows * positions == allocated


def test_a_byte_budget_becomes_whole_slots():
    handle = load_model(tiny_pair(0))
    slot = handle.kv_bytes_per_slot
    assert kv_budget_slots(handle, 10 * slot) == 10
    assert kv_budget_slots(handle, 10 * slot + slot - 1) == 10  # whole slots only
    assert kv_budget_slots(handle, slot - 1) == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        ((), {}, "pass memory_bytes"),  # the tiny model is on the CPU
        ((0,), {}, "memory_bytes=0"),
        ((True,), {}, "memory_bytes=True"),
        ((1024,), {"fraction": 1.5}, "fraction=1.5"),
    ],
)
def test_bad_budgets_are_named(args, kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        kv_budget_slots(load_model(tiny_pair(0)), *args, **kwargs)
