"""KV-cache budgets for the memory rule of Best-of-N and Speculative Rejection.

Both strategies take ``memory_budget_slots``: a KV-cache budget in slots (rows ×
positions; terms in the glossary of :mod:`langchain_aligned.decoding`). On one GPU the
budget is what the paper's setting fixes — the memory left for the cache — and
:func:`kv_budget_slots` turns bytes (given, or the device's free memory now) into slots.
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from ..models.loading import ModelHandle

__all__ = ["kv_budget_slots"]


def kv_budget_slots(
    handle: ModelHandle, memory_bytes: int | None = None, *, fraction: float = 0.9
) -> int:
    """The KV-cache slots ``memory_bytes`` hold for ``handle``'s model, or — without
    ``memory_bytes`` on a CUDA device — ``fraction`` of the device's free memory now
    (load the reward models first: their weights take memory too).

    Raises:
        InvalidInputError: no ``memory_bytes`` off CUDA, a non-positive amount, or a
            fraction outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise InvalidInputError(f"kv_budget_slots(fraction={fraction!r}): use a value in (0, 1]")
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
