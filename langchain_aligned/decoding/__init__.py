"""Decoding: the shared engine and one module per strategy (no LangChain here)."""

from .base import AlignmentStats, Hooks, Request, Result, RoundStats, Strategy, score_texts
from .best_of_n import BestOfN
from .drafts import PromptSteeredDraft
from .engine import Candidate, DecodeCancelled, DecodeState, DecodingEngine, EngineCounters
from .generate import build_requests, engine_for, generate
from .params import SamplingParams
from .reward_shifted_sampling import RewardShiftedSampling
from .sampling import Sampling
from .speculative_rejection import SpeculativeRejection
from .speculative_sampling import SpeculativeSampling

__all__ = [
    "AlignmentStats",
    "BestOfN",
    "Candidate",
    "DecodeCancelled",
    "DecodeState",
    "DecodingEngine",
    "EngineCounters",
    "Hooks",
    "PromptSteeredDraft",
    "Request",
    "Result",
    "RewardShiftedSampling",
    "RoundStats",
    "Sampling",
    "SamplingParams",
    "SpeculativeRejection",
    "SpeculativeSampling",
    "Strategy",
    "build_requests",
    "engine_for",
    "generate",
    "score_texts",
]
