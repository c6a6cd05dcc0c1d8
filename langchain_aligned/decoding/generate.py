"""``generate``: the framework-free entry point (load, render, decode, score).

The LangChain chat model is a thin layer over this function; scripts and benchmarks
may call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rewards.base import conversation_to_messages

from ..engines.base import ReplyEngine
from ..engines.select import open_engine
from ..errors import InvalidInputError
from ..models.chat import render_chat
from .base import Conversation, Hooks, Request, Result, Strategy, new_seed
from .params import SamplingParams

__all__ = ["build_requests", "generate"]


def build_requests(
    engine: ReplyEngine,
    conversations: Sequence[Conversation],
    params: SamplingParams,
    *,
    seed: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[Request]:
    """Render, tokenise and check each conversation; attach seeds."""
    requests = []
    for conversation in conversations:
        messages = conversation_to_messages(conversation, error=InvalidInputError)
        text = render_chat(engine.handle, messages, tools=tools)
        prompt_ids = engine.encode(text)
        engine.check_prompt(prompt_ids)
        requests.append(
            Request(
                conversation=messages,
                prompt_ids=prompt_ids,
                params=params,
                seed=new_seed() if seed is None else int(seed),
                tools=tuple(tools or ()),
            )
        )
    return requests


def generate(
    model: Any,
    conversations: Sequence[Conversation] | Conversation,
    *,
    strategy: Strategy | None = None,
    reward: Any = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 256,
    stop: Sequence[str] = (),
    seed: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    hooks: Hooks | None = None,
    engine: str = "transformers",
    engine_kwargs: Mapping[str, Any] | None = None,
    **load_kwargs: Any,
) -> list[Result]:
    """Answer each conversation with ``strategy`` (plain sampling by default).

    Args:
        model: anything :func:`~langchain_aligned.models.load_model` accepts.
        conversations: one conversation (prompt string or message list) or a list of them.
        strategy: a strategy config (``Sampling()``, ``BestOfN(n=8)``, …).
        reward: a ``rewards.RewardScorer`` (required by reward-based strategies).
        seed: makes the call reproducible; every request uses this seed.
        engine: ``"transformers"`` (this library's engine, every strategy), ``"vllm"``
            (vLLM in process) or ``"openai"`` (a vLLM / OpenAI-compatible server); the
            vLLM engines run Sampling, Best-of-N and Speculative Rejection
            (docs/scale.md).
        engine_kwargs: the vLLM engine's ``vllm.LLM`` arguments, or the server's
            settings (``base_url``, …).
        **load_kwargs: passed to ``load_model`` (device, dtype, device_map, …) on the
            transformers engine.
    """
    from .sampling import Sampling

    strategy = strategy or Sampling()
    if not isinstance(strategy, Strategy):
        raise InvalidInputError(
            f"strategy={strategy!r} is not a strategy; use Sampling(), BestOfN(n=...), "
            "SpeculativeRejection(n=...), SpeculativeSampling(draft=...) or RewardShiftedSampling(...)"
        )
    strategy.check_reward(reward)
    params = SamplingParams(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        stop=tuple(stop),
    )
    if isinstance(conversations, str) or (
        isinstance(conversations, Sequence)
        and conversations
        and isinstance(conversations[0], Mapping)
    ):
        conversations = [conversations]  # type: ignore[list-item,assignment]
    if not isinstance(conversations, Sequence) or len(conversations) == 0:
        raise InvalidInputError("conversations is empty; pass at least one prompt or message list")
    if engine_kwargs is not None and not isinstance(engine_kwargs, Mapping):
        raise InvalidInputError(
            f"engine_kwargs={engine_kwargs!r} must be a dict of the engine's settings, e.g. "
            "{'tensor_parallel_size': 2} for engine='vllm' or {'base_url': ...} for "
            "engine='openai'"
        )
    # The strategy may need settings of the engine (speculative sampling on vLLM: the
    # draft), or refuse it, before anything loads.
    engine_kwargs = strategy.engine_settings(engine, engine_kwargs)
    decoder: ReplyEngine = open_engine(model, engine, engine_kwargs, load_kwargs)
    strategy.bind(decoder)
    requests = build_requests(decoder, conversations, params, seed=seed, tools=tools)  # type: ignore[arg-type]
    return strategy.run(decoder, requests, reward=reward, hooks=hooks)
