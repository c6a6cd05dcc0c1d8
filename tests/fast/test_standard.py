"""LangChain's standard chat-model suites on a tiny in-process model (fast tier).

A randomly initialised 2-layer model produces word salad, so tests that need a
meaningful answer (tool calls, structured output) are xfailed with their reason;
everything about the integration surface (invoke/stream/batch/async, metadata, usage,
stop, callbacks) must pass.
"""

from __future__ import annotations

import functools
import tempfile

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from scorers import CountingScorer
from standard_overrides import standard_suite
from tiny import tiny_pair

from langchain_aligned import BestOfN

PARAMS = {"model": tiny_pair(0), "strategy": BestOfN(n=2), "reward": CountingScorer(), "seed": 0}
RANDOM_MODEL = "a random tiny model cannot produce meaningful text, tool calls or JSON"


class TestAlignedChatModelUnit(standard_suite(ChatModelUnitTests, PARAMS, RANDOM_MODEL)):
    pass


@functools.cache
def _override_folder() -> str:
    """A second tiny model saved to a folder: a string ``model=`` override to test."""
    folder = tempfile.mkdtemp(prefix="aligned-tiny-override-")
    model, tokenizer = tiny_pair(1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class TestAlignedChatModelIntegration(
    standard_suite(ChatModelIntegrationTests, PARAMS, RANDOM_MODEL)
):
    @property
    def supports_model_override(self):
        return True

    @property
    def model_override_value(self):
        return _override_folder()
