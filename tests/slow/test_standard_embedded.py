"""LangChain's standard integration suite on the embedded SmolLM2-135M-Instruct.

Tests that need abilities a 135M model does not have are xfailed with their reason
(listed in README "Known limits"). Plain sampling at the suite's temperature 0 keeps
the run short and deterministic.
"""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests
from standard_overrides import standard_suite

from langchain_aligned import Sampling

PARAMS = {
    "model": "smollm2-135m-instruct",
    "strategy": Sampling(),
    "max_tokens": 24,
    "dtype": "float32",
}
SMALL_MODEL = "a 135M-parameter model does not reliably follow tool-calling or JSON instructions"


class TestSmolLM2Integration(standard_suite(ChatModelIntegrationTests, PARAMS, SMALL_MODEL)):
    pass
