"""Lossless speculative sampling on vLLM: ``SpeculativeSampling`` as vLLM's own
speculative decoding.

vLLM verifies draft tokens with the same lossless rule as
:func:`~langchain_aligned.decoding.speculative_sampling.speculative_accept` (Leviathan
et al.; Chen et al.), so ``SpeculativeSampling(draft=D, num_draft_tokens=γ)`` on
``engine="vllm"`` needs no acceptance rule of this library's: the engine is built with

    speculative_config = {"method": "draft_model", "model": D, "num_speculative_tokens": γ}

(:func:`engine_settings`), and each request decodes as plain sampling on it, one
candidate, its own seed. Replies follow the target's distribution as on the
transformers engine (not token for token: the random draws differ).

The statistics keep their meaning. vLLM streams, per step of a request, the tokens the
step kept: the first delta is the prefill's one token, and every later delta is one
verification of γ draft tokens bringing ``1 + accepted`` tokens (the accepted run, then
the recovered or bonus token). :func:`verification_steps` reads the deltas back into
``(proposed, accepted)`` per step with the transformers engine's accounting:
``proposed = min(γ, room − 1)`` (no more than the reply can still take) and
``accepted`` counts only draft tokens the reply keeps. Target forward passes are vLLM's
steps; the draft's passes run inside them and are absent (None), not zero.

``RewardShiftedSampling`` has no such mapping: its acceptance rule is its own and
vLLM's is not pluggable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..decoding import strategy_parts as parts
from ..decoding.base import EVENT_DONE, Hooks, Request, Result
from ..decoding.drafts import PromptSteeredDraft
from ..decoding.sampling import sample_batch
from ..errors import InvalidInputError
from ..models.loading import model_location
from .base import ReplyEngine
from .streamed import StreamState

__all__ = [
    "check_sampling",
    "check_speculation",
    "decode_with_engine_drafts",
    "engine_settings",
    "speculative_config",
    "verification_steps",
]

SPECULATION_KEY = "speculative_config"
"""The ``vllm.LLM`` argument that turns vLLM's speculative decoding on."""


def speculative_config(draft: Any, num_draft_tokens: int) -> dict[str, Any]:
    """vLLM's ``speculative_config`` for a draft model and γ.

    Raises:
        InvalidInputError: the draft is a prompt-steered draft or a loaded model: vLLM
            loads its draft itself and gives it the target's prompt.
    """
    if isinstance(draft, PromptSteeredDraft):
        raise InvalidInputError(
            f"SpeculativeSampling(draft={draft!r}) on engine='vllm': vLLM's draft reads "
            "the target's own prompt, so a prompt-steered draft needs engine='transformers'; "
            "on vLLM give a draft model (a Hugging Face id, a folder or an embedded alias "
            "sharing the target's vocabulary)"
        )
    return {
        "method": "draft_model",
        "model": model_location(draft),
        "num_speculative_tokens": int(num_draft_tokens),
    }


