"""LangChain's standard chat-model suites on a tiny in-process model (fast tier).

A randomly initialised 2-layer model produces word salad, so tests that need a
meaningful answer (tool calls, structured output, specific content) are xfailed with
their reason; everything about the integration surface (invoke/stream/batch/async,
metadata, usage, stop, callbacks, serialisation) must pass.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from scorers import CountingScorer
from tiny import tiny_pair

from langchain_aligned import AlignedChatModel, BestOfN

PARAMS = {"model": tiny_pair(0), "strategy": BestOfN(n=2), "reward": CountingScorer(), "seed": 0}

RANDOM_MODEL = "a random tiny model cannot produce meaningful text, tool calls or JSON"


class TestAlignedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return AlignedChatModel

    @property
    def chat_model_params(self):
        return dict(PARAMS)

    @property
    def has_tool_calling(self):
        return True

    @property
    def has_structured_output(self):
        return True

    @property
    def returns_usage_metadata(self):
        return True


class TestAlignedChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self):
        return AlignedChatModel

    @property
    def chat_model_params(self):
        return dict(PARAMS)

    @property
    def has_tool_calling(self):
        return True

    @property
    def has_structured_output(self):
        return True

    @property
    def returns_usage_metadata(self):
        return True

    @property
    def supports_image_inputs(self):
        return False

    # --- tests a random tiny model cannot pass (they need a model that follows
    # instructions); the same tests run on SmolLM2 in tests/slow/test_standard_embedded.py.
    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_tool_calling(self, model):
        super().test_tool_calling(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    async def test_tool_calling_async(self, model):
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_bind_runnables_as_tools(self, model):
        super().test_bind_runnables_as_tools(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_tool_choice(self, model):
        super().test_tool_choice(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_tool_calling_with_no_arguments(self, model):
        super().test_tool_calling_with_no_arguments(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output(self, model, schema_type):
        super().test_structured_output(model, schema_type)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async(self, model, schema_type):
        await super().test_structured_output_async(model, schema_type)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_structured_output_pydantic_2_v1(self, model):
        super().test_structured_output_pydantic_2_v1(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_structured_output_optional_param(self, model):
        super().test_structured_output_optional_param(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_agent_loop(self, model):
        super().test_agent_loop(model)

    @pytest.mark.xfail(reason=RANDOM_MODEL)
    def test_unicode_tool_call_integration(self, model, *, tool_choice=None, force_tool_call=True):
        super().test_unicode_tool_call_integration(
            model, tool_choice=tool_choice, force_tool_call=force_tool_call
        )
