"""KV-cache budgets for the memory rule of Best-of-N and Speculative Rejection.

Both strategies take ``memory_budget_slots``: a KV-cache budget in slots (rows ×
positions; terms in the glossary of :mod:`langchain_aligned.decoding`). On one GPU the
budget is what the paper's setting fixes — the memory left for the cache — and
:func:`kv_budget_slots` turns bytes (given, or the device's free memory now) into slots.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from ..models.loading import ModelHandle

__all__ = ["kv_budget_slots"]


def kv_budget_slots(
    handle: ModelHandle | Any, memory_bytes: int | None = None, *, fraction: float = 0.9
) -> int:
    """The KV-cache slots ``memory_bytes`` hold for ``handle``'s model, or — without
    ``memory_bytes`` on a CUDA device — ``fraction`` of the device's free memory now
    (load the reward models first: their weights take memory too).

    ``handle`` may also be an engine that allocated its own KV cache (vLLM in process:
    ``kv_capacity_slots``); then the budget is ``fraction`` of that capacity. Divide it
    by the requests decoded at once for one request's ``memory_budget_slots``.

    Raises:
        InvalidInputError: no ``memory_bytes`` off CUDA, a non-positive amount, or a
            fraction outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise InvalidInputError(f"kv_budget_slots(fraction={fraction!r}): use a value in (0, 1]")
    capacity = getattr(handle, "kv_capacity_slots", None)
    if isinstance(capacity, int):
        if memory_bytes is not None:
            raise InvalidInputError(
                "kv_budget_slots: an engine with its own KV cache has a capacity in slots; "
                "pass fraction=, not memory_bytes="
            )
        return int(capacity * fraction)
    if memory_bytes is None:
        if handle.device.type != "cuda":
            raise InvalidInputError(
                f"kv_budget_slots: the model is on {handle.device}, whose free memory is not "
                "measured; pass memory_bytes= (the bytes the KV cache may use)"
            )
        free, _total = torch.cuda.mem_get_info(handle.device)
        memory_bytes = int(free * fraction)
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) or memory_bytes <= 0:
        raise InvalidInputError(
            f"kv_budget_slots(memory_bytes={memory_bytes!r}): pass a positive number of bytes"
        )
    return memory_bytes // handle.kv_bytes_per_slot
