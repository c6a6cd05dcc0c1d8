"""Drafts for the speculative strategies, made from the target itself.

:func:`distill_draft` cuts a small draft from a target (its first k layers, shared
embeddings and head) and trains it by distillation on the target's own replies; the
result is a safetensors folder cached per machine, usable as ``draft=`` of
``SpeculativeSampling`` and ``RewardShiftedSampling`` on every engine that runs them.
:func:`align_draft` makes an aligned copy of a draft by DPO on preference pairs (made
on-policy under a reward scorer, or given): with the distilled draft as the draft
reference, the three models of Reward-Shifted Speculative Sampling come from one target.

Framework-free: torch and transformers (and TRL with datasets for :func:`align_draft`,
imported when it runs).
"""

from .align import AlignConfig, AlignReport, PreferencePair, align_draft
from .distill import DistillConfig, DistillReport, distill_draft, init_draft
from .prompts import DISTILL_PROMPTS, HELD_OUT_PROMPTS

__all__ = [
    "DISTILL_PROMPTS",
    "HELD_OUT_PROMPTS",
    "AlignConfig",
    "AlignReport",
    "DistillConfig",
    "DistillReport",
    "PreferencePair",
    "align_draft",
    "distill_draft",
    "init_draft",
]
