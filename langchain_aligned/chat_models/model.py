"""``AlignedChatModel``: the fields, their validation, and thin LangChain entry points.

Every entry point prepares one :class:`~.calls.Call` (:mod:`.calls`), decodes it —
alone or with the compatible calls of a ``batch`` (:mod:`.batching`), in the caller's
thread or a worker (:mod:`.workers`), reporting events to the call's run
(:mod:`.runs`) — and builds the reply from the result (:mod:`.messages`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

import rewards

from ..decoding.base import Hooks, Result, Strategy
from ..decoding.params import SamplingParams
from ..decoding.speculative_rejection import SpeculativeRejection
from ..engines.select import ENGINE_NAMES
from ..engines.server import ServerSettings
from ..errors import InvalidInputError
from ..models.embedded import DEFAULT_CHAT_MODEL
from . import batching, runs, workers
from .calls import Call, bind_tool_specs, compose_reward, decode, prepare_call
from .messages import (
    PROVIDER,
    aggregate_chunks,
    final_chunk,
    model_name,
    text_chunk,
)
from .structured_output import structured_output

__all__ = ["AlignedChatModel"]

# LangChain's signatures of the model's entry points.
Messages = list[BaseMessage]
Stop = list[str] | None
RunManager = CallbackManagerForLLMRun | None
AsyncRunManager = AsyncCallbackManagerForLLMRun | None


def _default_strategy() -> Strategy:
    # Speculative Rejection's own defaults, chosen from benchmarks/bench_speed.py on
    # the embedded model on a CPU (docs/rejection.md, "Choosing the settings"): n = 16
    # (a pass of 16 rows costs about 1.3× one of 8 there), α = 0.5 (0.75 lost reward
    # at every n), τ = 32 for the default 256-token replies (16 lost reward there).
    return SpeculativeRejection()


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
    strategy: Strategy = Field(default_factory=_default_strategy)
    """Decoding strategy config: ``Sampling()``, ``BestOfN(n)``,
    ``SpeculativeRejection(n, rejection_rate)``, ``SpeculativeSampling(draft)`` or
    ``RewardShiftedSampling(draft, draft_reference)``. Default: ``SpeculativeRejection()``
    (n=16, α=0.5, τ=32; chosen from ``benchmarks/bench_speed.py``)."""
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
    """Extra ``load_model`` options, e.g. ``{"device_map": "auto", "max_memory": ...}``
    (the transformers engine)."""
    engine: Literal["transformers", "vllm", "openai"] = "transformers"
    """Where decoding runs: ``"transformers"`` (this library's engine, every strategy),
    ``"vllm"`` (vLLM in this process) or ``"openai"`` (a vLLM / OpenAI-compatible
    server at ``base_url``). The vLLM engines run Sampling, Best-of-N and Speculative
    Rejection (docs/scale.md)."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """The engine's settings: ``vllm.LLM`` arguments for ``"vllm"``
    (``{"tensor_parallel_size": 2}``, …); for ``"openai"``, ``served_model`` (the
    server's model name, when it serves several)."""
    base_url: str | None = None
    """The server's address for ``engine="openai"``, e.g. ``"http://127.0.0.1:8000/v1"``."""
    validity_weight: float = 10.0
    """Weight of ``rewards.ToolCallScorer`` (tools bound) and ``rewards.JSONSchemaScorer``
    (structured output) beside the base reward (weight 1) in reward-based strategies.
    Scores are summed unnormalised, so keep it above the spread of the base reward
    (the default reward spans a few units): a valid call or object then always wins."""
    timeout: float | None = None
    """Seconds to wait for the server's next chunk (``engine="openai"``; None: 120 s).
    Local engines have no network timeout."""
    max_retries: int = 2
    """Retries of a server request that failed before its first token
    (``engine="openai"``); local engines are not retried."""
    api_key: SecretStr | None = None
    """The server's API key (``engine="openai"``); local models need no key."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    _default_reward: Any = PrivateAttr(default=None)
    _reward_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        # A wrong strategy fails here with this library's error (naming the value),
        # not as a pydantic type error.
        strategy = data.get("strategy")
        if strategy is not None and not isinstance(strategy, Strategy):
            raise InvalidInputError(
                f"strategy={strategy!r} is not a strategy; use Sampling(), BestOfN(n=...), "
                "SpeculativeRejection(n=...), SpeculativeSampling(draft=...) or RewardShiftedSampling(...)"
            )
        engine = data.get("engine", "transformers")
        if engine not in ENGINE_NAMES:
            raise InvalidInputError(
                f"engine={engine!r} is not an engine; use one of "
                f"{', '.join(map(repr, ENGINE_NAMES))}"
            )
        super().__init__(**data)
        # Bad values fail at construction (with this library's errors, which name the
        # value), never at the first call.
        self._validate()

    def _validate(self) -> None:
        self._params(self.stop)
        if self.reward is not None and not callable(getattr(self.reward, "score", None)):
            raise InvalidInputError(
                f"reward={self.reward!r} is not a reward scorer (it has no .score)"
            )
        if not isinstance(self.validity_weight, int | float) or self.validity_weight < 0:
            raise InvalidInputError(
                f"validity_weight={self.validity_weight!r} must be a number ≥ 0"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidInputError(f"seed={self.seed!r} must be an integer or None")
        if self.engine != "transformers":
            # Bad server settings, or a strategy the engine cannot run, fail now.
            self.strategy.engine_settings(self.engine, self._engine_kwargs())

    def _engine_kwargs(self) -> dict[str, Any]:
        """The engine's settings, with the server fields for ``engine="openai"``."""
        kwargs = dict(self.engine_kwargs)
        if self.engine == "openai":
            if self.base_url is not None:
                kwargs.setdefault("base_url", self.base_url)
            if self.api_key is not None:
                kwargs.setdefault("api_key", self.api_key.get_secret_value())
            if self.timeout is not None:
                kwargs.setdefault("timeout", self.timeout)
            kwargs.setdefault("max_retries", self.max_retries)
            ServerSettings.from_kwargs(kwargs)
        return kwargs

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "aligned-chat-model"

    @property
    def model_name(self) -> str:
        """Name of the model as reported in metadata."""
        return model_name(self.model)

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
        override = kwargs.get("model")
        params["ls_model_name"] = model_name(override) if override else self.model_name
        params["ls_model_type"] = "chat"
        params["ls_temperature"] = self.temperature
        params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ------------------------------------------------------------------ one call
    def _params(self, stop: list[str] | None) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_tokens,
            stop=tuple(stop if stop is not None else (self.stop or ())),
        )

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> Call:
        return prepare_call(messages, options, params=self._params(stop), model=self.model)

    def _reward(self, call: Call) -> Any:
        """The reward for one call: the base reward (``reward``, else the default
        scorer built once), joined by the validity scorers of its tools / format."""
        if not self.strategy.needs_reward:
            return self.reward
        base = self.reward
        if base is None:
            with self._reward_lock:
                if self._default_reward is None:
                    self._default_reward = rewards.default_scorer()
                base = self._default_reward
        return compose_reward(
            base,
            tools=call.tools,
            tool_choice=call.tool_choice,
            response_format=call.response_format,
            validity_weight=self.validity_weight,
        )

    def _decode(self, calls: Sequence[Call], hooks: Hooks) -> list[Result]:
        load_options = {"device": self.device, "dtype": self.dtype, **self.model_kwargs}
        return decode(
            calls,
            hooks,
            strategy=self.strategy,
            reward=self._reward(calls[0]),
            seed=self.seed,
            load_options=load_options if self.engine == "transformers" else {},
            engine=self.engine,
            engine_kwargs=self._engine_kwargs(),
        )

    def _run(self, call: Call, hooks: Hooks) -> Result:
        if not self.strategy.shares_batches:
            (result,) = self._decode([call], hooks)
            return result
        return batching.submit(call, hooks, self._decode)

    # ------------------------------------------------------------------ entry points
    def batch(
        self, inputs: list[LanguageModelInput], config: Any = None, **kwargs: Any
    ) -> list[AIMessage]:
        """Answer several inputs; with a strategy that shares batches (every built-in
        strategy does) their decoding shares forward passes.

        Each input still gets its own run, callbacks and errors: LangChain runs the
        inputs concurrently as usual and their decoding requests are gathered into
        one engine call (a bad input fails alone)."""
        with batching.sharing_batches(len(inputs)):
            return super().batch(inputs, config, **kwargs)

    async def abatch(
        self, inputs: list[LanguageModelInput], config: Any = None, **kwargs: Any
    ) -> list[AIMessage]:
        """Async :meth:`batch`: inputs share forward passes the same way."""
        with batching.sharing_batches(len(inputs)):
            return await super().abatch(inputs, config, **kwargs)

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        return runs.call_in_run(super().invoke, input, config, **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        return await runs.acall_in_run(super().ainvoke, input, config, **kwargs)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        config, handle = runs.call_run(config)
        return runs.in_run_stream(super().stream(input, config, **kwargs), handle)

    def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        config, handle = runs.call_run(config)
        return runs.in_run_astream(super().astream(input, config, **kwargs), handle)

    # One decode path: the stream. ``_generate`` and ``_agenerate`` aggregate it, as
    # partner chat models do; the thread and async bridges wrap that one path.
    def _generate(
        self, messages: Messages, stop: Stop = None, run_manager: RunManager = None, **kwargs: Any
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        return aggregate_chunks(self._chunks(call, run_manager, stream_text=False))

    async def _agenerate(
        self,
        messages: Messages,
        stop: Stop = None,
        run_manager: AsyncRunManager = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        chunks = [chunk async for chunk in self._achunks(call, run_manager, stream_text=False)]
        return aggregate_chunks(iter(chunks))

    def _stream(
        self, messages: Messages, stop: Stop = None, run_manager: RunManager = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        yield from self._chunks(call, run_manager, stream_text=call.stream_text)

    async def _astream(
        self,
        messages: Messages,
        stop: Stop = None,
        run_manager: AsyncRunManager = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        async for chunk in self._achunks(call, run_manager, stream_text=call.stream_text):
            yield chunk

    def _chunks(
        self, call: Call, run_manager: RunManager, *, stream_text: bool
    ) -> Iterator[ChatGenerationChunk]:
        """The decode of ``call`` as chunks: its text deltas (``stream_text``), then the
        last chunk with the reply's metadata, decoded in a thread."""
        sink = runs.event_sink(run_manager, self)
        for item in workers.decode_in_thread(self._work(call), sink, stream_text=stream_text):
            chunk = _chunk(item, call, stream_text)
            if run_manager is not None and isinstance(item, str):
                run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk

    async def _achunks(
        self, call: Call, run_manager: AsyncRunManager, *, stream_text: bool
    ) -> AsyncIterator[ChatGenerationChunk]:
        """:meth:`_chunks` for the async paths: decoded in a worker thread, so the
        event loop stays free."""
        sink = functools.partial(runs.async_event_sink, run_manager, self)
        async for item in workers.decode_in_worker(self._work(call), sink, stream_text=stream_text):
            chunk = _chunk(item, call, stream_text)
            if run_manager is not None and isinstance(item, str):
                await run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk

    def _work(self, call: Call) -> workers.Work:
        """The decode of ``call`` as a worker runs it."""
        return functools.partial(self._run, call)

    # ------------------------------------------------------------------ tools and formats
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: they are rendered into the prompt (through the chat template, or
        a system block for templates without tool support) and calls in the reply are
        parsed into ``AIMessage.tool_calls``.

        ``tool_choice``: None/``"auto"`` (the model decides), ``"any"``/``"required"``/
        ``True`` (must call a tool), a tool name (must call that tool) or ``"none"``.
        A forced choice adds an instruction to the prompt and, with a reward-based
        strategy, makes candidates without a valid call lose. With a reward-based
        strategy ``rewards.ToolCallScorer`` joins the reward so valid calls win.
        """
        formatted, choice = bind_tool_specs(tools, tool_choice)
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Return replies parsed into ``schema`` (a pydantic model, TypedDict, JSON
        schema or OpenAI tool dict).

        ``method``:

        * ``"json_schema"`` (default) — the system prompt asks for one JSON object valid
          against the schema; with a reward-based strategy ``rewards.JSONSchemaScorer``
          joins the reward so candidates that validate win;
        * ``"function_calling"`` — the schema is bound as a tool the model must call;
          ``rewards.ToolCallScorer`` joins the reward;
        * ``"json_mode"`` — any JSON object (``schema`` optional, used to parse).

        ``include_raw=True`` returns ``{"raw", "parsed", "parsing_error"}``.
        """
        if kwargs:
            raise InvalidInputError(f"Received unsupported arguments {kwargs}")
        del strict  # validation happens through the reward and the parser
        return structured_output(self, schema, method, include_raw)


def _chunk(item: str | Result, call: Call, streamed_text: bool) -> ChatGenerationChunk:
    """The chunk of one item a decode streams: a text delta, or the result (last;
    holding the reply text unless it was ``streamed_text``)."""
    if isinstance(item, Result):
        return final_chunk(item, call.tools, call.model, streamed_text=streamed_text)
    return text_chunk(item)
