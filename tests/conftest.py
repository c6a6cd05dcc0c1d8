"""Shared test set-up: offline hub, tiny models on the path, fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import pytest
import torch

# Two cores: more intra-op threads only add contention in small-tensor tests.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_handle():
    """The default tiny causal LM (seed 0) as a ModelHandle."""
    from tiny import tiny_pair

    from langchain_aligned.models import load_model

    return load_model(tiny_pair(0))


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct handle (slow tier)."""
    from langchain_aligned.models import load_model

    return load_model("smollm2-135m-instruct", dtype="float32")


def pytest_collection_modifyitems(config, items):
    # Everything under tests/slow uses the embedded real models: mark it `slow`.
    # Everything under tests/vllm runs the real vLLM engine: mark it `vllm`.
    slow_dir = Path(__file__).parent / "slow"
    vllm_dir = Path(__file__).parent / "vllm"
    for item in items:
        parents = Path(str(item.fspath)).parents
        if slow_dir in parents:
            item.add_marker(pytest.mark.slow)
        if vllm_dir in parents:
            item.add_marker(pytest.mark.vllm)
            # vLLM and the torch modules it imports warn about their own deprecated
            # internals; deprecations reached through this library's calls still fail.
            for category in ("DeprecationWarning", "FutureWarning"):
                item.add_marker(
                    pytest.mark.filterwarnings(f"ignore::{category}:(vllm|torch|triton)(\\..*)?")
                )
