"""``AlignmentMiddleware``: Best-of-n for every model call of a LangChain agent.

Works with any chat model (API or local): each model call of a
``langchain.agents.create_agent`` agent is made ``n`` times, every candidate reply is
scored by a ``RewardScorer`` (text plus its tool calls, written as ``<tool_call>``
JSON so ``rewards.ToolCallScorer`` can judge them), and the best reply is kept. The
statistics go to the reply's ``response_metadata["alignment"]`` and the same custom
events as the chat model (``aligned.scored``, ``aligned.done``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage

import rewards

from .chat_models.calls import compose_reward
from .chat_models.messages import render_reply, to_hf_messages
from .chat_models.runs import adispatch_in_context, dispatch_in_context
from .decoding.base import EVENT_DONE, EVENT_SCORED, score_texts
from .decoding.stats import AlignmentStats
from .errors import InvalidInputError

__all__ = ["AlignmentMiddleware", "render_reply"]


def _conversation(request: Any) -> list[dict[str, Any]]:
    """The model call's conversation in chat format, as the reward sees it."""
    system = getattr(request, "system_message", None)
    messages = [system, *request.messages] if system is not None else list(request.messages)
    return to_hf_messages(messages, strict=False)


def _with_seed(request: Any, offset: int) -> Any:
    # A seeded AlignedChatModel would return the same reply n times: give each
    # candidate its own seed.
    model = request.model
    seed = getattr(model, "seed", None)
    if offset == 0 or seed is None or not hasattr(model, "model_copy"):
        return request
    return request.override(model=model.model_copy(update={"seed": seed + offset}))


class AlignmentMiddleware(AgentMiddleware):
    """Draw ``n`` replies per model call, score them, keep the best.

    Args:
        reward: a ``rewards.RewardScorer`` (anything with ``score(conversation,
            completions)``); it sees each reply's text with its tool calls appended as
            ``<tool_call>`` JSON blocks.
        n: replies drawn per model call (sequentially with ``invoke``, concurrently
            with ``ainvoke``). A seeded ``AlignedChatModel`` gets seed, seed+1, ….
        tool_validity_weight: when the agent has tools, ``rewards.ToolCallScorer``
            (a call is optional) joins the reward with this weight, so replies whose
            calls parse and validate win; 0 turns it off.
    """

    def __init__(self, reward: Any, n: int = 4, *, tool_validity_weight: float = 10.0) -> None:
        super().__init__()
        if reward is None or not callable(getattr(reward, "score", None)):
            raise InvalidInputError(
                f"AlignmentMiddleware(reward={reward!r}) needs a reward scorer with .score"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"AlignmentMiddleware(n={n!r}): n must be an integer ≥ 1")
        if not isinstance(tool_validity_weight, int | float) or tool_validity_weight < 0:
            raise InvalidInputError(
                f"AlignmentMiddleware(tool_validity_weight={tool_validity_weight!r}) must be ≥ 0"
            )
        self.reward = reward
        self.n = n
        self.tool_validity_weight = float(tool_validity_weight)

    def _reward_for(self, request: Any) -> Any:
        try:
            return compose_reward(
                self.reward,
                tools=list(getattr(request, "tools", None) or []),
                validity_weight=self.tool_validity_weight,
            )
        except rewards.InvalidScorerConfig:  # a tool it cannot read (e.g. a provider built-in)
            return self.reward

    def _pick(
        self, request: Any, responses: list[Any], stats: AlignmentStats
    ) -> tuple[Any, dict[str, Any]]:
        replies = [self._message(r) for r in responses]
        texts = [render_reply(m) for m in replies]
        scores = score_texts(self._reward_for(request), _conversation(request), texts, stats)
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        stats.reward = scores[best]
        stats.candidate_rewards = scores
        message = replies[best]
        usages = [getattr(m, "usage_metadata", None) or {} for m in replies]
        stats.tokens_returned = int(usages[best].get("output_tokens", 0))
        stats.tokens_generated = sum(int(u.get("output_tokens", 0)) for u in usages)
        stats.prompt_tokens = int(usages[best].get("input_tokens", 0))
        if len(replies) > 1 and len(set(texts)) == 1:
            stats.note = (
                f"all {len(replies)} replies were identical (a deterministic model, e.g. "
                "temperature=0?): best-of-n had nothing to choose from"
            )
        message.response_metadata = {**message.response_metadata, "alignment": stats.to_dict()}
        return responses[best], {"rewards": scores, "partial": False, "round": None, "request": 0}

    @staticmethod
    def _message(response: Any) -> AIMessage:
        if isinstance(response, AIMessage):
            return response
        for message in getattr(response, "result", []):
            if isinstance(message, AIMessage):
                return message
        raise InvalidInputError(f"model call returned no AIMessage: {response!r:.80}")

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        stats = AlignmentStats(strategy="middleware_best_of_n", num_candidates=self.n)
        start = time.perf_counter()
        responses = [handler(_with_seed(request, i)) for i in range(self.n)]
        stats.generation_seconds = time.perf_counter() - start
        best, scored = self._pick(request, responses, stats)
        dispatch_in_context(EVENT_SCORED, scored)
        dispatch_in_context(EVENT_DONE, {"request": 0, "stats": stats.to_dict()})
        return best

    async def awrap_model_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        stats = AlignmentStats(strategy="middleware_best_of_n", num_candidates=self.n)
        start = time.perf_counter()
        responses = list(
            await asyncio.gather(*(handler(_with_seed(request, i)) for i in range(self.n)))
        )
        stats.generation_seconds = time.perf_counter() - start
        best, scored = await asyncio.to_thread(self._pick, request, responses, stats)
        for name, data in (
            (EVENT_SCORED, scored),
            (EVENT_DONE, {"request": 0, "stats": stats.to_dict()}),
        ):
            await adispatch_in_context(name, data)
        return best
