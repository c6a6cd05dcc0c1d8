"""The served model's tokenizer, for ``engine="openai"``.

A user of any OpenAI-compatible client names the *served* model (``model="smol"``),
which is no tokenizer this process can load. :func:`served_tokenizer` finds one, in
this order:

1. ``engine_kwargs["tokenizer"]``: a Hugging Face id or local folder the user names;
2. ``model`` itself, when it loads as a tokenizer from local files (a folder, an
   embedded alias, an id in the local cache);
3. the server's own, through vLLM's ``/tokenize`` and ``/detokenize``
   (:class:`ServerTokenizer`; chat prompts rendered by the server's chat template).

The model hub is never tried on a guess (a served name is no hub id); a hub id in
``tokenizer=`` loads from it as usual.

When none is possible the error names ``model``, the URL and the two ways to fix it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import EngineError

__all__ = ["ServerTokenizer", "served_tokenizer"]

Post = Callable[[str, Mapping[str, Any]], Any]
"""``post(path, body)``: the JSON answer of the server's ``path`` (``"/tokenize"``, …),
raising :class:`~langchain_aligned.errors.EngineError` on an error status."""

SERVER_TEMPLATE = "(the server's chat template, rendered by its /tokenize)"
"""``ServerTokenizer.chat_template`` when the server does not say its template: the
prompt is rendered by the server, so the model has one."""

END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "</s>", "<|endoftext|>")
"""Special tokens that end a reply in the common chat formats, looked up on the server
when it does not say its end-of-sequence token."""


class ServerTokenizer:
    """The subset of a Hugging Face tokenizer this library uses, answered by a vLLM
    server (``/tokenize``, ``/detokenize``, and ``/tokenize`` with messages for chat
    prompts). Decoded texts are cached, since a reply's text is asked for more than
    once (its deltas, its stop strings, its final text)."""

    def __init__(self, post: Post, served_model: str, cache_size: int = 4096) -> None:
        self._post = post
        self.served_model = served_model
        """The model name sent with every request."""
        self._decoded: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._cache_size = cache_size
        self._size: int | None = None
        self.chat_template = SERVER_TEMPLATE
        """A marker: prompts are rendered by the server's template."""
        self.pad_token_id: int | None = None
        self.unk_token_id: int | None = None
        self.eos_token_id: int | None = self._end_of_turn_id()
        """The first of :data:`END_OF_TURN_TOKENS` the server's tokenizer has as one
        token (the reply-ending ids add the others)."""

    # --------------------------------------------------------------- the HF surface
    def __len__(self) -> int:
        """The vocabulary size: one past the largest id the server detokenizes (vLLM
        refuses out-of-vocabulary ids), found by bisection once."""
        if self._size is None:
            low, high = 1, 1 << 22  # an id below `low` decodes; none at `high` or above
            while low < high:
                middle = (low + high) // 2
                if self._decodes(middle):
                    low = middle + 1
                else:
                    high = middle
            self._size = low
        return self._size

    def _decodes(self, token_id: int) -> bool:
        try:
            self._post("/detokenize", {"model": self.served_model, "tokens": [token_id]})
        except EngineError:
            return False
        return True

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``."""
        answer = self._post(
            "/tokenize",
            {"model": self.served_model, "prompt": text, "add_special_tokens": add_special_tokens},
        )
        return [int(t) for t in answer["tokens"]]

    def decode(self, token_ids: Sequence[int], **_: Any) -> str:
        """Text of ``token_ids`` (the server's detokenizer; a reply holds no special
        token, since the engine drops the reply-ending ones)."""
        key = tuple(int(t) for t in token_ids)
        text = self._decoded.get(key)
        if text is None:
            if not key:
                return ""
            answer = self._post("/detokenize", {"model": self.served_model, "tokens": list(key)})
            text = str(answer["prompt"])
            self._decoded[key] = text
            if len(self._decoded) > self._cache_size:
                self._decoded.popitem(last=False)
        return text

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **_: Any,
    ) -> str | list[int]:
        """The server renders ``messages`` with its chat template."""
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": [dict(m) for m in messages],
            "add_generation_prompt": add_generation_prompt,
            # The template writes its own special tokens.
            "add_special_tokens": False,
        }
        if tools:
            body["tools"] = [dict(t) for t in tools]
        ids = [int(t) for t in self._post("/tokenize", body)["tokens"]]
        return ids if tokenize else self.decode(ids)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        """The id of ``token`` when the server's tokenizer has it as one token."""
        ids = self.encode(token, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def _end_of_turn_id(self) -> int | None:
        for token in END_OF_TURN_TOKENS:
            token_id = self.convert_tokens_to_ids(token)
            if token_id is not None:
                return token_id
        return None


def served_tokenizer(
    model: str, tokenizer: str | None, served_model: str, base_url: str, post: Post
) -> Any:
    """The tokenizer for the served model (see the module docstring for the order).

    Raises:
        EngineError: ``tokenizer=`` does not load, or neither ``model`` nor the server
            gives one; the message names ``model``, the URL and the fixes.
    """
    from transformers import AutoTokenizer

    if tokenizer is not None:
        try:
            return AutoTokenizer.from_pretrained(tokenizer)
        except Exception as exc:
            raise EngineError(
                f"engine_kwargs['tokenizer']={tokenizer!r} does not load as a tokenizer "
                f"({type(exc).__name__}: {exc}); pass a Hugging Face id or local folder of "
                f"the tokenizer of {served_model!r} served at {base_url}"
            ) from exc
    local_error: Exception
    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception as exc:  # not a folder, alias or cached id: a served name
        local_error = exc
    try:
        return ServerTokenizer(post, served_model)
    except EngineError as exc:
        # Never the model hub on a guess: a served name is no hub id, and an offline
        # machine would wait a minute of retries to learn it.
        raise EngineError(
            f"model={model!r} is not a tokenizer this process can load "
            f"({type(local_error).__name__}), and the server at {base_url} does not "
            f"tokenize for {served_model!r} ({exc}). Either pass the tokenizer: "
            "engine_kwargs={'base_url': ..., 'tokenizer': 'HF_ID_OR_FOLDER'}, or serve the "
            "model with vLLM (`vllm serve`), whose /tokenize and /detokenize this engine uses"
        ) from exc
