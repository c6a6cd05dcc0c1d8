"""langchain-aligned: inference-time alignment for LangChain over local HF models.

The core (``langchain_aligned.models``, ``langchain_aligned.decoding`` and the
top-level ``rewards`` package) imports torch and transformers only. The LangChain
layer (``AlignedChatModel``, callbacks, middleware) is imported lazily, on first
access, so ``import langchain_aligned.models`` never imports LangChain.
"""

from __future__ import annotations

import importlib
from typing import Any

from .decoding import AlignmentStats, Hooks, Result, Sampling, SamplingParams, generate
from .errors import (
    AlignedError,
    ContextLengthError,
    EngineError,
    EngineUnavailableError,
    InvalidInputError,
    ModelLoadError,
    ModelNotInstalledError,
    RewardError,
    VocabularyMismatchError,
)
from .models import DEFAULT_CHAT_MODEL, ModelHandle, load_model, render_chat

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access.
_LAZY = {
    "BestOfN": "langchain_aligned.decoding.best_of_n",
    "SpeculativeRejection": "langchain_aligned.decoding.speculative_rejection",
    "SpeculativeSampling": "langchain_aligned.decoding.speculative_sampling",
    "RewardShiftedSampling": "langchain_aligned.decoding.reward_shifted_sampling",
    "PromptSteeredDraft": "langchain_aligned.decoding.drafts",
    "kv_budget_slots": "langchain_aligned.decoding.memory",
    "AlignedChatModel": "langchain_aligned.chat_models",
    "AlignmentStatsHandler": "langchain_aligned.callbacks",
    "AlignmentMiddleware": "langchain_aligned.middleware",
    "ServerSettings": "langchain_aligned.engines.server",
    "open_engine": "langchain_aligned.engines.select",
}

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "AlignedError",
    "AlignmentStats",
    "ContextLengthError",
    "EngineError",
    "EngineUnavailableError",
    "Hooks",
    "InvalidInputError",
    "ModelHandle",
    "ModelLoadError",
    "ModelNotInstalledError",
    "Result",
    "RewardError",
    "Sampling",
    "SamplingParams",
    "VocabularyMismatchError",
    "generate",
    "load_model",
    "render_chat",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_aligned' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
