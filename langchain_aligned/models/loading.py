"""Load a causal language model and its tokenizer into a :class:`ModelHandle`.

``load_model`` accepts every way a user may name a model — a Hugging Face id, a local
folder, a ``.gguf`` file, an embedded alias, an already-loaded ``(model, tokenizer)``
pair, or a handle — and returns one :class:`ModelHandle`. Loaded weights are cached
per process (thread-safe), so chat models, strategies and reward scorers that name
the same source share one copy of the weights.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rewards import hardware
from rewards.hardware import quiet_short_load

from ..errors import InvalidInputError, ModelLoadError
from .embedded import EMBEDDED_MODELS, embedded_model_path
from .gguf_tokens import apply_gguf_token_flags
from .restricted_head import apply_saved_head

__all__ = [
    "ModelHandle",
    "ModelSource",
    "clear_model_cache",
    "load_model",
    "model_location",
    "quiet_short_load",
    "remote_handle",
    "reply_end_ids",
    "resolve_device",
    "resolve_dtype",
]

ModelSource = Any
"""Anything :func:`load_model` accepts (str, path, pair, or :class:`ModelHandle`)."""


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded causal LM with its tokenizer, ready for the decoding engine."""

    model: Any
    """The ``transformers`` causal LM (in eval mode)."""
    tokenizer: Any
    """Its tokenizer (a fast tokenizer; left padding is applied by the engine)."""
    name: str
    """Human-readable source name (alias, id, path or class name)."""
    device: torch.device
    """Device of the input embeddings, where input ids must be placed."""
    dtype: torch.dtype
    """Floating-point dtype of the weights."""
    eos_token_ids: frozenset[int] = field(default_factory=frozenset)
    """Every token id that ends a reply (tokenizer EOS plus generation-config EOS)."""
    pad_token_id: int = 0
    """Id fed into padding slots (masked out, so its value never matters)."""
    context_length: int | None = None
    """Maximum positions the model supports, when the config states it."""

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def vocab_size(self) -> int:
        """Size of the token vocabulary shared by tokenizer and logits.

        Embedding matrices are often padded past the tokenizer's vocabulary (to a
        multiple of 64, say); only ids the tokenizer can produce are real tokens.
        """
        return len(self.tokenizer)

    @property
    def logits_size(self) -> int:
        """Width of the model's output logits (may exceed :attr:`vocab_size`)."""
        head = self.model.get_output_embeddings()
        # A restricted head (models.restricted_head) keeps fewer rows than logits.
        return int(getattr(head, "vocab", None) or head.weight.shape[0])

    @property
    def kv_bytes_per_slot(self) -> int:
        """Bytes of one KV-cache slot (one position of one row): the keys and values of
        every layer, ``2 · layers · KV heads · head dimension · bytes per element``
        (sliding-window layers are counted in full, so this is an upper bound)."""
        config = self.model.config.get_text_config()
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        element = torch.finfo(self.dtype).bits // 8
        return int(2 * config.num_hidden_layers * heads * head_dim * element)


_CACHE: dict[tuple[Any, ...], ModelHandle] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}