def engine_settings(
    draft: Any, num_draft_tokens: int, engine_kwargs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``engine_kwargs`` with the ``speculative_config`` for the draft and γ (other keys
    of a given ``speculative_config``, such as ``draft_tensor_parallel_size``, stay).

    Raises:
        InvalidInputError: ``engine_kwargs`` already has a ``speculative_config`` with
            another draft, γ or method (the draft is given in one place).
    """
    settings = dict(engine_kwargs or {})
    wanted = speculative_config(draft, num_draft_tokens)
    given = dict(settings.get(SPECULATION_KEY) or {})
    if any(key in given and given[key] != value for key, value in wanted.items()):
        raise InvalidInputError(
            f"engine_kwargs['speculative_config']={given!r} disagrees with "
            f"SpeculativeSampling(draft={draft!r}, num_draft_tokens={num_draft_tokens}), "
            f"which needs {wanted!r}; give the draft in one place (the strategy, or "
            "Sampling() with your own speculative_config)"
        )
    settings[SPECULATION_KEY] = {**given, **wanted}
    return settings


def engine_draft(engine: ReplyEngine) -> tuple[str, int] | None:
    """The draft folder or id and γ an in-process vLLM engine speculates with, or None."""
    config = getattr(engine, "speculative_config", None)
    if config is None or getattr(config, "method", None) != "draft_model":
        return None
    draft_config = getattr(config, "draft_model_config", None)
    location = getattr(draft_config, "model", None) or getattr(config, "model", None)
    return str(location), int(config.num_speculative_tokens)


def check_speculation(engine: ReplyEngine, draft: Any, num_draft_tokens: int) -> None:
    """Raise unless ``engine`` is vLLM in process speculating with this draft and γ.

    Raises:
        InvalidInputError: another engine (a server decides its own speculation), or a
            vLLM engine built without this draft.
    """
    if engine.name != "vllm":
        raise InvalidInputError(
            f"SpeculativeSampling cannot run on the {engine.name!r} engine: a server "
            "speculates (or not) as it was started; start vLLM with "
            '--speculative-config \'{"method": "draft_model", "model": DRAFT, '
            "\"num_speculative_tokens\": 4}' and use Sampling(), or use engine='vllm' or "
            "engine='transformers' (docs/scale.md)"
        )
    wanted = speculative_config(draft, num_draft_tokens)
    found = engine_draft(engine)
    if found != (wanted["model"], wanted["num_speculative_tokens"]):
        raise InvalidInputError(
            f"this vLLM engine speculates with {found!r} (draft, γ), not "
            f"{(wanted['model'], wanted['num_speculative_tokens'])!r}; build it through "
            "generate(..., engine='vllm') or AlignedChatModel(engine='vllm'), which add "
            "the strategy's speculative_config"
        )


def engine_device(engine: ReplyEngine) -> str | None:
    """The device type an in-process vLLM engine runs on (``"cuda"``, ``"cpu"``, …)."""
    return getattr(engine, "device_type", None)


def check_sampling(engine: ReplyEngine, requests: Sequence[Request]) -> None:
    """Raise for sampled (temperature > 0) requests on vLLM's CPU build.

    vLLM 0.32's CPU build verifies greedy draft tokens correctly but samples wrongly
    with speculative decoding at temperature > 0: with the target itself as its draft
    (every draft token should be accepted) it accepts a minority and returns text no
    longer drawn from the target (tests/vllm/test_vllm_speculation.py keeps the measurement
    as an expected failure; it is intermittent: one fresh-clone run of it passed). A
    silent wrong distribution is worse than an error.

    Raises:
        InvalidInputError: a request samples and the engine runs on a CPU.
    """
    sampled = [r.params.temperature for r in requests if not r.params.greedy]
    if sampled and engine_device(engine) == "cpu":
        raise InvalidInputError(
            f"SpeculativeSampling at temperature={sampled[0]} on vLLM's CPU build: its "
            "speculative decoding samples from the wrong distribution at temperature > 0 "
            "(measured in tests/vllm/test_vllm_speculation.py; docs/scale.md); use "
            "temperature=0, engine='transformers', or vLLM on a GPU"
        )


def verification_steps(
    delta_sizes: Sequence[int], num_draft_tokens: int, room: int, reply_length: int
) -> list[tuple[int, int]]:
    """``(proposed, accepted)`` of each verification step of one vLLM request.

    Args:
        delta_sizes: tokens per non-empty delta of the request's stream, in order (the
            first is the prefill's token).
        num_draft_tokens: γ.
        room: tokens the reply could take when it started (the length cap).
        reply_length: tokens the reply kept (end-of-sequence token excluded).

    A step that could verify no token (``room − 1 ≤ 0`` before it) is not a
    verification step, as on the transformers engine.
    """
    steps = []
    received = delta_sizes[0] if delta_sizes else 0
    for size in delta_sizes[1:]:
        proposed = min(num_draft_tokens, room - received - 1)
        if proposed > 0:
            # The step's kept draft tokens: its accepted run (size − 1), less what the
            # reply did not keep (an end-of-sequence token or a stop string cut it).
            kept = max(min(size - 1, reply_length - received, proposed), 0)
            steps.append((proposed, kept))
        received += size
    return steps


def decode_with_engine_drafts(
    strategy_name: str,
    num_draft_tokens: int,
    engine: ReplyEngine,
    requests: Sequence[Request],
    reward: Any,
    hooks: Hooks,
) -> list[Result]:
    """Decode ``requests`` as plain sampling on a vLLM engine that speculates itself,
    with the speculative statistics (and events) read back from its streams."""

    def decode_batch(batch: parts.Batch) -> list[Result]:
        results, candidates, state = sample_batch(batch, strategy_name)
        assert isinstance(state, StreamState)
        for result, candidate in zip(results, candidates, strict=True):
            stats = result.stats
            # The draft's passes run inside vLLM's steps: unseen, so absent.
            stats.draft_forward_passes = None
            room = engine.room(candidate, batch.params) + len(candidate.token_ids)
            steps = verification_steps(
                state.delta_sizes.get(id(candidate), []),
                num_draft_tokens,
                room,
                len(candidate.token_ids),
            )
            for step, (proposed, accepted) in enumerate(steps, start=1):
                parts.record_verification(stats, hooks, candidate.request, step, proposed, accepted)
            hooks.event(EVENT_DONE, {"request": candidate.request, "stats": stats.to_dict()})
        return results

    results = parts.decode_batches(engine, requests, reward, hooks, decode_batch)
    return results
