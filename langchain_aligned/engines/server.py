"""A vLLM (or other OpenAI-compatible) server as the engine: the same strategies over
streaming ``/v1/completions``.

This is the path to many GPUs and machines: the server scales (tensor and pipeline
parallelism, Ray across nodes, continuous batching), the client stays the same. Each
candidate is one streaming completion request (``n = 1``, its own ``seed``), whose
prompt is the token ids this library rendered, so candidates of a request match the
server's cached prompt blocks; the lockstep of :mod:`.streamed` turns the streams
back into the engine seam. A rejected candidate's stream is closed, which makes vLLM
abort its request and free its blocks.

The fields sent beyond OpenAI's (``top_k``, ``stop_token_ids``, ``ignore_eos``,
``return_token_ids``, ``skip_special_tokens``) are vLLM's; a server that does not take
token-id prompts or these fields answers with an error this engine reports.

Failures become :class:`~langchain_aligned.errors.EngineError` naming the URL: a server
that cannot be reached (:class:`~langchain_aligned.errors.EngineUnavailableError`, after
``max_retries`` retries), an error status with the server's message, a model name the
server does not serve (with the names it does), a stream that stops for ``timeout``
seconds. Retrying is safe only before a candidate's first token (the same seed then
gives the same reply), so only then is a request retried.

Statistics: the server's forward passes cannot be observed from a client, so the
per-batch pass counts and peaks are absent (None), not zero.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..decoding.params import SamplingParams
from ..errors import EngineError, EngineUnavailableError, InvalidInputError
from ..models.loading import model_location, remote_handle
from .base import Candidate, EngineCounters
from .server_tokenizer import served_tokenizer
from .streamed import StreamedEngine, StreamState, TokenDelta

__all__ = ["ServerEngine", "ServerSettings", "ServerState", "clear_server_engines", "server_engine"]


@dataclass(frozen=True)
class ServerSettings:
    """How to reach the server (``engine_kwargs`` of ``engine="openai"``).

    Raises:
        InvalidInputError: at construction, naming the bad value.
    """

    base_url: str
    """The server's OpenAI-compatible root, e.g. ``"http://127.0.0.1:8000/v1"`` (a URL
    without ``/v1`` gets it added)."""
    served_model: str | None = None
    """The model name the server serves (``--served-model-name``); None takes the one
    model it lists."""
    tokenizer: str | None = None
    """A Hugging Face id or local folder of the served model's tokenizer; None takes
    ``model`` when it loads locally, else the server's own (vLLM's ``/tokenize``)."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer …`` (vLLM's ``--api-key``)."""
    timeout: float = 120.0
    """Seconds to wait for a connection or for the next streamed chunk."""
    max_retries: int = 2
    """Retries of a request that failed before its first token (connection refused or
    reset, 429, 5xx), with exponential back-off from 0.5 s."""

    def __post_init__(self) -> None:
        url = self.base_url
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"base_url={url!r} must be an http(s) URL such as 'http://127.0.0.1:8000/v1'"
            )
        url = url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        object.__setattr__(self, "base_url", url)
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float):
            raise InvalidInputError(f"timeout={self.timeout!r} must be a number of seconds > 0")
        if not self.timeout > 0:
            raise InvalidInputError(f"timeout={self.timeout!r} must be a number of seconds > 0")
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInputError(f"max_retries={retries!r} must be an integer ≥ 0")

    @classmethod
    def from_kwargs(cls, engine_kwargs: Mapping[str, Any] | None) -> ServerSettings:
        """The settings in ``engine_kwargs``.

        Raises:
            InvalidInputError: no ``base_url``, or a key that is no setting.
        """
        given = dict(engine_kwargs or {})
        names = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(given) - names)
        if unknown:
            raise InvalidInputError(
                f"engine='openai' got unknown engine_kwargs {unknown}; it takes {sorted(names)}"
            )
        if "base_url" not in given:
            raise InvalidInputError(
                "engine='openai' needs engine_kwargs={'base_url': 'http://HOST:PORT/v1'} "
                "(the server's address)"
            )
        return cls(**given)


@dataclass(eq=False)
class ServerState(StreamState):
    """A streamed state whose streams are HTTP requests."""

    inbox: queue.Queue[tuple[int, TokenDelta | BaseException]] = field(default_factory=queue.Queue)
    """What the streams brought, by candidate key, in arrival order."""
    tasks: dict[int, Any] = field(default_factory=dict)
    """Each candidate's streaming task (a ``concurrent.futures.Future``)."""


