"""LangChain's standard integration suite on the embedded SmolLM2-135M-Instruct.

Tests that need abilities a 135M model does not have are xfailed with their reason
(listed in README "Known limits"). Greedy plain sampling (temperature 0) keeps
the run short and deterministic.
"""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests
from standard_overrides import standard_suite

from langchain_aligned import Sampling

PARAMS = {
    "model": "smollm2-135m-instruct",
    "strategy": Sampling(),
    "max_tokens": 48,
    "temperature": 0.0,
    "dtype": "float32",
}
SMALL_MODEL = "a 135M-parameter model does not reliably follow these tool-calling instructions"
# With the tool and JSON demonstrations in the prompt (langchain_aligned.models.chat,
# chat_models.structured_output.add_json_prompt) SmolLM2 passes the other model-dependent tests:
# tool calling (sync, async, runnables, unicode), structured output (all schema types,
# sync and async, pydantic v1) and JSON mode. These four still fail with greedy decoding:
STILL_FAILING = {
    "test_tool_choice",
    "test_tool_calling_with_no_arguments",
    "test_structured_output_optional_param",
    "test_agent_loop",
    # The 135M model names the company instead of the tool ("Hello Corporation"); only
    # calls to bound tools become tool calls since the exactness fixes.
    "test_unicode_tool_call_integration",
}


class TestSmolLM2Integration(
    standard_suite(ChatModelIntegrationTests, PARAMS, SMALL_MODEL, STILL_FAILING)
):
    pass
