"""Model runtime: load local causal LMs and render conversations (no LangChain here)."""

from .chat import ROLES, format_tool_call, normalize_messages, render_chat, tool_instructions
from .embedded import DEFAULT_CHAT_MODEL, EMBEDDED_MODELS, cache_dir, embedded_model_path
from .loading import (
    ModelHandle,
    ModelSource,
    clear_model_cache,
    load_model,
    quiet_short_load,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "EMBEDDED_MODELS",
    "ROLES",
    "ModelHandle",
    "ModelSource",
    "cache_dir",
    "clear_model_cache",
    "embedded_model_path",
    "format_tool_call",
    "load_model",
    "normalize_messages",
    "quiet_short_load",
    "render_chat",
    "resolve_device",
    "resolve_dtype",
    "tool_instructions",
]
