"""Exceptions raised by ``langchain_aligned``.

Every error this package raises derives from :class:`AlignedError`, so callers can
catch the whole family with one ``except``. Errors about a bad argument also derive
from :class:`ValueError` (and lookup failures from :class:`LookupError`) so code
written against the standard library's conventions keeps working.
"""

from __future__ import annotations

__all__ = [
    "AlignedError",
    "ContextLengthError",
    "EngineError",
    "EngineUnavailableError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotInstalledError",
    "RewardError",
    "VocabularyMismatchError",
]


class AlignedError(Exception):
    """Root of every error raised by ``langchain_aligned``."""


class InvalidInputError(AlignedError, ValueError):
    """An argument or message had a value this library cannot use.

    The message always names the bad value and says what would be accepted.
    """


class ModelLoadError(AlignedError, OSError):
    """A model source could not be resolved or loaded."""


class ModelNotInstalledError(ModelLoadError):
    """An embedded model alias whose PyPI package is not installed.

    The message contains the exact ``pip install`` command that fixes it.
    """


class ContextLengthError(InvalidInputError):
    """A prompt does not fit the model's context window (both lengths are named)."""


class VocabularyMismatchError(InvalidInputError):
    """Models that must share a vocabulary (draft, reference, target) do not."""


class RewardError(AlignedError, RuntimeError):
    """A reward scorer failed while a strategy was scoring candidates."""


class EngineError(AlignedError, RuntimeError):
    """A decoding engine (vLLM in process, or a server) failed or refused a request.

    The message names the engine (and a server's URL) and what it answered.
    """


class EngineUnavailableError(EngineError, ConnectionError):
    """A server engine could not be reached (refused, timed out, or not ready), after
    the retries that were safe."""
