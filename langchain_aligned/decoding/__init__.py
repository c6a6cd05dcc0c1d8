"""Decoding: the shared engine and one module per strategy (no LangChain here)."""

from .base import AlignmentStats, Hooks, Request, Result, RoundStats, Strategy, score_texts
from .engine import Candidate, DecodeCancelled, DecodeState, DecodingEngine, EngineCounters
from .generate import build_requests, engine_for, generate
from .params import SamplingParams
from .sampling import Sampling

__all__ = [
    "AlignmentStats",
    "Candidate",
    "DecodeCancelled",
    "DecodeState",
    "DecodingEngine",
    "EngineCounters",
    "Hooks",
    "Request",
    "Result",
    "RoundStats",
    "Sampling",
    "SamplingParams",
    "Strategy",
    "build_requests",
    "engine_for",
    "generate",
    "score_texts",
]
