"""Shared plumbing for scorers backed by a causal LM from ``langchain_aligned``."""

from __future__ import annotations

import threading
from typing import Any


class CausalLMMixin:
    """Lazily loads a causal LM through ``langchain_aligned.models.load_model``.

    The per-process model cache there means a scorer naming the same source as a chat
    model shares its weights.
    """

    model_source: Any
    load_kwargs: dict[str, Any]

    def _init_model(self, model: Any, load_kwargs: dict[str, Any]) -> None:
        self.model_source = model
        self.load_kwargs = dict(load_kwargs)
        self._handle: Any = None
        self._engine: Any = None
        self._model_lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._model_lock:
            if self._handle is None:
                from langchain_aligned.decoding.generate import engine_for
                from langchain_aligned.models import load_model

                self._handle = load_model(self.model_source, **self.load_kwargs)
                self._engine = engine_for(self._handle)
            return self._handle, self._engine
