"""The ``RewardScorer`` protocol and the errors of the ``rewards`` package.

A scorer turns candidate replies to one conversation into floats — higher is better:

    scorer.score(conversation, completions) -> list[float]

``conversation`` is a plain prompt string or a list of Hugging Face chat-format messages
(``{"role": ..., "content": ...}``); ``completions`` are reply texts, possibly partial
(cut mid-sentence — Speculative Rejection scores them) or empty. Scores are comparable
within one call; :attr:`RewardScorer.comparable_across_calls` says whether they are also
comparable between calls (false for scorers that normalise within a call).

Several conversations at once — one call per item, in one pass where the scorer can:

    scorer.score_batch([(conversation, completions), ...]) -> list[list[float]]

Each item's scores equal ``score(conversation, completions)`` for that item alone
(normalising scorers normalise within each item); scorers that run a model
(embeddings, reward models) override ``_score_batch`` to encode every item's texts
together — a decoder that scores several requests' candidates at once calls it.

Text in, numbers out: a scorer's tokenizer never has to match the policy's.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ROLES",
    "Conversation",
    "InvalidScorerConfig",
    "RecordedLogprobs",
    "RewardScorer",
    "RewardScorerError",
    "RewardsError",
    "conversation_to_messages",
    "last_user_text",
    "recorded_logprobs",
    "recording",
    "score_items",
]

Conversation = str | Sequence[Mapping[str, Any]]


class RewardsError(Exception):
    """Root of every error raised by the ``rewards`` package."""


class RewardScorerError(RewardsError, RuntimeError):
    """A scorer failed or returned unusable scores.

    Attributes:
        scorer: name of the scorer.
        index: the offending completion's index, when one is to blame.
    """

    def __init__(self, message: str, *, scorer: str, index: int | None = None) -> None:
        super().__init__(message)
        self.scorer = scorer
        self.index = index


class InvalidScorerConfig(RewardsError, ValueError):
    """A scorer was configured with a value it cannot use (raised at construction)."""


ROLES = ("system", "user", "assistant", "tool")
"""The chat-format roles a message may have."""


def conversation_to_messages(
    conversation: Conversation,
    *,
    error: type[Exception] = InvalidScorerConfig,
    nonempty: bool = False,
) -> list[dict[str, Any]]:
    """The one validation and conversion of a :data:`Conversation` to chat-format
    message dicts (the decoding core and the chat model use it too): a prompt string
    becomes one user message; message lists are copied as dicts with a known role
    (:data:`ROLES`) and string content (``None`` content becomes ``""``).

    Raises:
        error: (``InvalidScorerConfig`` unless the caller names its own package's
            error) the conversation is neither a string nor a list of message dicts, a
            message has no known role or non-string content, or (``nonempty``) the
            list is empty; the message names the bad item and what to do.
    """
    if isinstance(conversation, str):
        return [{"role": "user", "content": conversation}]
    if isinstance(conversation, bytes) or not isinstance(conversation, Sequence):
        raise error(
            f"conversation of type {type(conversation).__name__} is neither a prompt "
            "string nor a list of chat messages"
        )
    if nonempty and len(conversation) == 0:
        raise error("messages is empty; pass at least one message to answer")
    messages = []
    for index, message in enumerate(conversation):
        if not isinstance(message, Mapping):
            raise error(
                f"message {index} is a {type(message).__name__} ({message!r:.60}), not a "
                "dict with 'role' and 'content'"
            )
        role = message.get("role")
        if role not in ROLES:
            raise error(f"message {index} has unknown role {role!r}; use one of {', '.join(ROLES)}")
        item = dict(message)
        if item.get("content") is None:
            item["content"] = ""
        elif not isinstance(item["content"], str):
            raise error(
                f"message {index} ({role}) has {type(item['content']).__name__} content; only "
                "text content is supported — convert images or other blocks to text first"
            )
        messages.append(item)
    return messages


def last_user_text(conversation: Conversation) -> str:
    """The last user message's text (the question being answered)."""
    if isinstance(conversation, str):
        return conversation
    for message in reversed(conversation_to_messages(conversation)):
        if message["role"] == "user":
            return str(message["content"])
    return ""


@dataclass(frozen=True)
class RecordedLogprobs:
    """Token log-probabilities the decoder recorded for the texts a reward call scores.

    A decoder samples each token from the model's logits, so it already holds every
    sampled token's log-probability under the untempered model. A scorer that would
    compute the same numbers (the likelihood of a reply under the very model that
    decoded it, given the same prompt) may read them here instead of running the model
    again — Speculative Rejection's self-reward then costs no forward pass. Decoders
    publish them around a reward call with :func:`recording`; scorers read them with
    :func:`recorded_logprobs` and must check that they apply (same model object, same
    prompt ids, and the text tokenises to exactly the recorded token ids).
    """

    model: Any
    """The model (torch module) that decoded the texts."""
    prompt_ids: tuple[int, ...]
    """The prompt the texts continue."""
    by_text: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]]
    """Text → (its token ids, each token's log-probability), for the texts whose every
    token was recorded."""


_RECORDED: contextvars.ContextVar[tuple[RecordedLogprobs, ...]] = contextvars.ContextVar(
    "rewards_recorded_logprobs", default=()
)


