"""A GGUF file's own flags for the special tokens a tokenizer adds.

transformers converts a GGUF file's vocabulary into a tokenizer, but the conversion does
not always keep the file's ``tokenizer.ggml.add_bos_token`` (seen with transformers 5.19
on Gemma 3: the file says True, the converted tokenizer adds nothing), and a base model
prompted without its BOS token reads a different context. The file is the authority, so
its flags are applied to the converted tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLAGS = {
    "tokenizer.ggml.add_bos_token": "add_bos_token",
    "tokenizer.ggml.add_eos_token": "add_eos_token",
}
"""GGUF metadata key → the tokenizer attribute it sets."""


def gguf_token_flags(path: str | Path) -> dict[str, bool]:
    """The tokenizer attributes a GGUF file sets, by name (absent keys are left out)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    flags = {}
    for key, attribute in FLAGS.items():
        field = fields.get(key)
        if field is not None and field.data:
            flags[attribute] = bool(field.parts[field.data[0]][0])
    return flags


def apply_gguf_token_flags(tokenizer: Any, path: str | Path) -> None:
    """Make ``tokenizer`` add the special tokens the GGUF file at ``path`` says it adds."""
    for attribute, value in gguf_token_flags(path).items():
        if hasattr(tokenizer, attribute) and getattr(tokenizer, attribute) != value:
            setattr(tokenizer, attribute, value)
