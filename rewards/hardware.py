"""What every model loader shares, in ``rewards`` and in the decoding library alike:
the device and dtype ``"auto"`` picks, and quiet loading of small local models.

The lowest layer (torch and transformers only); callers pass their own package's
error class, so a bad device is reported in the caller's terms.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .base import InvalidScorerConfig

if TYPE_CHECKING:  # torch is imported when a device or dtype is resolved
    import torch

__all__ = [
    "QUIET_LOAD_BYTES",
    "VLLM_CPU_DEFAULTS",
    "quiet_short_load",
    "resolve_device",
    "resolve_dtype",
]

VLLM_CPU_DEFAULTS: dict[str, object] = {
    # bf16 is about 4× slower than fp32 without AVX-512, and fp32 is what the
    # transformers engine picks on such machines (dtype="auto").
    "dtype": "float32",
    # The CPU default of 128-token blocks means prompts shorter than 128 tokens never
    # hit the prefix cache: the n candidates of a request would each prefill it.
    "block_size": 32,
    # Start-up in about 30 s instead of about 100 s (the compile cache does not reload
    # in vLLM 0.32); the compiled graph decodes about 1.3× faster.
    "enforce_eager": True,
}
"""``vllm.LLM`` settings every vLLM engine of both packages adds on a machine without
CUDA (given ones win): the decoding engine and ``rewards.VLLMRewardScorer``."""


def resolve_device(
    device: str | torch.device | None, *, error: type[Exception] = InvalidScorerConfig
) -> torch.device:
    """``"auto"`` → CUDA when present, else Apple MPS, else CPU."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise error(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc


def _cpu_supports_bf16() -> bool:
    # bf16 matmuls are only fast on CPUs with native bf16 instructions (AVX512-BF16 or
    # AMX); elsewhere they are emulated and slower than fp32.
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
"""dtype names a caller may write → torch's attribute names."""


def resolve_dtype(
    dtype: str | torch.dtype | None,
    device: torch.device,
    *,
    error: type[Exception] = InvalidScorerConfig,
) -> torch.dtype:
    """``"auto"`` → bf16 where the hardware runs it natively, else fp32."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and _cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return getattr(torch, _DTYPES[dtype.lower()])  # type: ignore[no-any-return]
    raise error(f"dtype={dtype!r} is not supported; use 'auto', 'float32', 'bfloat16' or 'float16'")


QUIET_LOAD_BYTES = 2 * 1024**3
"""Local weights up to this size load in a moment: no progress bar is shown for them."""

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_quiet_restore = False


def _is_short_load(location: str | os.PathLike[str] | None) -> bool:
    # Only a local folder whose weights are small: a hub id may download (a bar worth
    # watching) and a GGUF file is dequantised tensor by tensor (many seconds).
    if location is None:
        return False
    folder = Path(location).expanduser()
    if not folder.is_dir():
        return False
    size = sum(
        f.stat().st_size for f in folder.iterdir() if f.is_file() and f.suffix in _WEIGHT_SUFFIXES
    )
    return 0 < size <= QUIET_LOAD_BYTES


@contextlib.contextmanager
def quiet_short_load(location: str | os.PathLike[str] | None) -> Iterator[None]:
    """Hide transformers' progress bars while loading ``location``, if that is quick.

    transformers draws a "Loading weights" bar (5.x; "Loading checkpoint shards" for
    sharded checkpoints) for every ``from_pretrained``, even one that takes a fraction
    of a second. Inside this block, when ``location`` is a local folder with at most
    :data:`QUIET_LOAD_BYTES` of weights, transformers' bars are off; on leaving it the
    switch is put back as it was, so a user's own ``enable_progress_bar`` /
    ``disable_progress_bar`` choice (or ``HF_HUB_DISABLE_PROGRESS_BARS``) is untouched.
    Only transformers' own switch is flipped, never huggingface_hub's download bars.
    Nested and concurrent blocks share one switch: it is restored when the last ends.
    Loads from the hub, GGUF files and large folders keep their bars.
    """
    if not _is_short_load(location):
        yield
        return
    from transformers.utils import logging as hf_logging

    global _quiet_depth, _quiet_restore
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            _quiet_restore = hf_logging.is_progress_bar_enabled()
            if _quiet_restore:
                # Not disable_progress_bar(): it also turns off huggingface_hub's bars
                # globally, and enable_progress_bar() would turn them back on even
                # where the user had them off.
                hf_logging._tqdm_active = False
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_restore:
                hf_logging._tqdm_active = True
                _quiet_restore = False
