"""Start and stop a local vLLM OpenAI-compatible server (tests, benchmarks, notebooks).

``with VLLMServer(model) as server: ...`` starts ``vllm serve`` on 127.0.0.1 in its own
process group, waits until ``/health`` answers, and stops the whole group on exit (one
of vLLM's child processes outlives a SIGTERM to the parent alone). In production, run
``vllm serve`` yourself (docs/scale.md) and pass its URL as ``base_url``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from ..errors import EngineUnavailableError
from ..models.loading import model_location

__all__ = ["CPU_SERVER_ARGS", "VLLMServer", "free_port"]

CPU_SERVER_ARGS = (
    "--dtype",
    "float32",
    "--block-size",
    "32",
    "--enforce-eager",
    "--kv-cache-memory-bytes",
    str(1024**3),
)
"""Arguments added without CUDA (the reasons are those of ``vllm_local.CPU_DEFAULTS``)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    """A ``vllm serve`` process on 127.0.0.1 for ``model`` (an id, a folder or an
    embedded alias); :attr:`url` is its ``/v1`` root once started."""

    def __init__(
        self,
        model: Any,
        extra_args: Sequence[str] = (),
        *,
        port: int | None = None,
        start_seconds: float = 300.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.location = model_location(model)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.start_seconds = start_seconds
        self.log_path = (
            Path(log_path)
            if log_path
            else Path(tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")[1])
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's OpenAI-compatible root, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        args = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.location,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--seed",
            "0",
            "--generation-config",
            "vllm",
        ]
        if not torch.cuda.is_available():
            args += CPU_SERVER_ARGS
        return args + self.extra_args

    def start(self) -> VLLMServer:
        """Start the server and wait until it is healthy.

        Raises:
            EngineUnavailableError: it exited, or was not healthy in ``start_seconds``
                (the message ends with its log).
        """
        import httpx

        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineUnavailableError(
                    f"vllm serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
                if health.status_code == 200:
                    return self
            time.sleep(1)
        self.stop()
        raise EngineUnavailableError(
            f"vllm serve was not healthy in {self.start_seconds} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server's whole process group, by its process id."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        group = os.getpgid(process.pid)
        os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait(timeout=30)

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-characters:]

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
