"""``RewardModelScorer``: any Hugging Face sequence-classification reward model.

Examples a GPU user would pick: ``Skywork/Skywork-Reward-Llama-3.1-8B-v0.2``,
``RLHFlow/ArmoRM-Llama3-8B-v0.1`` (multi-output: pick a head by name),
``sfairXC/FsfairX-LLaMA3-RM-v0.1``.

Formatting: the reward model's own chat template around conversation + reply when it
has one, else ``"User: …\\n\\nAssistant: …"``. Truncation policy
(:func:`reward_model_ids`, shared with :class:`~rewards.vllm_reward.VLLMRewardScorer`,
so both read the same token ids): a sequence longer than ``max_length`` tokens keeps its
**end** (the reply and the latest turns) and its first token when that is the BOS (or
CLS); ``max_length`` defaults to the least of 4,096, the tokenizer's
``model_max_length`` and the model's positions. Batches are sized by
``max_tokens_per_batch``.
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
from .hardware import quiet_short_load, resolve_device, resolve_dtype

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "RewardModelScorer",
    "checked_max_length",
    "head_index",
    "reward_model_ids",
    "reward_model_max_length",
    "reward_model_text",
]

DEFAULT_MAX_LENGTH = 4096
"""The most tokens a reward model reads when neither ``max_length`` nor the model
says fewer."""


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


def checked_max_length(max_length: int | None) -> int | None:
    """``max_length`` as given, once checked: None or an integer ≥ 1.

    Raises:
        InvalidScorerConfig: anything else (named).
    """
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise InvalidScorerConfig(
            f"max_length={max_length!r} must be an integer ≥ 1 (or None: the model's context, "
            f"at most {DEFAULT_MAX_LENGTH} tokens)"
        )
    return max_length


def reward_model_max_length(max_length: int | None, tokenizer: Any, config: Any = None) -> int:
    """The most tokens a scored text keeps: ``max_length`` when given, else the least of
    :data:`DEFAULT_MAX_LENGTH`, the tokenizer's ``model_max_length`` and the model's
    positions (``max_position_embeddings`` or ``n_positions`` of ``config``, when
    known)."""
    if max_length is not None:
        return max_length
    if config is not None and callable(getattr(config, "get_text_config", None)):
        config = config.get_text_config()
    limits = [
        getattr(tokenizer, "model_max_length", None),
        getattr(config, "max_position_embeddings", None),
        getattr(config, "n_positions", None),
    ]
    known = [v for v in limits if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return min([DEFAULT_MAX_LENGTH, *known])


def reward_model_ids(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """The token ids a reward model reads for a :func:`reward_model_text`: the text's
    tokens (with the tokenizer's special tokens only when it has no chat template: a
    template writes its own), and past ``max_length`` tokens its first token when that
    is the BOS (or CLS) followed by its last tokens: the reply and the latest turns are
    kept, the conversation's start is cut. The one truncation rule of every reward-model
    scorer, so a model scores the same ids on transformers and on vLLM."""
    special = not getattr(tokenizer, "chat_template", None)
    ids = [int(i) for i in tokenizer(text, add_special_tokens=special)["input_ids"]]
    if len(ids) <= max_length:
        return ids
    starts = {getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "cls_token_id", None)}
    head = ids[:1] if max_length > 1 and ids[0] in starts - {None} else []
    return head + ids[len(ids) - (max_length - len(head)) :]


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
        self.max_length = checked_max_length(max_length)
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

        limit = reward_model_max_length(self.max_length, tokenizer, model.config)
        encoded = [reward_model_ids(tokenizer, text, limit) for text in texts]
        lengths = [len(ids) for ids in encoded]
        device = next(model.parameters()).device
        out: list[float] = [0.0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        batch: list[int] = []

        def flush() -> None:
            if not batch:
                return
            inputs = _padded([encoded[i] for i in batch], tokenizer)
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


def _padded(rows: list[list[int]], tokenizer: Any) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` tensors of ``rows`` padded with the
    tokenizer's pad token on its ``padding_side``."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        start = width - len(row) if tokenizer.padding_side == "left" else 0
        ids[index, start : start + len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, start : start + len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}
