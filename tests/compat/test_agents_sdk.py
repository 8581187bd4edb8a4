"""The OpenAI Agents SDK's default model (the Responses API) on ``moa serve``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    ModelSettings,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.shared import Reasoning
from pydantic import BaseModel


class City(BaseModel):
    city: str


@pytest.fixture(autouse=True)
def default_client(base_url: str) -> Iterator[None]:
    set_tracing_disabled(True)  # no export to the vendor's tracing service
    set_default_openai_client(AsyncOpenAI(base_url=base_url, api_key="unused"))
    set_default_openai_api("responses")  # the SDK's default, said explicitly
    yield


@pytest.mark.compat("openai-agents", "plain")
@pytest.mark.compat("openai-agents", "Responses API")  # its default model speaks nothing else
def test_plain() -> None:
    out = Runner.run_sync(Agent(name="a", model="tiny", instructions="Briefly."), "Hello")
    assert out.final_output == "agg says: Hello"


@pytest.mark.compat("openai-agents", "streaming")
def test_stream() -> None:
    async def run() -> str:
        result = Runner.run_streamed(Agent(name="a", model="tiny"), "Hi there")
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    assert asyncio.run(run()) == "agg says: Hi there"


@pytest.mark.compat("openai-agents", "tools")
def test_tools() -> None:
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather at a place."""
        asked.append(city)
        return "sunny"

    agent = Agent(name="a", model="tiny", tools=[get_weather])
    out = Runner.run_sync(agent, "Weather in 'Oslo'?")
    assert asked == ["Oslo"] and out.final_output == "agg says: Weather in 'Oslo'?"


@pytest.mark.compat("openai-agents", "structured output")
def test_structured() -> None:
    out = Runner.run_sync(Agent(name="a", model="json", output_type=City), "Where?")
    assert out.final_output == City(city="Oslo")


@pytest.mark.compat("openai-agents", "sampling fields")
def test_sampling(log: Any) -> None:
    settings = ModelSettings(
        temperature=0.2,
        top_p=0.5,
        max_tokens=50,
        reasoning=Reasoning(effort="low"),
        metadata={"k": "v"},
        store=False,
    )
    out = Runner.run_sync(Agent(name="a", model="tiny", model_settings=settings), "Hello")
    assert out.final_output == "agg says: Hello"
    agg = log()["agg"]["params"]
    assert agg["top_p"] == 0.5 and agg["max_tokens"] == 50 and agg["temperature"] == 0.2
    assert "top_p" not in log()["a"]["params"]
