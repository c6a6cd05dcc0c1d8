"""Start and stop a real vLLM OpenAI-compatible server on 127.0.0.1 (the vLLM tier's
fixtures and benchmarks use it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER_START_SECONDS = 300
"""How long a server may take to become healthy (about 50 s on two cores)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: str, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``vllm serve`` for ``folder`` on 127.0.0.1 in its own process group and
    wait until it is healthy; returns the process and its ``/v1`` URL."""
    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        folder,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--block-size",
        "32",
        "--enforce-eager",
        "--seed",
        "0",
        "--generation-config",
        "vllm",
        "--kv-cache-memory-bytes",
        str(1024**3),
        *extra,
    ]
    handle = log.open("wb")
    process = subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(process)
    raise RuntimeError(
        f"vllm serve was not healthy in {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}"
    )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (one child outlives a SIGTERM to the
    parent alone), by its process id."""
    with_group = os.getpgid(process.pid)
    os.killpg(with_group, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(with_group, signal.SIGKILL)
    process.wait(timeout=30)
