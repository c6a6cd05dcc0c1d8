"""``AlignedChatModel``: a LangChain chat model over local Hugging Face models that
decodes with an alignment strategy.

The LangChain layer is thin: messages are converted to Hugging Face chat dicts and
handed to :func:`langchain_aligned.decoding.generate` with the configured strategy and
reward; the :class:`~langchain_aligned.decoding.AlignmentStats` come back as
``response_metadata["alignment"]`` and as custom callback events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from .decoding.base import Hooks, Result, Strategy
from .decoding.generate import generate
from .decoding.params import SamplingParams
from .errors import InvalidInputError
from .models.embedded import DEFAULT_CHAT_MODEL

__all__ = ["AlignedChatModel", "to_hf_messages"]

PROVIDER = "langchain_aligned"


def _default_strategy() -> Strategy:
    from .decoding.speculative_rejection import SpeculativeRejection

    # Suits the embedded 135M model on a CPU: 8 candidates, half rejected per round,
    # first decision after 24 tokens.
    return SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=24)


def _text_content(message: BaseMessage, index: int) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif (
            isinstance(message, AIMessage)
            and isinstance(block, Mapping)
            and block.get("type") in ("tool_use", "tool_call", "function_call")
        ):
            continue  # the same calls are in message.tool_calls
        else:
            kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
            raise InvalidInputError(
                f"message {index} ({type(message).__name__}) has a {kind!r} content block; "
                "AlignedChatModel supports text only — remove images and other blocks"
            )
    return "".join(parts)


def to_hf_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Convert LangChain messages to Hugging Face chat-format dicts.

    Raises:
        InvalidInputError: empty list, unsupported content blocks or roles, or a tool
            message answering no earlier tool call (names the message).
    """
    if not messages:
        raise InvalidInputError("messages is empty; pass at least one message to answer")
    out: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    for index, message in enumerate(messages):
        text = _text_content(message, index)
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": text})
        elif isinstance(message, AIMessage):
            item: dict[str, Any] = {"role": "assistant", "content": text}
            if message.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": call.get("id") or f"call_{index}_{n}",
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call.get("args", {})},
                    }
                    for n, call in enumerate(message.tool_calls)
                ]
                call_ids.update(c["id"] for c in item["tool_calls"])
            out.append(item)
        elif isinstance(message, ToolMessage):
            if message.tool_call_id not in call_ids:
                raise InvalidInputError(
                    f"message {index} is a ToolMessage for tool_call_id={message.tool_call_id!r}, "
                    "but no earlier AIMessage made that tool call"
                )
            out.append(
                {
                    "role": "tool",
                    "content": text,
                    "tool_call_id": message.tool_call_id,
                    "name": message.name or "",
                }
            )
        elif isinstance(message, ChatMessage) and message.role in ("system", "user", "assistant"):
            out.append({"role": message.role, "content": text})
        else:
            raise InvalidInputError(
                f"message {index} has unsupported type {type(message).__name__}"
                + (f" with role {message.role!r}" if isinstance(message, ChatMessage) else "")
            )
    return out


