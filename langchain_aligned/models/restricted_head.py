"""An output head over part of the vocabulary: a small draft's cheap head.

A small draft spends most of its time in its output head on a CPU (SmolLM2's head is
49,152 × 576, a fifth of the model's weights and of every token's work). A
:class:`RestrictedHead` computes the logits of ``M`` kept tokens only and gives every
other token ``−∞`` (probability 0), so its cost falls by ``vocab / M`` while the
logits keep the vocabulary's shape. Speculative sampling stays exact with such a
draft: a token the draft cannot propose is still reached through the recovered token,
drawn from norm((p − q)₊).

A folder holding :data:`HEAD_TOKENS_FILE` (the kept token ids, written by
:func:`~langchain_aligned.drafts.distill_draft` with ``head_tokens=M``) is loaded with
such a head by :func:`~langchain_aligned.models.load_model`. Other loaders (vLLM,
``transformers`` directly) ignore the file and use the full head, which is also exact.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = [
    "HEAD_TOKENS_FILE",
    "RestrictedHead",
    "apply_saved_head",
    "restrict_head",
    "unrestricted_copy",
]

HEAD_TOKENS_FILE = "head_tokens.json"
"""The file of a model folder listing the token ids its output head keeps."""


class RestrictedHead(torch.nn.Module):
    """The rows of an output head for ``token_ids``; logits ``[..., vocab]`` with ``−∞``
    for every other token."""

    def __init__(self, head: torch.nn.Linear, token_ids: Sequence[int]) -> None:
        super().__init__()
        vocab = int(head.weight.shape[0])
        ids = sorted({int(t) for t in token_ids})
        if not ids or ids[0] < 0 or ids[-1] >= vocab:
            raise InvalidInputError(
                f"head tokens must be ids in [0, {vocab}); got {len(ids)} ids from "
                f"{ids[0] if ids else None} to {ids[-1] if ids else None}"
            )
        self.vocab = vocab
        """Logits per position, as the full head gives."""
        # Held outside the module tree (not a submodule, not in the state dict): the
        # full head a training copy needs back (``unrestricted_copy``). For a tied head
        # it is the embedding matrix, so keeping it costs no memory.
        self._full_head: tuple[torch.nn.Linear] = (head,)
        index = torch.tensor(ids, device=head.weight.device)
        self.register_buffer("token_ids", index)
        self.weight = torch.nn.Parameter(head.weight.detach()[index].clone(), requires_grad=False)
        bias = getattr(head, "bias", None)
        self.bias = (
            torch.nn.Parameter(bias.detach()[index].clone(), requires_grad=False)
            if bias is not None
            else None
        )

    @property
    def full_head(self) -> torch.nn.Linear:
        """The head this one was cut from (every token's row)."""
        return self._full_head[0]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        kept = torch.nn.functional.linear(hidden, self.weight, self.bias)  # [..., M]
        logits = kept.new_full((*kept.shape[:-1], self.vocab), float("-inf"))  # [..., vocab]
        return logits.index_copy_(-1, self.get_buffer("token_ids"), kept)


def restrict_head(model: Any, token_ids: Sequence[int]) -> None:
    """Replace ``model``'s output head by a :class:`RestrictedHead` for ``token_ids``."""
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise InvalidInputError(
            f"{type(model).__name__} has no linear output head to restrict ({type(head).__name__})"
        )
    model.set_output_embeddings(RestrictedHead(head, token_ids))


def apply_saved_head(model: Any, folder: str | Path) -> bool:
    """Restrict ``model``'s head if ``folder`` holds :data:`HEAD_TOKENS_FILE`; whether it did."""
    path = Path(folder) / HEAD_TOKENS_FILE
    if not path.is_file():
        return False
    restrict_head(model, json.loads(path.read_text()))
    return True


def unrestricted_copy(model: Any) -> Any:
    """A deep copy of ``model`` with its full output head back if it has a
    :class:`RestrictedHead` (training and ``save_pretrained`` need the full head; the
    kept ids stay in the folder's :data:`HEAD_TOKENS_FILE`)."""
    head = model.get_output_embeddings()
    if not isinstance(head, RestrictedHead):
        return copy.deepcopy(model)
    model.set_output_embeddings(head.full_head)
    try:
        return copy.deepcopy(model)
    finally:
        model.set_output_embeddings(head)
