"""Runs and custom events: where a strategy's event goes from the decoding thread to
the callback handlers.

The path of one event, in full:

1. a strategy calls ``hooks.event(name, data)`` (``langchain_aligned.decoding.Hooks``)
   in the decoding thread; ``hooks.on_event`` is a *sink* built here;
2. the sink finds the run the event belongs to (:func:`_run_target`): the run manager
   LangChain gave ``_generate`` / ``_agenerate``; else the run id and config of the
   ``invoke`` / ``stream`` call in progress, which :func:`call_run` records because
   LangChain calls ``_stream`` / ``_astream`` without a run manager; else none;
3. it hands the event to a callback manager for that run
   (``on_custom_event(name, data, run_id=...)``), which calls each handler's
   ``on_custom_event`` and feeds ``astream_events``. The synchronous sink
   (:func:`event_sink`) calls it in the decoding thread. The asynchronous sink
   (:func:`async_event_sink`) schedules it on the caller's event loop, where async
   handlers live, and waits for it (at most :data:`EVENT_TIMEOUT_SECONDS`) so events
   stay in order; once the call is cancelled it drops events instead of waiting.
   Without a run, the event goes to LangChain's ``dispatch_custom_event`` (the parent
   run of the context, if any) and is dropped when there is none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig, ensure_config

__all__ = [
    "EVENT_POLL_SECONDS",
    "EVENT_TIMEOUT_SECONDS",
    "EventSink",
    "RunHandle",
    "acall_in_run",
    "adispatch_in_context",
    "async_event_sink",
    "call_in_run",
    "call_run",
    "dispatch_in_context",
    "event_sink",
    "in_run",
    "in_run_astream",
    "in_run_stream",
]

EVENT_TIMEOUT_SECONDS = 30.0
"""Longest the decoding thread waits for the event loop to hand one event to the async
handlers; past it the event is dropped and decoding goes on (a stalled loop or
handler must not hang decoding forever)."""

EVENT_POLL_SECONDS = 0.1
"""How often a waiting decoding thread checks whether its call was cancelled."""

EventSink = Callable[[str, dict[str, Any]], None]
"""Takes one custom event (name, data) from the decoding thread."""

RunHandle = tuple[uuid.UUID, RunnableConfig]
"""The run id and config of a model call."""

T = TypeVar("T")

_RUN: contextvars.ContextVar[RunHandle | None] = contextvars.ContextVar("aligned_run", default=None)
"""The run of the ``invoke`` / ``stream`` call in progress (see the module docstring)."""


# --------------------------------------------------------------------------- the call's run
def call_run(config: RunnableConfig | None) -> tuple[RunnableConfig, RunHandle]:
    """``config`` with a run id (a fresh one unless given) and the call's handle."""
    config = ensure_config(config)
    run_id = config.get("run_id") or uuid.uuid4()
    config = {**config, "run_id": run_id}
    return config, (run_id, config)


@contextlib.contextmanager
def in_run(handle: RunHandle) -> Iterator[None]:
    """Within the block, the call in progress is ``handle``'s run."""
    token = _RUN.set(handle)
    try:
        yield
    finally:
        _RUN.reset(token)


def call_in_run(
    method: Callable[..., T], input: Any, config: RunnableConfig | None, **kwargs: Any
) -> T:
    """``method(input, config, **kwargs)`` as a call with its own run (see :func:`call_run`)."""
    config, handle = call_run(config)
    with in_run(handle):
        return method(input, config, **kwargs)


async def acall_in_run(
    method: Callable[..., Awaitable[T]], input: Any, config: RunnableConfig | None, **kwargs: Any
) -> T:
    """Async :func:`call_in_run`."""
    config, handle = call_run(config)
    with in_run(handle):
        return await method(input, config, **kwargs)


def in_run_stream(inner: Iterator[T], handle: RunHandle) -> Iterator[T]:
    """``inner``'s items, with ``handle``'s run current only while ``inner`` runs,
    never while the consumer does."""
    try:
        while True:
            with in_run(handle):
                try:
                    item = next(inner)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()


async def in_run_astream(inner: AsyncIterator[T], handle: RunHandle) -> AsyncIterator[T]:
    """Async :func:`in_run_stream`."""
    try:
        while True:
            with in_run(handle):
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    return
            yield item
    finally:
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()


# --------------------------------------------------------------------------- managers
def _run_target(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    model: BaseChatModel,
    manager_class: type[CallbackManager] | type[AsyncCallbackManager],
) -> tuple[Any, uuid.UUID] | None:
    """A ``manager_class`` for the run an event belongs to, and its run id (step 2)."""
    if run_manager is not None:
        manager = manager_class(
            handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.parent_run_id,
            tags=run_manager.tags,
            inheritable_tags=run_manager.inheritable_tags,
            metadata=run_manager.metadata,
            inheritable_metadata=run_manager.inheritable_metadata,
        )
        return manager, run_manager.run_id
    handle = _RUN.get()
    if handle is None:
        return None
    run_id, config = handle
    # What LangChain configures a run's callback manager from.
    manager = manager_class.configure(
        inheritable_callbacks=config.get("callbacks"),
        local_callbacks=model.callbacks,
        verbose=model.verbose,
        inheritable_tags=config.get("tags"),
        local_tags=model.tags,
        inheritable_metadata=config.get("metadata"),
        local_metadata=model.metadata,
    )
    return manager, run_id


# --------------------------------------------------------------------------- sinks
def event_sink(run_manager: CallbackManagerForLLMRun | None, model: BaseChatModel) -> EventSink:
    """A sink that hands events to the run's handlers in the decoding thread."""
    target = _run_target(run_manager, model, CallbackManager)
    if target is None:
        return dispatch_in_context
    manager, run_id = target

    def sink(name: str, data: dict[str, Any]) -> None:
        manager.on_custom_event(name, data, run_id=run_id)

    return sink


def async_event_sink(
    run_manager: AsyncCallbackManagerForLLMRun | None,
    model: BaseChatModel,
    loop: asyncio.AbstractEventLoop,
    cancelled: threading.Event,
) -> EventSink:
    """A sink for a decoding thread serving a coroutine on ``loop``: each event is
    handled on the loop and awaited; once ``cancelled`` is set events are dropped."""
    target = _run_target(run_manager, model, AsyncCallbackManager)

    async def dispatch(name: str, data: dict[str, Any]) -> None:
        if target is None:
            await adispatch_in_context(name, data)
        else:
            manager, run_id = target
            await manager.on_custom_event(name, data, run_id=run_id)

    def sink(name: str, data: dict[str, Any]) -> None:
        if cancelled.is_set() or loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(dispatch(name, data), loop)
        except RuntimeError:  # the loop stopped
            return
        # A cancelled call must never wait on a loop that may be gone.
        waited = 0.0
        while not cancelled.is_set() and waited < EVENT_TIMEOUT_SECONDS:
            try:
                future.result(timeout=EVENT_POLL_SECONDS)
                return
            except concurrent.futures.TimeoutError:
                waited += EVENT_POLL_SECONDS
        future.cancel()

    return sink


def dispatch_in_context(name: str, data: dict[str, Any]) -> None:
    """Send a custom event to the parent run of the current context; without one (a
    direct ``._stream()`` call) LangChain has nowhere to send it and raises, and the
    event is then simply dropped."""
    with contextlib.suppress(RuntimeError):
        dispatch_custom_event(name, data)


async def adispatch_in_context(name: str, data: dict[str, Any]) -> None:
    """Async :func:`dispatch_in_context`."""
    with contextlib.suppress(RuntimeError):
        await adispatch_custom_event(name, data)
