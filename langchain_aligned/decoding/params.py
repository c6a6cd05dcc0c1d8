"""Sampling parameters and the pure functions that turn logits into tokens.

Logits, distributions and uniforms are defined in the glossary of
:mod:`langchain_aligned.decoding`: :func:`warp` turns logits into a distribution,
:func:`sample_from` draws a token from it with a uniform, and every candidate's
uniforms come from its own generator (:func:`make_generator`, :func:`derive_seed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..errors import InvalidInputError

__all__ = [
    "SamplingParams",
    "derive_seed",
    "draw_uniforms",
    "make_generator",
    "sample_from",
    "warp",
]


@dataclass(frozen=True)
class SamplingParams:
    """How to draw tokens, shared by every strategy.

    Raises:
        InvalidInputError: at construction, naming the bad value.
    """

    temperature: float = 1.0
    """Softmax temperature; ``0`` means greedy decoding (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens with this much mass, in (0, 1]."""
    top_k: int = 0
    """Keep only the ``top_k`` most likely tokens; ``0`` disables the filter."""
    max_new_tokens: int = 256
    """The length cap: most tokens per reply (at least 1)."""
    stop: tuple[str, ...] = field(default_factory=tuple)
    """Stop strings of any token length, matched on decoded text and trimmed from the reply."""
    ignore_eos: bool = False
    """Keep decoding past end-of-sequence tokens (benchmarks use it to fix the length)."""

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            raise InvalidInputError(f"temperature={self.temperature!r} must be a number ≥ 0")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise InvalidInputError(
                f"temperature={self.temperature!r} is invalid; use 0 for greedy decoding or a positive number"
            )
        if not isinstance(self.top_p, int | float) or not (0 < self.top_p <= 1):
            raise InvalidInputError(f"top_p={self.top_p!r} must be in (0, 1]")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidInputError(f"top_k={self.top_k!r} must be an integer ≥ 0 (0 disables it)")
        if (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int)
            or self.max_new_tokens < 1
        ):
            raise InvalidInputError(
                f"max_new_tokens={self.max_new_tokens!r} must be an integer ≥ 1"
            )
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        stop = tuple(stop)
        for item in stop:
            if not isinstance(item, str) or item == "":
                raise InvalidInputError(
                    f"stop={self.stop!r}: every stop string must be a non-empty str"
                )
        object.__setattr__(self, "stop", stop)

    @property
    def greedy(self) -> bool:
        """Whether tokens are chosen by argmax (temperature 0)."""
        return self.temperature == 0


def warp(
    logits: torch.Tensor, params: SamplingParams, vocab_size: int | None = None
) -> torch.Tensor:
    """Turn logits ``[..., vocab]`` into the distribution tokens are drawn from.

    Padded vocabulary ids (``>= vocab_size``) get probability 0. Greedy decoding
    returns the one-hot distribution of the argmax.
    """
    logits = logits.float()
    if vocab_size is not None and logits.shape[-1] > vocab_size:
        # Embedding matrices padded past the tokenizer's vocabulary produce logits for
        # ids no tokenizer can decode; they must never be drawn.
        logits = logits.clone()
        logits[..., vocab_size:] = -math.inf
    if params.greedy:
        # [..., vocab] one-hot at the argmax
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        # Keep the k largest logits; ties at the k-th value are kept too.
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if params.top_p < 1.0:
        # Sort descending, keep the smallest prefix whose mass reaches top_p (the token
        # that crosses the threshold is kept, so at least one token always survives).
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        remove_sorted = mass_before >= params.top_p
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, -math.inf)
    return logits.softmax(-1)


def sample_from(distribution: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row by inverting the cumulative distribution.

    Args:
        distribution: ``[rows, vocab]`` probabilities (rows need not be normalised).
        uniforms: ``[rows]`` draws from U(0, 1).

    Returns:
        ``[rows]`` token ids; a token with zero probability is never returned.
    """
    cdf = distribution.float().cumsum(-1)  # [rows, vocab]
    total = cdf[:, -1:]  # [rows, 1]
    threshold = uniforms.to(cdf.device, torch.float32).unsqueeze(-1) * total  # [rows, 1]
    # First index whose cumulative mass exceeds u·total; clamping to the last nonzero
    # entry guards against u·total rounding to exactly the total.
    tokens = torch.searchsorted(cdf, threshold, right=True).squeeze(-1)  # [rows]
    last_nonzero = (distribution > 0).float().cumsum(-1).argmax(-1)  # [rows]
    return torch.minimum(tokens, last_nonzero)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (uniforms are tiny; CPU keeps them portable)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed) % (2**63))
    return generator


def derive_seed(seed: int, *path: int) -> int:
    """A 63-bit seed for the generator at ``path`` under ``seed`` (candidate ``i`` of
    a request, …).

    SplitMix64 mixing keeps the generators independent; the same path always yields
    the same seed, so a candidate's tokens do not depend on which other candidates
    share its batch.
    """
    value = int(seed) & 0xFFFFFFFFFFFFFFFF
    for part in path:
        value = (value ^ (int(part) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & (
            0xFFFFFFFFFFFFFFFF
        )
        value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value = (value ^ (value >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def draw_uniforms(generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One uniform from each generator: ``[len(generators)]``."""
    if not generators:
        return torch.empty(0)
    return torch.cat([torch.rand(1, generator=g) for g in generators])
