"""pydantic-ai's OpenAI chat model on ``moa serve``: an agent run, streamed, with a tool,
with a structured output type, and with its model settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import SAMPLING, check_sampling
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import (
    OpenAIChatModel,
    OpenAIChatModelSettings,
    OpenAIResponsesModel,
)
from pydantic_ai.providers.openai import OpenAIProvider


class City(BaseModel):
    city: str


def model(base_url: str, name: str = "tiny") -> OpenAIChatModel:
    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key="unused"))


@pytest.mark.compat("pydantic-ai", "plain")
def test_plain(base_url: str) -> None:
    assert Agent(model(base_url)).run_sync("Hello").output == "agg says: Hello"


@pytest.mark.compat("pydantic-ai", "streaming")
def test_stream(base_url: str) -> None:
    async def run() -> str:
        async with Agent(model(base_url)).run_stream("Hi there") as result:
            return "".join([piece async for piece in result.stream_text(delta=True)])

    assert asyncio.run(run()) == "agg says: Hi there"


@pytest.mark.compat("pydantic-ai", "tools")
def test_tools(base_url: str) -> None:
    agent = Agent(model(base_url))
    asked: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Weather at a place."""
        asked.append(city)
        return "sunny"

    out = agent.run_sync("Weather in 'Oslo'?")
    assert asked == ["Oslo"] and out.output == "agg says: Weather in 'Oslo'?"


@pytest.mark.compat("pydantic-ai", "structured output")
def test_structured(base_url: str) -> None:
    out = Agent(model(base_url), output_type=City).run_sync("Where is 'Oslo'?")
    assert out.output == City(city="Oslo")


@pytest.mark.compat("pydantic-ai", "sampling fields")
def test_sampling(base_url: str, log: Any) -> None:
    settings = OpenAIChatModelSettings(
        max_tokens=50,
        openai_reasoning_effort="low",
        **SAMPLING,  # type: ignore[typeddict-item]
    )
    out = Agent(model(base_url), model_settings=settings).run_sync("Hello")
    assert out.output == "agg says: Hello"
    check_sampling(log(), {**SAMPLING, "max_tokens": 50})


@pytest.mark.compat("pydantic-ai", "Responses API")
def test_responses_model(base_url: str) -> None:
    provider = OpenAIProvider(base_url=base_url, api_key="unused")
    agent = Agent(OpenAIResponsesModel("tiny", provider=provider))
    assert agent.run_sync("Hello").output == "agg says: Hello"
    structured = Agent(OpenAIResponsesModel("json", provider=provider), output_type=City)
    assert structured.run_sync("Where?").output == City(city="Oslo")