def _split_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Reply text without ``<tool_call>`` blocks, and LangChain tool calls parsed from it."""
    import re

    from rewards.tool_call import parse_tool_calls

    calls = []
    for call in parse_tool_calls(text):
        if call.get("error") or not call.get("name"):
            continue
        calls.append(
            {
                "name": call["name"],
                "args": call.get("arguments") or {},
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "tool_call",
            }
        )
    if not calls:
        return text, []
    cleaned = re.sub(r"<tool_call>.*?(</tool_call>|$)", "", text, flags=re.DOTALL).strip()
    if cleaned.startswith("{") and '"name"' in cleaned:
        cleaned = ""
    return cleaned, calls


class AlignedChatModel(BaseChatModel):
    """A LangChain chat model that decodes a local Hugging Face model with an
    inference-time alignment strategy (Best-of-N, Speculative Rejection, speculative
    sampling, SSS).

    Example:
        .. code-block:: python

            from langchain_aligned import AlignedChatModel, SpeculativeRejection

            llm = AlignedChatModel(strategy=SpeculativeRejection(n=16), max_tokens=96)
            reply = llm.invoke("Give me one tip for sleeping better.")
            reply.response_metadata["alignment"]["reward"]
    """

    model: Any = DEFAULT_CHAT_MODEL
    """The model: a Hugging Face id, local folder, ``.gguf`` file, embedded alias
    (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``), ``(model, tokenizer)`` pair or
    :class:`~langchain_aligned.models.ModelHandle`. Loaded on the first call, once per
    process."""
    strategy: Any = Field(default_factory=_default_strategy)
    """Decoding strategy config: ``Sampling()``, ``BestOfN(n)``,
    ``SpeculativeRejection(n, rejection_rate)``, ``SpeculativeSampling(draft)`` or
    ``RewardShiftedSampling(draft, draft_reference)``. Default: Speculative Rejection
    with n=8, α=0.5, τ=24."""
    reward: Any = None
    """A ``rewards.RewardScorer`` ranking candidates; None uses
    ``rewards.default_scorer()`` (built on first use) for strategies that need one."""
    temperature: float = 0.7
    """Sampling temperature; 0 means greedy decoding (reward strategies then decode one
    candidate and say so in the metadata)."""
    max_tokens: int = 256
    """Most tokens to generate per reply."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 disables the filter."""
    stop: list[str] | None = None
    """Stop strings (any token length), trimmed from the reply."""
    seed: int | None = None
    """Seed for reproducible replies (each call uses it); None draws a fresh seed per call
    (reported in the metadata)."""
    streaming: bool = False
    """Whether ``invoke`` streams internally (callbacks get tokens as they come)."""
    device: str = "auto"
    """Device for the weights: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``."""
    dtype: str = "auto"
    """Weight dtype: ``"auto"`` (bf16 where native, else fp32), ``"float32"``, ``"bfloat16"``, ``"float16"``."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra ``load_model`` options, e.g. ``{"device_map": "auto", "max_memory": ...}``."""
    timeout: float | None = None
    """Accepted for API compatibility; local decoding has no network timeout."""
    max_retries: int = 0
    """Accepted for API compatibility; local decoding is not retried."""
    api_key: SecretStr | None = None
    """Accepted for API compatibility; local models need no key."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    _default_reward: Any = PrivateAttr(default=None)
    _reward_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        # Bad values fail at construction (with this library's errors, which name the
        # value), never at the first call.
        self._validate()

    def _validate(self) -> None:
        self._params(self.stop)
        if not isinstance(self.strategy, Strategy):
            raise InvalidInputError(
                f"strategy={self.strategy!r} is not a strategy; use Sampling(), BestOfN(n=...), "
                "SpeculativeRejection(n=...), SpeculativeSampling(draft=...) or RewardShiftedSampling(...)"
            )
        if self.reward is not None and not callable(getattr(self.reward, "score", None)):
            raise InvalidInputError(
                f"reward={self.reward!r} is not a reward scorer (it has no .score)"
            )
        return self

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "aligned-chat-model"

    @property
    def model_name(self) -> str:
        """Name of the model as reported in metadata."""
        if isinstance(self.model, str):
            return self.model
        name = getattr(self.model, "name", None)
        if isinstance(name, str):
            return name
        if isinstance(self.model, tuple):
            return str(
                getattr(self.model[0].config, "_name_or_path", "") or type(self.model[0]).__name__
            )
        return type(self.model).__name__

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "strategy": repr(self.strategy),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = PROVIDER
        params["ls_model_name"] = kwargs.get("model") or self.model_name
        params["ls_model_type"] = "chat"
        params["ls_temperature"] = self.temperature
        params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ------------------------------------------------------------------ helpers
    def _params(self, stop: list[str] | None) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_tokens,
            stop=tuple(stop if stop is not None else (self.stop or ())),
        )

    def _base_reward(self) -> Any:
        if self.reward is not None:
            return self.reward
        with self._reward_lock:
            if self._default_reward is None:
                import rewards

                self._default_reward = rewards.default_scorer()
            return self._default_reward

    def _reward(self, tools: Sequence[Mapping[str, Any]] | None) -> Any:
        if not self.strategy.needs_reward:
            return self.reward
        base = self._base_reward()
        if not tools:
            return base
        import rewards

        # Candidates whose tool calls parse and validate win: validity weighs more than
        # the spread of the base reward.
        return rewards.WeightedScorer({base: 1.0, rewards.ToolCallScorer(list(tools)): 10.0})

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]):
        hf_messages = to_hf_messages(messages)
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        kwargs.pop("ls_structured_output_format", None)
        if tools and tool_choice not in (None, "auto", "none"):
            target = (
                "one of the tools"
                if tool_choice in ("any", "required", True)
                else f"the {tool_choice} tool"
            )
            hf_messages = [
                *hf_messages[:-1],
                {
                    **hf_messages[-1],
                    "content": hf_messages[-1]["content"] + f"\n\n(Answer by calling {target}.)",
                }
                if hf_messages[-1]["role"] == "user"
                else hf_messages[-1],
            ]
        if tool_choice == "none":
            tools = None
        params = self._params(stop)
        return hf_messages, tools, params

    def _run(
        self,
        hf_messages: list[dict[str, Any]],
        tools: Any,
        params: SamplingParams,
        hooks: Hooks,
    ) -> Result:
        load_kwargs = dict(self.model_kwargs)
        load_kwargs.setdefault("device", self.device)
        load_kwargs.setdefault("dtype", self.dtype)
        (result,) = generate(
            self.model,
            [hf_messages],
            strategy=self.strategy,
            reward=self._reward(tools),
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_new_tokens=params.max_new_tokens,
            stop=params.stop,
            seed=self.seed,
            tools=tools,
            hooks=hooks,
            **load_kwargs,
        )
        return result

    def _message_parts(
        self, result: Result, tools: Any
    ) -> tuple[str, list[dict[str, Any]], dict[str, Any], UsageMetadata]:
        text, tool_calls = _split_tool_calls(result.text) if tools else (result.text, [])
        alignment = result.stats.to_dict()
        metadata = {
            "alignment": alignment,
            "model_name": self.model_name,
            "model_provider": PROVIDER,
            "finish_reason": "tool_calls" if tool_calls else result.finish_reason,
            "seed": result.stats.seed,
        }
        usage = UsageMetadata(
            input_tokens=result.stats.prompt_tokens,
            output_tokens=result.stats.tokens_returned,
            total_tokens=result.stats.prompt_tokens + result.stats.tokens_returned,
        )
        return text, tool_calls, metadata, usage

    def _chat_result(self, result: Result, tools: Any) -> ChatResult:
        text, tool_calls, metadata, usage = self._message_parts(result, tools)
        message = AIMessage(
            content=text, tool_calls=tool_calls, response_metadata=metadata, usage_metadata=usage
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=dict(metadata))],
            llm_output={"model_name": self.model_name, "alignment": metadata["alignment"]},
        )

    # ------------------------------------------------------------------ generate
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        hf_messages, tools, params = self._prepare(messages, stop, kwargs)
        hooks = Hooks(on_event=_event_sink(run_manager))
        result = self._run(hf_messages, tools, params, hooks)
        return self._chat_result(result, tools)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Decoding runs in a worker thread so the event loop stays free; cancelling the
        # task sets a flag the decoder polls between forward passes.
        stop_flag = threading.Event()
        loop = asyncio.get_running_loop()
        sync_manager = run_manager.get_sync() if run_manager is not None else None
        hf_messages, tools, params = self._prepare(messages, stop, kwargs)
        hooks = Hooks(on_event=_event_sink(sync_manager), should_stop=stop_flag.is_set)
        context = contextvars.copy_context()
        future = loop.run_in_executor(
            None, context.run, self._run, hf_messages, tools, params, hooks
        )
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop_flag.set()
            raise
        return self._chat_result(result, tools)

    # ------------------------------------------------------------------ stream
    def _stream_worker(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        put: Callable[[tuple[str, Any]], None],
        stop_flag: threading.Event,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        try:
            hf_messages, tools, params = self._prepare(messages, stop, kwargs)
            on_text = None if tools else (lambda _request, delta: put(("text", delta)))
            hooks = Hooks(
                on_event=on_event or _guarded_dispatch,
                on_text=on_text,
                should_stop=stop_flag.is_set,
            )
            result = self._run(hf_messages, tools, params, hooks)
            put(("done", (result, tools)))
        except BaseException as exc:  # re-raised in the consuming thread
            put(("error", exc))

    def _final_chunk(self, result: Result, tools: Any) -> ChatGenerationChunk:
        text, tool_calls, metadata, usage = self._message_parts(result, tools)
        # Floats and lists (rewards, timings) go on this one chunk only: LangChain sums
        # ints across chunks but refuses to merge two different floats.
        chunk = AIMessageChunk(
            content=text if tools else "",
            response_metadata=metadata,
            usage_metadata=usage,
            tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(tool_calls)
            ],
            chunk_position="last",
        )
        return ChatGenerationChunk(message=chunk, generation_info=dict(metadata))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop_flag = threading.Event()
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run,
            args=(self._stream_worker, messages, stop, dict(kwargs), items.put, stop_flag),
            daemon=True,
        )
        worker.start()
        try:
            while True:
                kind, value = items.get()
                if kind == "text":
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=value))
                    if run_manager is not None:
                        run_manager.on_llm_new_token(value, chunk=chunk)
                    yield chunk
                elif kind == "error":
                    raise value
                else:
                    yield self._final_chunk(*value)
                    return
        finally:
            # A consumer that stops early (break, exception) stops the decoder too.
            stop_flag.set()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop_flag = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def on_event(name: str, data: dict[str, Any]) -> None:
            # Async handlers (astream_events) live on the event loop: dispatch there,
            # in the run's context, and wait so events keep their order.
            asyncio.run_coroutine_threadsafe(_aguarded_dispatch(name, data), loop).result()

        context = contextvars.copy_context()
        future = loop.run_in_executor(
            None,
            context.run,
            self._stream_worker,
            messages,
            stop,
            dict(kwargs),
            put,
            stop_flag,
            on_event,
        )
        try:
            while True:
                kind, value = await items.get()
                if kind == "text":
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=value))
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(value, chunk=chunk)
                    yield chunk
                elif kind == "error":
                    raise value
                else:
                    yield self._final_chunk(*value)
                    break
        finally:
            # Cancellation or an early break: tell the decoder to stop promptly.
            stop_flag.set()
            del future

    # ------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: they are rendered into the prompt and calls in the reply are
        parsed into ``AIMessage.tool_calls``. With a reward-based strategy,
        ``rewards.ToolCallScorer`` joins the reward so valid calls win."""
        formatted = []
        for index, tool in enumerate(tools):
            try:
                formatted.append(convert_to_openai_tool(tool))
            except Exception as exc:
                raise InvalidInputError(
                    f"tool {index} ({getattr(tool, 'name', None) or getattr(tool, '__name__', repr(tool)[:40])}) "
                    f"cannot be rendered as a function schema: {exc}"
                ) from exc
        if isinstance(tool_choice, dict):
            tool_choice = tool_choice.get("function", {}).get("name") or "any"
        if tool_choice is True:
            tool_choice = "any"
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)


def _event_sink(
    run_manager: CallbackManagerForLLMRun | None,
) -> Callable[[str, dict[str, Any]], None]:
    """Send strategy events to the run's handlers as custom events."""
    if run_manager is None:
        return _guarded_dispatch
    manager = CallbackManager(
        handlers=run_manager.handlers,
        inheritable_handlers=run_manager.inheritable_handlers,
        parent_run_id=run_manager.parent_run_id,
        tags=run_manager.tags,
        inheritable_tags=run_manager.inheritable_tags,
        metadata=run_manager.metadata,
        inheritable_metadata=run_manager.inheritable_metadata,
    )

    def sink(name: str, data: dict[str, Any]) -> None:
        manager.on_custom_event(name, data, run_id=run_manager.run_id)

    return sink


async def _aguarded_dispatch(name: str, data: dict[str, Any]) -> None:
    with contextlib.suppress(RuntimeError):
        await adispatch_custom_event(name, data)


def _guarded_dispatch(name: str, data: dict[str, Any]) -> None:
    # Without a parent run (a direct .stream() call) LangChain has nowhere to send
    # custom events and raises; the event is then simply dropped.
    with contextlib.suppress(RuntimeError):
        dispatch_custom_event(name, data)
