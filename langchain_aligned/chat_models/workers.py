"""Decoding off the caller's thread: the worker threads and the queue bridges.

A decode is a *work* function ``work(hooks) -> Result``. :func:`decode_in_thread`
(for ``_stream``) and :func:`decode_in_worker` (for ``_agenerate`` / ``_astream``) run
it in another thread and bridge what it produces — text deltas as they are decoded,
then the :class:`~langchain_aligned.decoding.Result` or the error — through a queue to
the consuming generator. A consumer that stops early (``break``, an exception,
cancellation) sets the stop flag the decoder polls between forward passes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..decoding.base import Hooks, Result
from .runs import EventSink

__all__ = ["DECODE_THREADS", "Work", "decode_in_thread", "decode_in_worker"]

DECODE_THREADS = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="aligned-decode")
"""Worker threads of the async paths. Not the loop's default executor: LangChain
dispatches the events of synchronous callback handlers there, and a decoding thread
waits for its events to be handled — with decoding in the same pool, a few concurrent
calls would fill it and wait on handlers that can never run."""

Work = Callable[[Hooks], Result]
"""One decode, given the hooks it reports through."""

_Item = tuple[str, Any]
"""What crosses a bridge: ("text", delta), ("done", result) or ("error", exception)."""


def _produce(
    work: Work,
    put: Callable[[_Item], None],
    stop_flag: threading.Event,
    on_event: EventSink,
    stream_text: bool,
) -> None:
    """Run ``work`` in the worker, putting its deltas and its outcome on the bridge."""
    try:
        on_text = (lambda _request, delta: put(("text", delta))) if stream_text else None
        hooks = Hooks(on_event=on_event, on_text=on_text, should_stop=stop_flag.is_set)
        put(("done", work(hooks)))
    except BaseException as exc:  # re-raised in the consuming thread
        put(("error", exc))


def _unpack(kind: str, value: Any) -> str | Result:
    if kind == "error":
        raise value
    return value


def decode_in_thread(
    work: Work, on_event: EventSink, *, stream_text: bool
) -> Iterator[str | Result]:
    """Run ``work`` in a new thread; yield its text deltas (``stream_text``), then its
    result (last); its error is raised here."""
    items: queue.Queue[_Item] = queue.Queue()
    stop_flag = threading.Event()
    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run,
        args=(_produce, work, items.put, stop_flag, on_event, stream_text),
        daemon=True,
        name="aligned-stream",
    )
    worker.start()
    try:
        while True:
            kind, value = items.get()
            yield _unpack(kind, value)
            if kind == "done":
                return
    finally:
        stop_flag.set()


async def decode_in_worker(
    work: Work,
    make_sink: Callable[[asyncio.AbstractEventLoop, threading.Event], EventSink],
    *,
    stream_text: bool,
) -> AsyncIterator[str | Result]:
    """Async :func:`decode_in_thread` over :data:`DECODE_THREADS`; the event sink is
    made for this loop and the stop flag (``make_sink(loop, stop_flag)``)."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[_Item] = asyncio.Queue()
    stop_flag = threading.Event()

    def put(item: _Item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed after a cancel
            loop.call_soon_threadsafe(items.put_nowait, item)

    context = contextvars.copy_context()
    future = loop.run_in_executor(
        DECODE_THREADS,
        context.run,
        _produce,
        work,
        put,
        stop_flag,
        make_sink(loop, stop_flag),
        stream_text,
    )
    try:
        while True:
            kind, value = await items.get()
            yield _unpack(kind, value)
            if kind == "done":
                return
    finally:
        # Cancellation or an early break: tell the decoder to stop promptly.
        stop_flag.set()
        future.add_done_callback(_swallow)


def _swallow(future: asyncio.Future[Any]) -> None:
    """Retrieve a stopped worker's outcome so asyncio does not log it."""
    if not future.cancelled():
        with contextlib.suppress(BaseException):
            future.result()
