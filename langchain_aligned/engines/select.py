"""Which engine an ``engine=`` name asks for, built once per process and settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInputError
from ..models.loading import load_model
from .base import ReplyEngine
from .transformers import engine_for

__all__ = ["ENGINE_NAMES", "open_engine"]

ENGINE_NAMES = ("transformers", "vllm", "openai")
"""``"transformers"``: this library's batched engine in process (every strategy);
``"vllm"``: vLLM in process; ``"openai"``: a vLLM or other OpenAI-compatible server
(``engine_kwargs={"base_url": ...}``). The vLLM engines run Sampling, Best-of-N and
Speculative Rejection."""


def open_engine(
    model: Any,
    engine: str = "transformers",
    engine_kwargs: Mapping[str, Any] | None = None,
    load_options: Mapping[str, Any] | None = None,
) -> ReplyEngine:
    """The engine named ``engine`` for ``model``.

    Args:
        model: what :func:`~langchain_aligned.models.load_model` accepts (the vLLM
            engines need an id, a folder or an embedded alias).
        engine: one of :data:`ENGINE_NAMES`.
        engine_kwargs: ``vllm.LLM`` arguments for ``"vllm"``; the server's settings
            for ``"openai"`` (:class:`~langchain_aligned.engines.server.ServerSettings`).
        load_options: ``load_model`` options for ``"transformers"`` (device, dtype, …).

    Raises:
        InvalidInputError: an unknown engine name, or settings the engine does not take.
    """
    if engine == "transformers":
        if engine_kwargs:
            raise InvalidInputError(
                f"engine_kwargs={dict(engine_kwargs)!r} are for engine='vllm' or "
                "engine='openai'; the transformers engine takes model_kwargs (load_model options)"
            )
        return engine_for(load_model(model, **dict(load_options or {})))
    if engine == "vllm":
        from .vllm_local import check_engine_kwargs, vllm_engine

        return vllm_engine(model, check_engine_kwargs(engine_kwargs))
    if engine == "openai":
        from .server import server_engine

        return server_engine(model, engine_kwargs)
    raise InvalidInputError(
        f"engine={engine!r} is not an engine; use one of {', '.join(map(repr, ENGINE_NAMES))}"
    )