_ENGINES: dict[tuple[str, ServerSettings], ServerEngine] = {}
_ENGINES_LOCK = threading.Lock()


def server_engine(model: Any, engine_kwargs: Mapping[str, Any] | None) -> ServerEngine:
    """The process's one :class:`ServerEngine` for ``model`` (its tokenizer: an id, a
    folder or an embedded alias) and these settings.

    Raises:
        InvalidInputError: bad settings.
        EngineError: the server cannot be reached or does not serve the model.
    """
    settings = ServerSettings.from_kwargs(engine_kwargs)
    location = model_location(model)
    key = (location, settings)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = ServerEngine(location, settings)
            _ENGINES[key] = engine
        return engine


def clear_server_engines() -> None:
    """Close every engine :func:`server_engine` built."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


class ServerEngine(StreamedEngine):
    """The engine seam over a vLLM / OpenAI-compatible server (see the module docstring)."""

    name = "openai"

    def __init__(self, location: str, settings: ServerSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aligned-server-engine", daemon=True
        )
        self._thread.start()
        self._client: Any = None
        served, context = self._call(self._check_model(location))
        self.served_model = served
        """The model name requests are sent with."""
        tokenizer = served_tokenizer(
            location, settings.tokenizer, served, settings.base_url, self._post_json
        )
        super().__init__(
            remote_handle(
                self,
                tokenizer,
                f"{served} at {settings.base_url}",
                context_length=context,
                location=location,
            )
        )

    def close(self) -> None:
        """Close the connections and stop the engine's event-loop thread."""
        if self._client is not None:
            self._call(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def new_state(self, candidates: list[Candidate], counters: EngineCounters) -> ServerState:
        # Forward passes and KV peaks happen on the server, unseen: absent, not zero.
        counters.counts_passes = False
        return ServerState(candidates, counters)

    # ---------------------------------------------------------------- the streams
    def payload(
        self, prompt: Sequence[int], params: SamplingParams, seed: int | None, max_tokens: int
    ) -> dict[str, Any]:
        """The ``/v1/completions`` body of one candidate's request."""
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": list(prompt),
            "max_tokens": max_tokens,
            "temperature": float(params.temperature),
            "top_p": float(params.top_p),
            "top_k": int(params.top_k),
            "n": 1,
            "stream": True,
            "logprobs": 0,
            "return_token_ids": True,
            # Exactly the ids that end a reply here (none with ignore_eos: the server's
            # ignore_eos skips only its own EOS check, not stop_token_ids).
            "stop_token_ids": self.stop_token_ids(params),
            "ignore_eos": params.ignore_eos,
            "skip_special_tokens": False,
        }
        if not params.greedy and seed is not None:
            body["seed"] = int(seed)
        return body

    def start_requests(self, state: StreamState, params: SamplingParams) -> None:
        own = self._own_server(state)
        for candidate in state.candidates:
            key = id(candidate)
            body = self.payload(
                state.prompts[key],
                params,
                candidate.seed,
                self.room(candidate, params),
            )
            own.tasks[key] = asyncio.run_coroutine_threadsafe(
                self._stream(own, key, body), self._loop
            )

    def wait_for_tokens(self, state: StreamState) -> None:
        own = self._own_server(state)
        try:
            items = [own.inbox.get(timeout=self.settings.timeout)]
        except queue.Empty:
            raise EngineError(
                f"the server at {self.settings.base_url} sent nothing for "
                f"{self.settings.timeout} s (timeout); raise engine_kwargs['timeout'] or "
                "check the server"
            ) from None
        while True:  # everything else that already arrived
            try:
                items.append(own.inbox.get_nowait())
            except queue.Empty:
                break
        for key, item in items:
            if isinstance(item, BaseException):
                raise item
            state.receive(key, item)

    def abort_requests(self, state: StreamState, candidates: Sequence[Candidate]) -> None:
        own = self._own_server(state)
        for candidate in candidates:
            task = own.tasks.pop(id(candidate), None)
            if task is not None:
                # Cancelling the task closes its stream; vLLM then aborts the request.
                task.cancel()

    # ------------------------------------------------------------------ helpers
    def _own_server(self, state: StreamState) -> ServerState:
        if not isinstance(state, ServerState):
            raise InvalidInputError(
                f"the {self.name} engine got a state of another engine ({type(state).__name__})"
            )
        return state

    def _call(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the engine's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            headers = {}
            if self.settings.api_key:
                headers["Authorization"] = f"Bearer {self.settings.api_key}"
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.settings.timeout),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return self._client

    def _post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """The JSON answer of the server's ``path`` (at its root, beside ``/v1``)."""
        url = self.settings.base_url.removesuffix("/v1") + path
        response = self._call(self._send("POST", url, dict(body)))
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"{url} did not answer with JSON: {response.text[:200]}") from exc

    async def _check_model(self, model: str) -> tuple[str, int | None]:
        """The served model's name and context, from ``/models``: ``served_model``, else
        ``model`` when the server serves a model of that name, else its one model."""
        url = f"{self.settings.base_url}/models"
        response = await self._send("GET", url)
        try:
            listed = response.json()["data"]
            names = [str(entry["id"]) for entry in listed]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(
                f"{url} did not answer with a model list: {response.text[:200]}"
            ) from exc
        wanted = self.settings.served_model
        if wanted is None and model in names:
            wanted = model
        if wanted is None:
            if len(names) != 1:
                raise InvalidInputError(
                    f"the server at {self.settings.base_url} serves {names}; say which with "
                    "engine_kwargs={'served_model': NAME}"
                )
            wanted = names[0]
        if wanted not in names:
            raise EngineError(
                f"the server at {self.settings.base_url} does not serve {wanted!r}; it serves "
                f"{names}"
            )
        entry = listed[names.index(wanted)]
        context = entry.get("max_model_len") if isinstance(entry, Mapping) else None
        return wanted, int(context) if isinstance(context, int) else None

    async def _send(self, method: str, url: str, body: Any = None) -> Any:
        """One non-streaming request, retried where safe; an error status raises."""
        import httpx

        for attempt in range(self.settings.max_retries + 1):
            try:
                response = await self._http().request(method, url, json=body)
            except httpx.HTTPError as exc:
                if attempt < self.settings.max_retries:
                    await asyncio.sleep(0.5 * 2**attempt)
                    continue
                raise EngineUnavailableError(
                    f"cannot reach the server at {url}: {type(exc).__name__}: {exc} "
                    f"(after {attempt + 1} attempts); is it running?"
                ) from exc
            if _retryable(response.status_code) and attempt < self.settings.max_retries:
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            if response.status_code >= 400:
                raise EngineError(_status_message(url, response.status_code, response.text))
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _stream(self, state: ServerState, key: int, body: dict[str, Any]) -> None:
        """Stream one candidate's completion into ``state.inbox``."""
        import httpx

        url = f"{self.settings.base_url}/completions"
        received = False
        try:
            for attempt in range(self.settings.max_retries + 1):
                try:
                    async with self._http().stream("POST", url, json=body) as response:
                        if response.status_code >= 400:
                            text = (await response.aread()).decode("utf-8", "replace")
                            if (
                                _retryable(response.status_code)
                                and attempt < self.settings.max_retries
                            ):
                                await asyncio.sleep(0.5 * 2**attempt)
                                continue
                            raise EngineError(_status_message(url, response.status_code, text))
                        async for line in response.aiter_lines():
                            delta = _parse_chunk(url, line)
                            if delta is None:
                                continue
                            received = True
                            state.inbox.put((key, delta))
                            if delta.finish_reason is not None:
                                return
                        raise EngineError(f"the stream from {url} ended without a finish reason")
                except httpx.HTTPError as exc:
                    if not received and attempt < self.settings.max_retries:
                        await asyncio.sleep(0.5 * 2**attempt)
                        continue
                    kind = EngineUnavailableError if not received else EngineError
                    raise kind(
                        f"the server at {url} failed: {type(exc).__name__}: {exc} "
                        f"(after {attempt + 1} attempts)"
                    ) from exc
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            state.inbox.put((key, exc))


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _status_message(url: str, status: int, text: str) -> str:
    detail = text
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        detail = error.get("message", text) if isinstance(error, dict) else str(error)
    except ValueError:
        pass
    return f"the server at {url} answered {status}: {str(detail)[:300]}"


def _parse_chunk(url: str, line: str) -> TokenDelta | None:
    """The delta in one server-sent-events line (None for blank lines and ``[DONE]``)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return None
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise EngineError(f"{url} streamed a chunk that is not JSON: {data[:200]}") from exc
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise EngineError(f"the server at {url} failed mid-stream: {str(message)[:300]}")
    choices = chunk.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    tokens = choice.get("token_ids")
    if tokens is None:
        raise EngineError(
            f"{url} streamed no token ids; this engine needs a vLLM server (which returns "
            "them with return_token_ids=true)"
        )
    logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
    return TokenDelta(
        [int(t) for t in tokens],
        [float(v) for v in logprobs] if logprobs and len(logprobs) == len(tokens) else None,
        choice.get("finish_reason"),
    )