@contextlib.contextmanager
def recording(
    recorded: RecordedLogprobs | Sequence[RecordedLogprobs | None] | None,
) -> Iterator[None]:
    """Within the block, :func:`recorded_logprobs` finds ``recorded``: one record, or
    one per prompt of a :meth:`RewardScorer.score_batch` call (``None`` entries are
    skipped)."""
    if recorded is None:
        published: tuple[RecordedLogprobs, ...] = ()
    elif isinstance(recorded, RecordedLogprobs):
        published = (recorded,)
    else:
        published = tuple(r for r in recorded if r is not None)
    token = _RECORDED.set(published)
    try:
        yield
    finally:
        _RECORDED.reset(token)


def recorded_logprobs(model: Any, prompt_ids: Sequence[int]) -> RecordedLogprobs | None:
    """The log-probabilities published for the reward call in progress that ``model``
    (the same object) recorded continuing exactly ``prompt_ids``, if any."""
    prompt = tuple(prompt_ids)
    matches = [r for r in _RECORDED.get() if r.model is model and r.prompt_ids == prompt]
    if len(matches) <= 1:
        return matches[0] if matches else None
    # Several requests of one call share this prompt: a token's log-probability
    # depends only on the model, the prompt and the tokens, so their records merge.
    merged: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}
    for record in matches:
        merged.update(record.by_text)
    return RecordedLogprobs(model, prompt, merged)


class RewardScorer(abc.ABC):
    """Base class of every scorer: validation, async and batch entry points.

    Subclasses implement :meth:`_score`; callers use :meth:`score`, which checks the
    output and turns any failure into :class:`RewardScorerError`.
    """

    comparable_across_calls: bool = True
    """Whether scores from different calls may be compared."""

    @property
    def name(self) -> str:
        """Readable name used in errors and statistics."""
        return type(self).__name__

    @abc.abstractmethod
    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        """Score ``completions`` (one float each)."""

    def _score_batch(
        self, items: list[tuple[Conversation, list[str]]]
    ) -> Sequence[Sequence[float]]:
        """Score every item (one ``(conversation, completions)`` each); by default one
        :meth:`_score` per item. Scorers that can encode several items' texts together
        override it; each item's scores must equal its :meth:`_score`."""
        return [self._score(conversation, texts) for conversation, texts in items]

    def score(self, conversation: Conversation, completions: Sequence[str]) -> list[float]:
        """Score candidate replies to ``conversation``: one finite float per completion.

        Raises:
            RewardScorerError: the scorer raised, returned the wrong number of scores,
                or a NaN / infinite score (names the scorer and the index).
        """
        return self.score_batch([(conversation, completions)])[0]

    def score_batch(self, items: Sequence[tuple[Conversation, Sequence[str]]]) -> list[list[float]]:
        """:meth:`score` of many ``(conversation, completions)`` items at once: each
        item's scores are those it would get alone, computed together where the scorer
        can (one encoder pass over every item's texts).

        Raises:
            RewardScorerError: as :meth:`score`; the message names the item when there
                are several.
        """
        batch = []
        for conversation, completions in items:
            if isinstance(completions, str):
                raise RewardScorerError(
                    f"{self.name}: completions must be a list of strings, not one string",
                    scorer=self.name,
                )
            batch.append((conversation, [str(c) if c is not None else "" for c in completions]))
        todo = [(position, item) for position, item in enumerate(batch) if item[1]]
        out: list[list[float]] = [[] for _ in batch]
        if not todo:
            return out
        try:
            raw = list(self._score_batch([item for _, item in todo]))
        except RewardsError:
            raise
        except Exception as exc:
            raise RewardScorerError(
                f"{self.name} raised {type(exc).__name__}: {exc}", scorer=self.name
            ) from exc
        if len(raw) != len(todo):
            raise RewardScorerError(
                f"{self.name} returned {len(raw)} score lists for {len(todo)} items",
                scorer=self.name,
            )
        where = "" if len(batch) == 1 else " of item {}"
        for (position, (_, texts)), values in zip(todo, raw, strict=True):
            out[position] = self._checked(list(values), texts, where.format(position))
        return out

    def _checked(self, values: list[Any], texts: list[str], where: str) -> list[float]:
        """``values`` as finite floats, one per text, or a clear error."""
        if len(values) != len(texts):
            raise RewardScorerError(
                f"{self.name} returned {len(values)} scores for {len(texts)} completions{where}",
                scorer=self.name,
            )
        out = []
        for index, value in enumerate(values):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise RewardScorerError(
                    f"{self.name} returned a non-numeric score {value!r} for completion "
                    f"{index}{where}",
                    scorer=self.name,
                    index=index,
                ) from None
            if not math.isfinite(number):
                raise RewardScorerError(
                    f"{self.name} returned {number} for completion {index}{where}; "
                    "scores must be finite",
                    scorer=self.name,
                    index=index,
                )
            out.append(number)
        return out

    async def ascore(self, conversation: Conversation, completions: Sequence[str]) -> list[float]:
        """:meth:`score` in a worker thread, so the event loop is never blocked."""
        return await asyncio.to_thread(self.score, conversation, completions)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def score_items(
    scorer: Any, items: Sequence[tuple[Conversation, Sequence[str]]]
) -> list[list[Any]]:
    """``scorer.score_batch(items)``, or one ``scorer.score`` per item for a scorer that
    has only ``score`` (any object with that method is a scorer here)."""
    batched = getattr(scorer, "score_batch", None)
    if callable(batched):
        return [list(values) for values in batched(items)]
    return [list(scorer.score(conversation, texts)) for conversation, texts in items]
