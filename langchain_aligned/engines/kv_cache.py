"""How a transformers model takes and returns its KV cache, across transformers
releases (the keyword was renamed in 5.24)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

__all__ = ["cache_keyword", "output_cache"]


def _transformers_names_cache() -> bool:
    """Whether the installed transformers calls the KV cache ``cache`` (not ``past_key_values``)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}


def cache_keyword(model: Any) -> str:
    """The keyword under which ``model.forward`` takes its KV cache.

    transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache`` (and
    the output field with it). From 5.24 on the old name still works but warns (a
    ``FutureWarning``: removed in 5.40) and so does reading ``out.past_key_values``
    (a logged deprecation); releases before it
    (4.57 … 5.23, including the 5.16.1 … 5.19 range vLLM pins) know only
    ``past_key_values`` and would silently drop a ``cache`` keyword into ``**kwargs``,
    decoding every step without its KV cache. So the name is read off the model's own
    signature (which also covers remote-code models), falling back on the installed
    transformers' name when the signature only has ``**kwargs``.
    """
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    if "cache" in parameters:
        return "cache"
    if "past_key_values" in parameters:
        return "past_key_values"
    return "cache" if _transformers_names_cache() else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a forward pass returned (under either name), or None."""
    # ``keys()`` lists the fields that are set without going through transformers'
    # backward-compatible renaming (whose old-name lookups log a deprecation).
    keys = out.keys() if callable(getattr(out, "keys", None)) else ()
    for name in ("cache", "past_key_values"):
        if name in keys:
            return getattr(out, name)
    return None
