"""LangChain's standard chat-model suites (``langchain-tests``) against ChatMoA.

The integration suite runs offline against the project's OpenAI-compatible test server: two
proposers and an aggregator that answers with a tool call when it is offered tools
(``Behavior(tool_calls=True)``). What ChatMoA cannot offer is declared through the suites'
properties (never skipped by hand); see the property docstrings for why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langgraph_moa.chat_model import ChatMoA
from langgraph_moa.testing import Behavior, OpenAIServer

_BASE_URL: str = ""


@pytest.fixture(scope="module", autouse=True)
def moa_server() -> Iterator[OpenAIServer]:
    """One test server (own thread and loop) for the module: its URL goes into the spec."""
    global _BASE_URL
    with OpenAIServer({"agg": Behavior(tool_calls=True)}) as srv:
        _BASE_URL = srv.base_url
        yield srv


def _spec(base_url: str) -> dict[str, Any]:
    def model(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": f"openai:{name}",
            "base_url": base_url,
            "timeout": 10.0,
            "retry": {"max_attempts": 2, "initial_interval": 0.01, "jitter": False},
        }

    return {"name": "standard", "layers": [[model("p1"), model("p2")]], "aggregator": model("agg")}


class _Params:
    @property
    def chat_model_class(self) -> type[ChatMoA]:
        return ChatMoA

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"spec": _spec(_BASE_URL or "http://127.0.0.1:9/v1")}

    @property
    def has_tool_calling(self) -> bool:
        return True  # through the aggregator

    @property
    def has_tool_choice(self) -> bool:
        return True  # mapped by the aggregator's own bind_tools

    @property
    def has_structured_output(self) -> bool:
        return True  # BaseChatModel's with_structured_output on bind_tools

    @property
    def returns_usage_metadata(self) -> bool:
        return True  # summed over every call of the run

    @property
    def supports_image_inputs(self) -> bool:
        return False  # proposers are text models; references are text

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        return False  # tool results reach proposers as plain text

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False  # one instance, one mixture: a spec is not chosen per call

    @property
    def supports_json_mode(self) -> bool:
        # with_structured_output always uses tool calling (LangChain's base implementation
        # ignores `method`); a bound response_format does reach the aggregator.
        return False


class TestChatMoAUnit(_Params, ChatModelUnitTests):
    pass


class TestChatMoAIntegration(_Params, ChatModelIntegrationTests):
    pass
