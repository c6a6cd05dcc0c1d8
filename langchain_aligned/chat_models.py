"""``AlignedChatModel``: a LangChain chat model over local Hugging Face models that
decodes with an alignment strategy.

The LangChain layer is thin: messages are converted to Hugging Face chat dicts and
handed to :func:`langchain_aligned.decoding.generate` with the configured strategy and
reward; the :class:`~langchain_aligned.decoding.AlignmentStats` come back as
``response_metadata["alignment"]`` and as custom callback events (see
:mod:`langchain_aligned.callbacks` for the event names).

``model_provider`` in the metadata is ``"langchain_aligned"``: the replies come from
this library's decoding strategies, not from a Hugging Face pipeline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json
import queue
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.exceptions import OutputParserException
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
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
    ensure_config,
)
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

import rewards
from rewards.tool_call import find_tool_calls

from .decoding.base import Hooks, Result, Strategy
from .decoding.generate import generate
from .decoding.params import SamplingParams
from .decoding.speculative_rejection import SpeculativeRejection
from .errors import InvalidInputError
from .models.chat import placeholder_arguments
from .models.embedded import DEFAULT_CHAT_MODEL

__all__ = ["AlignedChatModel", "to_hf_messages"]

PROVIDER = "langchain_aligned"
"""``response_metadata["model_provider"]`` of every reply."""


_EVENT_TIMEOUT = 30.0

_DECODE_THREADS = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="aligned-decode")
"""Worker threads of the async paths. Not the loop's default executor: LangChain
dispatches the events of synchronous callback handlers there, and a decoding thread
waits for its events to be handled — with decoding in the same pool, a few concurrent
calls would fill it and wait on handlers that can never run."""

_RUN: contextvars.ContextVar[tuple[uuid.UUID, RunnableConfig] | None] = contextvars.ContextVar(
    "aligned_run", default=None
)
"""The run id and config of the call in progress. LangChain calls ``_stream`` /
``_astream`` without a run manager; ``invoke``/``stream`` (and their async twins) give
the call a run id and set this variable so custom events still reach the call's own
run — its handlers and ``astream_events`` — even for a model used on its own."""


def _default_strategy() -> Strategy:
    # Suits the embedded 135M model on a CPU: 8 candidates, half rejected per round,
    # first decision after 24 tokens.
    return SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=24)


# --------------------------------------------------------------------------- messages
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

    ``SystemMessage`` → system, ``HumanMessage`` → user, ``AIMessage`` → assistant
    (tool calls as HF ``tool_calls``), ``ToolMessage`` → tool (with ``tool_call_id`` and
    the name of the tool it answers).

    Raises:
        InvalidInputError: empty list, unsupported content blocks or roles, or a tool
            message answering no earlier tool call (names the message).
    """
    if not messages:
        raise InvalidInputError("messages is empty; pass at least one message to answer")
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
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
                call_names.update((c["id"], c["function"]["name"]) for c in item["tool_calls"])
            out.append(item)
        elif isinstance(message, ToolMessage):
            if message.tool_call_id not in call_names:
                raise InvalidInputError(
                    f"message {index} is a ToolMessage for tool_call_id={message.tool_call_id!r}, "
                    "but no earlier AIMessage made that tool call"
                )
            out.append(
                {
                    "role": "tool",
                    "content": text,
                    "tool_call_id": message.tool_call_id,
                    "name": message.name or call_names[message.tool_call_id],
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


def _split_tool_calls(text: str, tool_names: Collection[str]) -> tuple[str, list[dict[str, Any]]]:
    """Reply text without its calls to bound tools, and those calls as LangChain tool
    calls (each with a fresh ``call_…`` id), in the order they were written.

    Only calls that parsed and name one of ``tool_names`` are calls: exactly their
    spans are cut out (the whole ``<tool_call>`` block, or a bare call's JSON object)
    and the text around them is kept as written, with the leading and trailing
    whitespace of the result stripped. Everything else stays in the text verbatim:
    broken blocks (no JSON, no name, arguments that are not JSON), calls to tools that
    are not bound, and prose JSON that merely has a ``"name"``. A reply without a call
    is returned unchanged. See ``rewards.find_tool_calls`` for what is parsed.
    """
    calls: list[dict[str, Any]] = []
    pieces: list[str] = []
    kept_from = 0
    for match in find_tool_calls(text):
        if match.error is not None or match.name not in tool_names:
            continue
        calls.append(
            {
                "name": match.name,
                "args": match.arguments or {},
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "tool_call",
            }
        )
        pieces.append(text[kept_from : match.start])
        kept_from = match.end
    if not calls:
        return text, []
    pieces.append(text[kept_from:])
    return "".join(pieces).strip(), calls


# --------------------------------------------------------------------------- JSON output
def _json_instructions(schema: Mapping[str, Any] | None) -> str:
    if not schema:
        return "Reply with a single JSON object and nothing else: no prose, no code fences."
    properties = schema.get("properties") or {}
    keys = ", ".join(
        f'"{key}" ({spec.get("type", "value")}'
        + (f": {spec['description']}" if spec.get("description") else "")
        + ")"
        for key, spec in properties.items()
        if isinstance(spec, Mapping)
    )
    return (
        "Reply with a single JSON object and nothing else: no prose, no code fences.\n"
        + (f"Its keys: {keys}.\n" if keys else "")
        + "It must validate against this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


def _extract_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (inside a code fence or bare)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)(?:```|$)", text, re.DOTALL)
    for body in ([fenced.group(1)] if fenced else []) + [text]:
        start = body.find("{")
        while start >= 0:
            try:
                value, _ = json.JSONDecoder().raw_decode(body[start:])
            except json.JSONDecodeError:
                start = body.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = body.find("{", start + 1)
    raise OutputParserException(f"no JSON object in the reply: {text[:200]!r}", llm_output=text)


def _json_parser(schema: Any) -> Runnable:
    """Parse a reply's JSON object, validated into ``schema`` when it is a pydantic model."""
    pydantic_cls = schema if isinstance(schema, type) and is_basemodel_subclass(schema) else None

    def parse(message: BaseMessage) -> Any:
        value = _extract_json_object(message.text if hasattr(message, "text") else str(message))
        if pydantic_cls is None:
            return value
        if hasattr(pydantic_cls, "model_validate"):
            return pydantic_cls.model_validate(value)
        return pydantic_cls.parse_obj(value)  # pydantic.v1 models

    return RunnableLambda(parse, name="AlignedJsonParser")


class _FirstObjectScorer:
    """Score what the structured-output parser will read: the reply's first JSON object
    (prose after it is ignored, as the parser ignores it). Replies without a complete
    object go to the inner scorer as they are, for its partial credit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    def score(self, conversation: Any, completions: Sequence[str]) -> list[float]:
        texts = []
        for text in completions:
            try:
                texts.append(json.dumps(_extract_json_object(text)))
            except OutputParserException:
                texts.append(text)
        return list(self.inner.score(conversation, texts))


# --------------------------------------------------------------------------- one call
@dataclass
class _Call:
    """Everything one model call needs, prepared from messages and call kwargs."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    tool_choice: str | None
    response_format: dict[str, Any] | None
    params: SamplingParams
    model: Any

    def group_key(self) -> str:
        """Calls with equal keys can be decoded in one engine call."""
        model = self.model if isinstance(self.model, str) else f"id:{id(self.model)}"
        return json.dumps(
            [model, self.tools, self.tool_choice, self.response_format, repr(self.params)],
            sort_keys=True,
            default=repr,
        )

    @property
    def stream_text(self) -> bool:
        # With tools bound the reply may be a call: it arrives whole on the last chunk.
        return not self.tools


class _Coalescer:
    """Gathers the decoding requests of one ``batch`` call into shared engine calls.

    LangChain runs a batch's inputs concurrently (threads for ``batch``, tasks whose
    decoding runs in executor threads for ``abatch``), each through its own run and
    callbacks. Each run's ``_run`` hands its prepared call here. The first call of a
    compatible group (same model, tools, output format, sampling parameters) leads:
    it waits until every input of the batch has arrived or ``window`` seconds pass
    without a new one (inputs limited by ``max_concurrency``, inputs that failed
    earlier), then decodes the group in one ``generate`` call and hands each member
    its result. If the shared call fails, each member that has seen no output yet is
    decoded alone, so an error reaches only the input that caused it.
    """

    def __init__(self, expected: int, window: float = 0.05) -> None:
        self.expected = expected
        self.window = window
        self.arrived = 0
        self.condition = threading.Condition()
        self.groups: dict[str, list[_Member]] = {}

    def submit(self, model: AlignedChatModel, call: _Call, hooks: Hooks) -> Result:
        key = call.group_key()
        member = _Member(call, hooks)
        with self.condition:
            self.arrived += 1
            group = self.groups.setdefault(key, [])
            group.append(member)
            self.condition.notify_all()
            if len(group) > 1:
                leader = False
            else:
                leader = True
                # Wait for the rest of the batch (or a quiet window).
                while self.arrived < self.expected:
                    before = self.arrived
                    self.condition.wait(self.window)
                    if self.arrived == before:
                        break
                del self.groups[key]
        if leader:
            self._decode(model, group)
        else:
            member.done.wait()
        if member.error is not None:
            raise member.error
        assert member.result is not None
        return member.result

    @staticmethod
    def _decode(model: AlignedChatModel, group: list[_Member]) -> None:
        def route_event(name: str, data: dict[str, Any]) -> None:
            index = data.get("request")
            if isinstance(index, int) and 0 <= index < len(group):
                group[index].emitted = True
                group[index].hooks.event(name, {**data, "request": 0})

        def route_text(index: int, delta: str) -> None:
            on_text = group[index].hooks.on_text if 0 <= index < len(group) else None
            if on_text is not None:
                group[index].emitted = True
                on_text(0, delta)

        streaming = any(m.hooks.on_text is not None for m in group)

        def stopped() -> bool:
            # Shared decoding stops only when every member's caller has given up.
            return all(m.hooks.should_stop is not None and m.hooks.should_stop() for m in group)

        try:
            try:
                shared = Hooks(
                    on_event=route_event,
                    on_text=route_text if streaming else None,
                    should_stop=stopped,
                )
                results = model._run_many([m.call for m in group], shared)
                for member, result in zip(group, results, strict=True):
                    member.result = result
            except Exception as exc:
                if len(group) == 1:
                    raise
                # Find the input that failed: the usual bad input (a prompt too long)
                # fails while the requests are built, before any decoding, and the
                # others are decoded again alone. A member whose caller has already
                # seen text or events of this decode cannot be decoded again (the
                # caller would see its output twice): it gets the error.
                for member in group:
                    if member.emitted:
                        member.error = exc
                        continue
                    try:
                        (member.result,) = model._run_many([member.call], member.hooks)
                    except Exception as error:
                        member.error = error
        except BaseException as exc:
            for member in group:
                if member.result is None and member.error is None:
                    member.error = exc
        finally:
            for member in group:
                member.done.set()


@dataclass
class _Member:
    call: _Call
    hooks: Hooks
    result: Result | None = None
    error: BaseException | None = None
    emitted: bool = False
    """Text or an event of the shared decode has reached this member's caller."""
    done: threading.Event = field(default_factory=threading.Event)


_BATCH: contextvars.ContextVar[_Coalescer | None] = contextvars.ContextVar(
    "aligned_batch", default=None
)
"""The coalescer of the ``batch``/``abatch`` call in progress (inherited by the
threads and tasks LangChain runs the inputs in)."""


def _tool_name(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", tool).get("name"))


def _model_name(model: Any) -> str:
    if isinstance(model, str):
        return model
    name = getattr(model, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(model, tuple) and model:
        config = getattr(model[0], "config", None)
        return str(getattr(config, "_name_or_path", "") or type(model[0]).__name__)
    return type(model).__name__


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
    validity_weight: float = 10.0
    """Weight of ``rewards.ToolCallScorer`` (tools bound) and ``rewards.JSONSchemaScorer``
    (structured output) beside the base reward (weight 1) in reward-based strategies.
    Scores are summed unnormalised, so keep it above the spread of the base reward
    (the default reward spans a few units): a valid call or object then always wins."""
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
        if not isinstance(self.validity_weight, int | float) or self.validity_weight < 0:
            raise InvalidInputError(
                f"validity_weight={self.validity_weight!r} must be a number ≥ 0"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidInputError(f"seed={self.seed!r} must be an integer or None")

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "aligned-chat-model"

    @property
    def model_name(self) -> str:
        """Name of the model as reported in metadata."""
        return _model_name(self.model)

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
        params["ls_model_name"] = _model_name(override) if override else self.model_name
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
                self._default_reward = rewards.default_scorer()
            return self._default_reward

    def _reward(self, call: _Call) -> Any:
        """The reward for one call: the base reward, joined by ``ToolCallScorer`` when
        tools are bound and by ``JSONSchemaScorer`` when JSON output is requested."""
        if not self.strategy.needs_reward:
            return self.reward
        base = self._base_reward()
        extras: dict[Any, float] = {}
        if call.tools:
            forced = call.tool_choice is not None
            tools = call.tools
            if forced and call.tool_choice != "any":
                tools = [t for t in call.tools if _tool_name(t) == call.tool_choice]
            extras[rewards.ToolCallScorer(tools, require_call=forced)] = self.validity_weight
        if call.response_format is not None:
            schema = call.response_format.get("schema") or {"type": "object"}
            extras[_FirstObjectScorer(rewards.JSONSchemaScorer(schema))] = self.validity_weight
        if not extras:
            return base
        return rewards.WeightedScorer({base: 1.0, **extras})

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Call:
        hf_messages = to_hf_messages(messages)
        tools = kwargs.pop("tools", None) or None
        tool_choice = _normalize_tool_choice(kwargs.pop("tool_choice", None))
        response_format = kwargs.pop("response_format", None)
        model = kwargs.pop("model", None) or self.model
        kwargs.pop("ls_structured_output_format", None)
        if tool_choice == "none" or not tools:
            tools, tool_choice = None, None
        elif tool_choice not in (None, "any") and tool_choice not in {_tool_name(t) for t in tools}:
            raise InvalidInputError(
                f"tool_choice={tool_choice!r} names no bound tool; bound: "
                + ", ".join(_tool_name(t) for t in tools)
            )
        if tool_choice is not None:
            target = "one of the tools" if tool_choice == "any" else f"the {tool_choice} tool"
            hf_messages = _add_instruction(
                hf_messages, f"Answer by calling {target}.", prefer_user=True
            )
        if response_format is not None:
            hf_messages = _add_instruction(
                hf_messages, _json_instructions(response_format.get("schema"))
            )
            hf_messages = _add_instruction(
                hf_messages, "Reply with the JSON object only.", prefer_user=True
            )
            hf_messages = _add_json_demonstration(hf_messages, response_format.get("schema"))
        return _Call(
            messages=hf_messages,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            params=self._params(stop),
            model=model,
        )

    def _run(self, call: _Call, hooks: Hooks) -> Result:
        batch = _BATCH.get()
        if batch is not None and self.strategy.shares_batches:
            return batch.submit(self, call, hooks)
        (result,) = self._run_many([call], hooks)
        return result

    def _run_many(self, calls: Sequence[_Call], hooks: Hooks) -> list[Result]:
        """Decode compatible calls (same model, tools, output format and sampling
        parameters) in one ``generate`` call, so they share forward passes."""
        first = calls[0]
        load_kwargs = dict(self.model_kwargs)
        load_kwargs.setdefault("device", self.device)
        load_kwargs.setdefault("dtype", self.dtype)
        return generate(
            first.model,
            [call.messages for call in calls],
            strategy=self.strategy,
            reward=self._reward(first),
            temperature=first.params.temperature,
            top_p=first.params.top_p,
            top_k=first.params.top_k,
            max_new_tokens=first.params.max_new_tokens,
            stop=first.params.stop,
            seed=self.seed,
            tools=first.tools,
            hooks=hooks,
            **load_kwargs,
        )

    # ------------------------------------------------------------------ batch
    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Answer several inputs; with a strategy that shares batches (every built-in
        strategy does) their decoding shares forward passes.

        Each input still gets its own run, callbacks and errors: LangChain runs the
        inputs concurrently as usual and their decoding requests are gathered into
        one engine call (a bad input fails alone)."""
        if len(inputs) < 2 or not self.strategy.shares_batches:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        token = _BATCH.set(_Coalescer(len(inputs)))
        try:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        finally:
            _BATCH.reset(token)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async :meth:`batch`: inputs share forward passes the same way."""
        if len(inputs) < 2 or not self.strategy.shares_batches:
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        token = _BATCH.set(_Coalescer(len(inputs)))
        try:
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        finally:
            _BATCH.reset(token)

    def _message_parts(
        self, result: Result, call: _Call
    ) -> tuple[str, list[dict[str, Any]], dict[str, Any], UsageMetadata]:
        text, tool_calls = (
            _split_tool_calls(result.text, {_tool_name(t) for t in call.tools})
            if call.tools
            else (result.text, [])
        )
        metadata = {
            "alignment": result.stats.to_dict(),
            "model_name": _model_name(call.model),
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

    def _chat_result(self, result: Result, call: _Call) -> ChatResult:
        text, tool_calls, metadata, usage = self._message_parts(result, call)
        message = AIMessage(
            content=text, tool_calls=tool_calls, response_metadata=metadata, usage_metadata=usage
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=dict(metadata))],
            llm_output={"model_name": metadata["model_name"], "alignment": metadata["alignment"]},
        )

    # ------------------------------------------------------------------ run handle
    def _with_run(self, config: RunnableConfig | None) -> tuple[RunnableConfig, Any]:
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        config = {**config, "run_id": run_id}
        return config, (run_id, config)

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, handle = self._with_run(config)
        token = _RUN.set(handle)
        try:
            return super().invoke(input, config, stop=stop, **kwargs)
        finally:
            _RUN.reset(token)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, handle = self._with_run(config)
        token = _RUN.set(handle)
        try:
            return await super().ainvoke(input, config, stop=stop, **kwargs)
        finally:
            _RUN.reset(token)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, handle = self._with_run(config)
        inner = super().stream(input, config, stop=stop, **kwargs)
        try:
            while True:
                # Set only while the inner generator runs, never while the consumer does.
                token = _RUN.set(handle)
                try:
                    chunk = next(inner)
                except StopIteration:
                    return
                finally:
                    _RUN.reset(token)
                yield chunk
        finally:
            inner.close()

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, handle = self._with_run(config)
        inner = super().astream(input, config, stop=stop, **kwargs)
        try:
            while True:
                token = _RUN.set(handle)
                try:
                    chunk = await inner.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _RUN.reset(token)
                yield chunk
        finally:
            await inner.aclose()

    def _manager_options(self, config: RunnableConfig) -> dict[str, Any]:
        """What LangChain configures a run's callback manager from."""
        return {
            "inheritable_callbacks": config.get("callbacks"),
            "local_callbacks": self.callbacks,
            "verbose": self.verbose,
            "inheritable_tags": config.get("tags"),
            "local_tags": self.tags,
            "inheritable_metadata": config.get("metadata"),
            "local_metadata": self.metadata,
        }

    def _run_sink(self) -> Callable[[str, dict[str, Any]], None]:
        """Event sink for ``_stream`` (no run manager): the current call's run."""
        handle = _RUN.get()
        if handle is None:
            return _guarded_dispatch
        run_id, config = handle
        manager = CallbackManager.configure(**self._manager_options(config))

        def sink(name: str, data: dict[str, Any]) -> None:
            manager.on_custom_event(name, data, run_id=run_id)

        return sink

    def _arun_manager(self) -> tuple[AsyncCallbackManager, uuid.UUID] | None:
        handle = _RUN.get()
        if handle is None:
            return None
        run_id, config = handle
        manager = AsyncCallbackManager.configure(**self._manager_options(config))
        return manager, run_id

    # ------------------------------------------------------------------ generate
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        result = self._run(call, Hooks(on_event=_event_sink(run_manager)))
        return self._chat_result(result, call)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Decoding runs in a worker thread so the event loop stays free; cancelling the
        # task sets a flag the decoder polls between forward passes.
        call = self._prepare(messages, stop, kwargs)
        loop = asyncio.get_running_loop()
        stop_flag = threading.Event()
        hooks = Hooks(
            on_event=_async_event_sink(run_manager, loop, stop_flag),
            should_stop=stop_flag.is_set,
        )
        context = contextvars.copy_context()
        future = loop.run_in_executor(_DECODE_THREADS, context.run, self._run, call, hooks)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop_flag.set()
            future.add_done_callback(_swallow)
            raise
        return self._chat_result(result, call)

    # ------------------------------------------------------------------ stream
    def _stream_worker(
        self,
        call: _Call,
        put: Callable[[tuple[str, Any]], None],
        stop_flag: threading.Event,
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        try:
            on_text = (lambda _request, delta: put(("text", delta))) if call.stream_text else None
            hooks = Hooks(on_event=on_event, on_text=on_text, should_stop=stop_flag.is_set)
            put(("done", self._run(call, hooks)))
        except BaseException as exc:  # re-raised in the consuming thread
            put(("error", exc))

    def _final_chunk(self, result: Result, call: _Call) -> ChatGenerationChunk:
        text, tool_calls, metadata, usage = self._message_parts(result, call)
        # Floats and lists (rewards, timings) and input_tokens go on this one chunk only:
        # LangChain sums ints across chunks but refuses to merge two different floats.
        chunk = AIMessageChunk(
            content="" if call.stream_text else text,
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
        call = self._prepare(messages, stop, kwargs)
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop_flag = threading.Event()
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run,
            args=(
                self._stream_worker,
                call,
                items.put,
                stop_flag,
                _event_sink(run_manager) if run_manager is not None else self._run_sink(),
            ),
            daemon=True,
            name="aligned-stream",
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
                    yield self._final_chunk(value, call)
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
        call = self._prepare(messages, stop, kwargs)
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop_flag = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed after a cancel
                loop.call_soon_threadsafe(items.put_nowait, item)

        context = contextvars.copy_context()
        future = loop.run_in_executor(
            _DECODE_THREADS,
            context.run,
            self._stream_worker,
            call,
            put,
            stop_flag,
            _async_event_sink(run_manager, loop, stop_flag, self._arun_manager()),
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
                    yield self._final_chunk(value, call)
                    break
        finally:
            # Cancellation or an early break: tell the decoder to stop promptly.
            stop_flag.set()
            future.add_done_callback(_swallow)

    # ------------------------------------------------------------------ tools
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
        formatted = []
        for index, tool in enumerate(tools):
            label = getattr(tool, "name", None) or getattr(tool, "__name__", None)
            if label is None and isinstance(tool, Mapping):
                label = tool.get("function", tool).get("name") or tool.get("title")
            try:
                formatted.append(convert_to_openai_tool(tool))
            except Exception as exc:
                raise InvalidInputError(
                    f"tool {index} ({label or repr(tool)[:40]}) cannot be rendered as a "
                    f"function schema: {exc}"
                ) from exc
            try:
                json.dumps(formatted[-1])
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"tool {index} ({label}) has a schema that is not JSON-serialisable: {exc}"
                ) from exc
        try:  # the validity reward needs valid JSON schemas: check them now, not mid-call
            rewards.ToolCallScorer(formatted)
        except rewards.InvalidScorerConfig as exc:
            raise InvalidInputError(f"bind_tools: {exc}") from exc
        choice = _normalize_tool_choice(tool_choice)
        names = {_tool_name(t) for t in formatted}
        if choice not in (None, "any", "none") and choice not in names:
            raise InvalidInputError(
                f"tool_choice={choice!r} names no bound tool; bound: {', '.join(sorted(names))}"
            )
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
        if method not in ("json_schema", "function_calling", "json_mode"):
            raise InvalidInputError(
                f"method={method!r}: use 'json_schema', 'function_calling' or 'json_mode'"
            )
        if schema is None and method != "json_mode":
            raise InvalidInputError(f"method={method!r} needs a schema")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        ls_format = {"kwargs": {"method": method}, "schema": schema}
        if method == "function_calling":
            tool = convert_to_openai_tool(schema)
            name = tool["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
            parser: Runnable = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if is_pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        else:
            # json_mode with a schema still shows and rewards the schema: it only makes
            # a valid object more likely.
            try:  # the validity reward needs a valid JSON schema: check it now
                json_schema = (
                    {"type": "object"} if schema is None else convert_to_json_schema(schema)
                )
                rewards.JSONSchemaScorer(json_schema)
            except Exception as exc:
                raise InvalidInputError(
                    f"with_structured_output: schema {schema!r:.80} is not a usable JSON "
                    f"schema, pydantic model or TypedDict: {exc}"
                ) from exc
            response_format = {"type": method, "schema": json_schema}
            bind_kwargs: dict[str, Any] = {"response_format": response_format}
            if schema is not None:
                bind_kwargs["ls_structured_output_format"] = ls_format
            llm = self.bind(**bind_kwargs)
            parser = _json_parser(schema)
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        with_fallback = parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")
        return RunnableMap(raw=llm) | with_fallback


def _normalize_tool_choice(choice: Any) -> str | None:
    if choice in (None, "auto", False):
        return None
    if choice in (True, "required", "any"):
        return "any"
    if isinstance(choice, Mapping):
        # OpenAI / Anthropic dicts: {"type": "function", "function": {"name": ...}},
        # {"type": "tool", "name": ...}, {"type": "auto" | "any" | "none" | "required"}.
        function = choice.get("function")
        name = (function.get("name") if isinstance(function, Mapping) else None) or choice.get(
            "name"
        )
        if name:
            return str(name)
        return _normalize_tool_choice(choice.get("type"))
    if isinstance(choice, str):
        return choice
    raise InvalidInputError(
        f"tool_choice={choice!r}: use None, 'auto', 'any', 'required', 'none' or a tool name"
    )


def _add_instruction(
    messages: list[dict[str, Any]], text: str, *, prefer_user: bool = False
) -> list[dict[str, Any]]:
    """Add an instruction: to the final user message (``prefer_user``, when the
    conversation ends with one), else to the system message (created when absent)."""
    if prefer_user and messages and messages[-1]["role"] == "user":
        last = dict(messages[-1])
        last["content"] = f"{last['content']}\n\n{text}" if last["content"] else text
        return [*messages[:-1], last]
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{text}" if first["content"] else text
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _add_json_demonstration(
    messages: list[dict[str, Any]], schema: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Put one demonstration exchange after the system message: a user asking for an
    example object and the assistant answering with a placeholder object valid for the
    schema. Small models copy the form: on the 30 JSON prompts of
    ``benchmarks/bench_structured.py`` SmolLM2-135M returned 3 valid objects without it
    and 17 with it (plain sampling, one seed per prompt). Left out when the
    conversation does not continue with a user turn (roles must alternate)."""
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    rest = messages[len(system) :]
    if not rest or rest[0]["role"] != "user":
        return messages
    example = placeholder_arguments(schema) if schema else {}
    demonstration = [
        {"role": "user", "content": "Reply with an example object."},
        {"role": "assistant", "content": json.dumps(example, ensure_ascii=False)},
    ]
    return [*system, *demonstration, *rest]


def _swallow(future: asyncio.Future[Any]) -> None:
    """Retrieve a cancelled worker's outcome so asyncio does not log it."""
    if not future.cancelled():
        with contextlib.suppress(BaseException):
            future.result()


# --------------------------------------------------------------------------- events
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


def _async_event_sink(
    run_manager: AsyncCallbackManagerForLLMRun | None,
    loop: asyncio.AbstractEventLoop,
    stop_flag: threading.Event,
    fallback: tuple[AsyncCallbackManager, uuid.UUID] | None = None,
) -> Callable[[str, dict[str, Any]], None]:
    """A sink the decoding thread calls: async handlers (``astream_events``) live on the
    event loop, so the event is dispatched there and awaited, keeping events in order.
    Once the call is cancelled, events are dropped instead of waiting on the loop."""
    manager, run_id = fallback if fallback is not None else (None, None)
    if run_manager is not None:
        run_id = run_manager.run_id
        manager = AsyncCallbackManager(
            handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.parent_run_id,
            tags=run_manager.tags,
            inheritable_tags=run_manager.inheritable_tags,
            metadata=run_manager.metadata,
            inheritable_metadata=run_manager.inheritable_metadata,
        )

    async def dispatch(name: str, data: dict[str, Any]) -> None:
        if manager is None or run_id is None:
            await _aguarded_dispatch(name, data)
        else:
            await manager.on_custom_event(name, data, run_id=run_id)

    def sink(name: str, data: dict[str, Any]) -> None:
        if stop_flag.is_set() or loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(dispatch(name, data), loop)
        except RuntimeError:  # the loop stopped
            return
        # A cancelled call must never wait on a loop that may be gone.
        deadline = _EVENT_TIMEOUT
        while not stop_flag.is_set():
            try:
                future.result(timeout=min(deadline, 0.1))
                return
            except concurrent.futures.TimeoutError:
                deadline -= 0.1
                if deadline <= 0:
                    break
        future.cancel()

    return sink


async def _aguarded_dispatch(name: str, data: dict[str, Any]) -> None:
    with contextlib.suppress(RuntimeError):
        await adispatch_custom_event(name, data)


def _guarded_dispatch(name: str, data: dict[str, Any]) -> None:
    # Without a parent run (a direct .stream() call) LangChain has nowhere to send
    # custom events and raises; the event is then simply dropped.
    with contextlib.suppress(RuntimeError):
        dispatch_custom_event(name, data)