def clear_model_cache() -> None:
    """Forget every cached model (the weights are freed once nothing else holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _KEY_LOCKS.clear()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` → CUDA when present, else Apple MPS, else CPU
    (:func:`rewards.hardware.resolve_device`, raising this package's error)."""
    return hardware.resolve_device(device, error=InvalidInputError)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` → bf16 where the hardware runs it natively, else fp32
    (:func:`rewards.hardware.resolve_dtype`, raising this package's error)."""
    return hardware.resolve_dtype(dtype, device, error=InvalidInputError)


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    return reply_end_ids(tokenizer, getattr(model, "generation_config", None))


def reply_end_ids(tokenizer: Any, generation_config: Any = None) -> frozenset[int]:
    """Every token id that ends a reply: the tokenizer's EOS, the generation config's
    EOS ids, and the end-of-turn token of the common chat formats."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, list | tuple):
        ids.update(int(e) for e in eos)
    # ChatML models end a turn with <|im_end|>; some GGUF conversions leave the
    # tokenizer's EOS at <|endoftext|>, so add the end-of-turn token explicitly.
    for token in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        unk = getattr(tokenizer, "unk_token_id", None)
        if isinstance(token_id, int) and token_id >= 0 and token_id != unk:
            ids.add(token_id)
    return frozenset(ids)


def _make_handle(model: Any, tokenizer: Any, name: str) -> ModelHandle:
    if not callable(getattr(model, "forward", None)) or not callable(
        getattr(model, "get_output_embeddings", None)
    ):
        raise InvalidInputError(
            f"{type(model).__name__} is not a causal language model; pass a transformers "
            "*ForCausalLM model (and its tokenizer) or a model id"
        )
    if not callable(getattr(tokenizer, "encode", None)):
        raise InvalidInputError(
            f"{type(tokenizer).__name__} is not a tokenizer; pass (model, tokenizer)"
        )
    model.eval()
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = next(iter(sorted(eos)), 0)
    config = model.config
    text_config = getattr(config, "get_text_config", lambda: config)()
    context = getattr(text_config, "max_position_embeddings", None)
    embeddings = model.get_input_embeddings()
    return ModelHandle(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=embeddings.weight.device,
        dtype=embeddings.weight.dtype,
        eos_token_ids=eos,
        pad_token_id=int(pad),
        context_length=int(context) if context else None,
    )


def remote_handle(
    model: Any, tokenizer: Any, name: str, *, context_length: int | None, location: str
) -> ModelHandle:
    """The handle of a model whose weights another engine holds (vLLM in process, a
    server): its tokenizer, reply-ending ids and context; ``model`` is the engine's
    object (the identity recorded log-probabilities are keyed by)."""
    generation_config = None
    if Path(location).is_dir():
        with contextlib.suppress(Exception):
            from transformers import GenerationConfig

            generation_config = GenerationConfig.from_pretrained(location)
    eos = reply_end_ids(tokenizer, generation_config)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = next(iter(sorted(eos)), 0)
    return ModelHandle(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=torch.device("cpu"),
        dtype=torch.float32,
        eos_token_ids=eos,
        pad_token_id=int(pad),
        context_length=context_length,
    )


def model_location(source: ModelSource) -> str:
    """Where an engine that loads weights itself (vLLM) finds ``source``: the folder of
    an embedded alias, else the Hugging Face id or path as given.

    Raises:
        InvalidInputError: ``source`` is a loaded model: another engine cannot use
            weights this process already holds; pass their id or folder.
    """
    if isinstance(source, Path):
        source = str(source)
    if not isinstance(source, str) or not source.strip():
        raise InvalidInputError(
            f"model={source!r}: the vLLM engines load the weights themselves, so pass a "
            "Hugging Face id, a local folder or an embedded alias "
            f"({', '.join(sorted(EMBEDDED_MODELS))}), not a loaded model"
        )
    if source in EMBEDDED_MODELS:
        return str(embedded_model_path(source))
    return source


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def load_model(
    source: ModelSource,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
    quantization_config: Any = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> ModelHandle:
    """Load (or fetch from the per-process cache) a causal LM and its tokenizer.

    Args:
        source: a Hugging Face id (``"HuggingFaceTB/SmolLM2-1.7B-Instruct"``), a local
            folder with safetensors weights, a ``.gguf`` file, an embedded alias
            (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``), an already-loaded
            ``(model, tokenizer)`` pair, or a :class:`ModelHandle`.
        device: ``"auto"`` picks CUDA when present, else CPU. Ignored when
            ``device_map`` is given (accelerate then places the weights).
        dtype: ``"auto"`` picks bf16 where the hardware runs it natively, else fp32.
        device_map: passed to ``from_pretrained`` (accelerate), e.g. ``"auto"`` to
            spread a large model over several GPUs.
        max_memory: per-device memory caps for ``device_map``.
        quantization_config: a transformers quantization config (bitsandbytes, …).
        trust_remote_code: run model code shipped with a hub repository. Off unless
            the caller turns it on.
        **kwargs: passed to ``AutoModelForCausalLM.from_pretrained``.

    Raises:
        ModelLoadError: the source cannot be found or loaded (names the source).
        ModelNotInstalledError: an embedded alias whose package is missing (prints
            the install command).
    """
    if isinstance(source, ModelHandle):
        return source
    if isinstance(source, tuple):
        if len(source) != 2:
            raise InvalidInputError(
                f"A loaded model must be passed as a (model, tokenizer) pair, got a tuple of {len(source)}"
            )
        model, tokenizer = source
        key: tuple[Any, ...] = ("pair", id(model), id(tokenizer))
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is not None and cached.model is model:
                return cached
        handle = _make_handle(model, tokenizer, type(model).__name__)
        with _CACHE_LOCK:
            _CACHE[key] = handle
        return handle
    if isinstance(source, Path):
        source = str(source)
    if not isinstance(source, str) or not source.strip():
        raise InvalidInputError(
            f"model={source!r} is not a model source; pass a Hugging Face id, a local folder, "
            "a .gguf file, an embedded alias "
            f"({', '.join(sorted(EMBEDDED_MODELS))}) or a (model, tokenizer) pair"
        )
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    key = (
        source,
        str(resolved_device) if device_map is None else None,
        str(resolved_dtype),
        _freeze(device_map),
        _freeze(max_memory),
        repr(quantization_config) if quantization_config is not None else None,
        trust_remote_code,
        _freeze(kwargs),
    )
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    # One lock per key: two threads asking for the same model load it once, while
    # threads asking for different models load in parallel.
    with key_lock:
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        handle = _load_uncached(
            source,
            device=resolved_device,
            dtype=resolved_dtype,
            device_map=device_map,
            max_memory=max_memory,
            quantization_config=quantization_config,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )
        with _CACHE_LOCK:
            _CACHE[key] = handle
    return handle


def _load_uncached(
    source: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    device_map: Any,
    max_memory: Any,
    quantization_config: Any,
    trust_remote_code: bool,
    **kwargs: Any,
) -> ModelHandle:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = source
    path_kwargs: dict[str, Any] = {}
    location = source
    if source in EMBEDDED_MODELS:
        location = str(embedded_model_path(source))
    elif source.lower().endswith(".gguf"):
        gguf = Path(source).expanduser()
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file {source!r} does not exist")
        location = str(gguf.parent)
        path_kwargs["gguf_file"] = gguf.name
    elif Path(source).expanduser().is_dir():
        location = str(Path(source).expanduser())
        # Local folders load safetensors only: a pickled .bin can execute code.
        kwargs.setdefault("use_safetensors", True)
    elif os.path.sep in source and not _looks_like_hub_id(source):
        raise ModelLoadError(
            f"Model source {source!r} is neither an existing local folder or .gguf file nor "
            "a Hugging Face id (owner/name). Check the path."
        )

    load_kwargs: dict[str, Any] = dict(kwargs)
    load_kwargs.update(path_kwargs)
    load_kwargs["dtype"] = dtype
    load_kwargs["trust_remote_code"] = trust_remote_code
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    if max_memory is not None:
        load_kwargs["max_memory"] = max_memory
    if quantization_config is not None:
        load_kwargs["quantization_config"] = quantization_config
    try:
        with quiet_short_load(None if path_kwargs else location):
            tokenizer = AutoTokenizer.from_pretrained(
                location,
                trust_remote_code=trust_remote_code,
                **path_kwargs,
            )
            model = AutoModelForCausalLM.from_pretrained(location, **load_kwargs)
            if path_kwargs:
                apply_gguf_token_flags(tokenizer, Path(location) / path_kwargs["gguf_file"])
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        hint = (
            "the Hugging Face hub is unreachable (offline mode or no network) or the id is wrong"
            if not Path(location).exists()
            else "the folder does not hold a loadable causal LM (safetensors weights + tokenizer)"
        )
        raise ModelLoadError(
            f"Could not load model {source!r}: {hint}."
            + (" HF_HUB_OFFLINE is set." if offline else "")
            + f" Underlying error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if Path(location).is_dir():
        # A draft saved with a restricted output head (drafts.distill_draft).
        apply_saved_head(model, location)
    if device_map is None and quantization_config is None:
        model.to(device)  # type: ignore[arg-type]
    return _make_handle(model, tokenizer, name)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))
