"""Sharing forward passes across the inputs of one ``batch`` / ``abatch`` call.

LangChain runs a batch's inputs concurrently (threads for ``batch``, tasks whose
decoding runs in worker threads for ``abatch``), each through its own run and
callbacks. Inside :func:`sharing_batches` each input hands its prepared call to
:func:`submit`, which meets the other inputs of the batch at a rendezvous: the first
call of a compatible group (same model, tools, output format, sampling parameters)
leads, waits until every input has arrived or a quiet window passes, decodes the group
in one engine call and hands each member its result. If the shared call fails, each
member that has seen no output yet is decoded alone, so an error reaches only the
input that caused it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..decoding.base import Hooks, Result

__all__ = ["QUIET_WINDOW_SECONDS", "Decode", "sharing_batches", "submit"]

QUIET_WINDOW_SECONDS = 0.05
"""How long the leader of a group waits for another input before decoding without
it: inputs held back by ``max_concurrency``, or ones that failed before decoding, may
never arrive."""


class Groupable(Protocol):
    """A prepared call: calls with equal keys may be decoded together."""

    def group_key(self) -> str: ...


Decode = Callable[[Sequence[Any], Hooks], list[Result]]
"""Decodes a group of calls in one engine call: one result per call, in order."""


@dataclass
class _Member:
    call: Any
    hooks: Hooks
    result: Result | None = None
    error: BaseException | None = None
    emitted: bool = False
    """Text or an event of the shared decode has reached this member's caller."""
    done: threading.Event = field(default_factory=threading.Event)


class _Rendezvous:
    """Where the inputs of one batch meet (see the module docstring)."""

    def __init__(self, expected: int, window: float) -> None:
        self.expected = expected
        self.window = window
        self.arrived = 0
        self.condition = threading.Condition()
        self.groups: dict[str, list[_Member]] = {}

    def submit(self, call: Groupable, hooks: Hooks, decode: Decode) -> Result:
        # Only calls of the same decoder (the same chat model) share an engine call.
        key = f"{id(getattr(decode, '__self__', decode))}:{call.group_key()}"
        member = _Member(call, hooks)
        with self.condition:
            self.arrived += 1
            group = self.groups.setdefault(key, [])
            group.append(member)
            self.condition.notify_all()
            leader = len(group) == 1
            if leader:
                # Wait for the rest of the batch (or a quiet window).
                while self.arrived < self.expected:
                    before = self.arrived
                    self.condition.wait(self.window)
                    if self.arrived == before:
                        break
                del self.groups[key]
        if leader:
            _decode_group(group, decode)
        else:
            member.done.wait()
        if member.error is not None:
            raise member.error
        assert member.result is not None
        return member.result


def _shared_hooks(group: list[_Member]) -> Hooks:
    """Hooks of the shared decode: each event and text delta goes to the member whose
    request it concerns (renumbered as its request 0); decoding stops only when every
    member's caller has given up."""

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

    def stopped() -> bool:
        return all(m.hooks.should_stop is not None and m.hooks.should_stop() for m in group)

    streaming = any(m.hooks.on_text is not None for m in group)
    return Hooks(
        on_event=route_event, on_text=route_text if streaming else None, should_stop=stopped
    )


def _decode_group(group: list[_Member], decode: Decode) -> None:
    try:
        try:
            results = decode([m.call for m in group], _shared_hooks(group))
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
                    (member.result,) = decode([member.call], member.hooks)
                except Exception as error:
                    member.error = error
    except BaseException as exc:
        for member in group:
            if member.result is None and member.error is None:
                member.error = exc
    finally:
        for member in group:
            member.done.set()


_BATCH: contextvars.ContextVar[_Rendezvous | None] = contextvars.ContextVar(
    "aligned_batch", default=None
)
"""The rendezvous of the ``batch``/``abatch`` call in progress (inherited by the
threads and tasks LangChain runs the inputs in)."""


@contextlib.contextmanager
def sharing_batches(expected: int, window: float = QUIET_WINDOW_SECONDS) -> Iterator[None]:
    """Within the block, :func:`submit` gathers the calls of ``expected`` inputs."""
    token = _BATCH.set(_Rendezvous(expected, window))
    try:
        yield
    finally:
        _BATCH.reset(token)


def submit(call: Groupable, hooks: Hooks, decode: Decode) -> Result:
    """Decode ``call``: with the compatible calls of the batch in progress (inside
    :func:`sharing_batches`), else alone."""
    batch = _BATCH.get()
    if batch is None:
        (result,) = decode([call], hooks)
        return result
    return batch.submit(call, hooks, decode)
