"""``RewardModelScorer``: any Hugging Face sequence-classification reward model.

Examples a GPU user would pick: ``Skywork/Skywork-Reward-Llama-3.1-8B-v0.2``,
``RLHFlow/ArmoRM-Llama3-8B-v0.1`` (multi-output: pick a head by name),
``sfairXC/FsfairX-LLaMA3-RM-v0.1``.

Formatting: the reward model's own chat template around conversation + reply when it
has one, else ``"User: …\\n\\nAssistant: …"``. Truncation policy: a sequence longer than
``max_length`` tokens keeps its **end** (the reply and the latest turns) — the
tokenizer truncates from the left. Batches are sized by ``max_tokens_per_batch``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .base import (
    Conversation,
    InvalidScorerConfig,
    RewardScorer,
    RewardScorerError,
    conversation_to_messages,
)

__all__ = ["RewardModelScorer", "head_index", "reward_model_text"]


def reward_model_text(tokenizer: Any, conversation: Conversation, completion: str) -> str:
    """What a reward model reads for one reply: its own chat template around the
    conversation and the reply when it has one, else ``"User: …\\n\\nAssistant: …"``."""
    messages = [
        *conversation_to_messages(conversation),
        {"role": "assistant", "content": completion},
    ]
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def head_index(head: int | str | None, labels: dict[Any, str], outputs: int) -> int:
    """The output a scorer reads: ``head`` by index or label name, 0 when None.

    Raises:
        InvalidScorerConfig: no such output.
    """
    if isinstance(head, str):
        matches = [int(k) for k, v in labels.items() if v == head]
        if not matches:
            raise InvalidScorerConfig(
                f"head={head!r} is not one of the model's outputs {sorted(labels.values())}"
            )
        return matches[0]
    index = 0 if head is None else int(head)
    if not 0 <= index < outputs:
        raise InvalidScorerConfig(
            f"head={head!r} is out of range for a model with {outputs} outputs"
        )
    return index


class RewardModelScorer(RewardScorer):
    """Score replies with a sequence-classification reward model."""

    def __init__(
        self,
        source: Any,
        *,
        head: int | str | None = None,
        max_tokens_per_batch: int = 8192,
        max_length: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        **load_kwargs: Any,
    ) -> None:
        if isinstance(source, tuple) and len(source) != 2:
            raise InvalidScorerConfig(
                "RewardModelScorer needs a model id, a folder, or a (model, tokenizer) pair"
            )
        if max_tokens_per_batch < 1:
            raise InvalidScorerConfig(f"max_tokens_per_batch={max_tokens_per_batch!r} must be ≥ 1")
        self.source = source
        self.head = head
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_length = max_length
        self.device, self.dtype, self.trust_remote_code = device, dtype, trust_remote_code
        self.load_kwargs = load_kwargs
        self._lock = threading.RLock()
        self._loaded: tuple[Any, Any, int] | None = None

    @property
    def name(self) -> str:
        label = self.source if isinstance(self.source, str) else type(self.source[0]).__name__
        return f"RewardModelScorer({label})"

    def _load(self) -> tuple[Any, Any, int]:
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            from langchain_aligned.models import quiet_short_load, resolve_device, resolve_dtype

            if isinstance(self.source, tuple):
                model, tokenizer = self.source
            else:
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

                device = resolve_device(self.device)
                try:
                    with quiet_short_load(self.source):
                        tokenizer = AutoTokenizer.from_pretrained(
                            self.source, trust_remote_code=self.trust_remote_code
                        )
                        model = AutoModelForSequenceClassification.from_pretrained(
                            self.source,
                            dtype=resolve_dtype(self.dtype, device),
                            trust_remote_code=self.trust_remote_code,
                            **self.load_kwargs,
                        ).to(device)
                except (OSError, ValueError) as exc:
                    raise RewardScorerError(
                        f"Could not load reward model {self.source!r}: the model hub may be unreachable "
                        f"or the id is wrong ({type(exc).__name__})",
                        scorer=self.name,
                    ) from exc
            model.eval()
            labels = getattr(model.config, "id2label", None) or {}
            outputs = int(getattr(model.config, "num_labels", 1))
            head = head_index(self.head, labels, outputs)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.truncation_side = "left"
            if getattr(model.config, "pad_token_id", None) is None:
                model.config.pad_token_id = tokenizer.pad_token_id
            self._loaded = (model, tokenizer, head)
            return self._loaded

    def format(self, tokenizer: Any, conversation: Conversation, completion: str) -> str:
        return reward_model_text(tokenizer, conversation, completion)

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        return self._score_batch([(conversation, completions)])[0]

    def _score_batch(
        self, items: list[tuple[Conversation, list[str]]]
    ) -> Sequence[Sequence[float]]:
        model, tokenizer, head = self._load()
        # Every item's (conversation, reply) texts go through one length-sorted series
        # of batches: several requests' candidates fill batches together.
        texts = [self.format(tokenizer, c, reply) for c, replies in items for reply in replies]
        # Fast tokenizers keep padding/truncation state: one call at a time.
        with self._lock:
            values = self._score_texts(model, tokenizer, head, texts)
        out, start = [], 0
        for _, replies in items:
            out.append(values[start : start + len(replies)])
            start += len(replies)
        return out

    def _score_texts(self, model: Any, tokenizer: Any, head: int, texts: list[str]) -> list[float]:
        """The reward head's value for each formatted text, in batches of at most
        ``max_tokens_per_batch`` padded tokens (shortest first, so padding is small)."""
        import torch

        limit = self.max_length or min(
            int(getattr(tokenizer, "model_max_length", 4096) or 4096), 4096
        )
        lengths = [
            min(len(tokenizer(t, add_special_tokens=False)["input_ids"]), limit) for t in texts
        ]
        device = next(model.parameters()).device
        out: list[float] = [0.0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        batch: list[int] = []

        def flush() -> None:
            if not batch:
                return
            inputs = tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
                add_special_tokens=not getattr(tokenizer, "chat_template", None),
            )
            with torch.inference_mode():
                logits = model(
                    **{k: v.to(device) for k, v in inputs.items()}
                ).logits  # [batch, outputs]
            for i, value in zip(batch, logits[:, head].float().tolist(), strict=True):
                out[i] = value
            batch.clear()

        for i in order:
            if batch and (len(batch) + 1) * max(lengths[i], 1) > self.max_tokens_per_batch:
                flush()
            batch.append(i)
        flush()
        return out
