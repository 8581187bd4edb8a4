"""The official ``openai`` client: chat completions (sync, async, streamed, tools, parse) and
the Responses API, with default settings and with the sampling fields."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from conftest import SAMPLING, check_sampling
from pydantic import BaseModel

Q = [{"role": "user", "content": "Is 221 prime?"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class City(BaseModel):
    city: str


@pytest.fixture
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused")  # default retries and timeout


@pytest.mark.compat("openai", "plain")
def test_plain(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny", messages=Q)  # type: ignore[arg-type]
    assert out.choices[0].message.content == "agg says: Is 221 prime?"
    assert out.usage is not None and out.usage.total_tokens > 0


@pytest.mark.compat("openai", "plain")
def test_async(base_url: str) -> None:
    async def ask() -> str:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused") as client:
            out = await client.chat.completions.create(model="tiny", messages=Q)  # type: ignore[arg-type]
            return out.choices[0].message.content or ""

    assert asyncio.run(ask()) == "agg says: Is 221 prime?"


@pytest.mark.compat("openai", "streaming")
def test_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=Q,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "agg says: Is 221 prime?"
    )
    assert chunks[-1].usage is not None


@pytest.mark.compat("openai", "tools")
def test_tools(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Weather in 'Oslo'?"}],
        tools=[TOOL],  # type: ignore[list-item]
    )
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]


@pytest.mark.compat("openai", "structured output")
def test_parse(client: openai.OpenAI) -> None:
    out = client.chat.completions.parse(model="json", messages=Q, response_format=City)  # type: ignore[arg-type]
    assert out.choices[0].message.parsed == City(city="Oslo")


@pytest.mark.compat("openai", "sampling fields")
def test_sampling(client: openai.OpenAI, log: Any) -> None:
    out = client.chat.completions.create(
        model="tiny",
        messages=Q,  # type: ignore[arg-type]
        max_completion_tokens=50,
        reasoning_effort="low",
        user="me",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        n=1,
        **SAMPLING,  # type: ignore[arg-type]
    )
    assert out.choices[0].message.content == "agg says: Is 221 prime?"
    check_sampling(log(), {**SAMPLING, "max_tokens": 50})
    assert (out.model_extra or {})["moa"]["dropped_params"] == {"agg": ["reasoning_effort"]}


@pytest.mark.compat("openai", "Responses API")
def test_responses(client: openai.OpenAI) -> None:
    out = client.responses.create(model="tiny", input="Is 221 prime?", instructions="Briefly.")
    assert out.output_text == "agg says: Is 221 prime?"
    with client.responses.stream(model="tiny", input="Is 221 prime?") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == "agg says: Is 221 prime?"
    parsed = client.responses.parse(model="json", input="Where?", text_format=City)
    assert parsed.output_parsed == City(city="Oslo")
