"""Drafts for the speculative strategies, made from the target itself.

:func:`distill_draft` cuts a small draft from a target (its first k layers, shared
embeddings and head) and trains it by distillation on the target's own replies; the
result is a safetensors folder cached per machine, usable as ``draft=`` of
``SpeculativeSampling`` and ``RewardShiftedSampling`` on every engine that runs them.

Framework-free: torch and transformers only.
"""

from .distill import DistillConfig, DistillReport, distill_draft, init_draft
from .prompts import DISTILL_PROMPTS, HELD_OUT_PROMPTS

__all__ = [
    "DISTILL_PROMPTS",
    "HELD_OUT_PROMPTS",
    "DistillConfig",
    "DistillReport",
    "distill_draft",
    "init_draft",
]
