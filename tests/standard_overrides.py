"""Shared set-up of LangChain's standard chat-model suites for both test tiers.

``standard_suite(base, params, xfail_reason, xfail_tests)`` returns a subclass of
``base`` (the unit or integration suite) with our capability flags and, for the
integration suite, the tests named in ``xfail_tests`` (by default every test that needs
an instruction-following model) marked xfail with ``xfail_reason`` — the only override
the suite allows; every other test is the suite's own.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_aligned import AlignedChatModel

MODEL_DEPENDENT = frozenset(
    {
        "test_tool_calling",
        "test_tool_calling_async",
        "test_bind_runnables_as_tools",
        "test_tool_choice",
        "test_tool_calling_with_no_arguments",
        "test_structured_output",
        "test_structured_output_async",
        "test_structured_output_pydantic_2_v1",
        "test_structured_output_optional_param",
        "test_json_mode",
        "test_agent_loop",
        "test_unicode_tool_call_integration",
    }
)
"""Standard tests that need a model which follows tool-calling and JSON instructions."""


def standard_suite(base, params, xfail_reason, xfail_tests=MODEL_DEPENDENT):
    class Flags(base):
        @property
        def chat_model_class(self):
            return AlignedChatModel

        @property
        def chat_model_params(self):
            return dict(params)

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

        @property
        def supports_json_mode(self):
            return True

    if not issubclass(base, ChatModelIntegrationTests):
        return Flags

    unknown = set(xfail_tests) - MODEL_DEPENDENT
    assert not unknown, f"not model-dependent standard tests: {unknown}"

    def xfail(function):
        return pytest.mark.xfail(reason=xfail_reason)(function)

    schema_types = pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])

    class Suite(Flags):
        @xfail
        def test_tool_calling(self, model):
            super().test_tool_calling(model)

        @xfail
        async def test_tool_calling_async(self, model):
            await super().test_tool_calling_async(model)

        @xfail
        def test_bind_runnables_as_tools(self, model):
            super().test_bind_runnables_as_tools(model)

        @xfail
        def test_tool_choice(self, model):
            super().test_tool_choice(model)

        @xfail
        def test_tool_calling_with_no_arguments(self, model):
            super().test_tool_calling_with_no_arguments(model)

        @xfail
        @schema_types
        def test_structured_output(self, model, schema_type):
            super().test_structured_output(model, schema_type)

        @xfail
        @schema_types
        async def test_structured_output_async(self, model, schema_type):
            await super().test_structured_output_async(model, schema_type)

        @xfail
        def test_structured_output_pydantic_2_v1(self, model):
            super().test_structured_output_pydantic_2_v1(model)

        @xfail
        def test_structured_output_optional_param(self, model):
            super().test_structured_output_optional_param(model)

        @xfail
        def test_json_mode(self, model):
            super().test_json_mode(model)

        @xfail
        def test_agent_loop(self, model):
            super().test_agent_loop(model)

        @xfail
        def test_unicode_tool_call_integration(
            self, model, *, tool_choice=None, force_tool_call=True
        ):
            super().test_unicode_tool_call_integration(
                model, tool_choice=tool_choice, force_tool_call=force_tool_call
            )

    # The suite refuses any override that is not an xfail, so the tests this model
    # passes must be the suite's own functions, not pass-through wrappers.
    for name in MODEL_DEPENDENT - set(xfail_tests):
        delattr(Suite, name)
    return Suite
