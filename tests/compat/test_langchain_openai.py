"""LangChain's ``ChatOpenAI`` on ``moa serve``: chat completions and Responses mode."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SAMPLING, check_sampling
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class City(BaseModel):
    city: str


def llm(base_url: str, model: str = "tiny", **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=base_url, api_key="unused", **kw)  # type: ignore[arg-type]


@pytest.mark.compat("langchain-openai", "plain")
def test_plain(base_url: str) -> None:
    assert llm(base_url).invoke("Hello").content == "agg says: Hello"


@pytest.mark.compat("langchain-openai", "streaming")
def test_stream(base_url: str) -> None:
    assert "".join(c.text for c in llm(base_url).stream("Hi there")) == "agg says: Hi there"


@pytest.mark.compat("langchain-openai", "tools")
def test_tools(base_url: str) -> None:
    call = llm(base_url).bind_tools([TOOL]).invoke("Weather in 'Oslo'?").tool_calls[0]
    assert call["args"] == {"city": "Oslo"}


@pytest.mark.compat("langchain-openai", "structured output")
def test_structured(base_url: str) -> None:
    for method in ("json_schema", "function_calling"):
        model = "json" if method == "json_schema" else "tiny"
        out = llm(base_url, model).with_structured_output(City, method=method).invoke("'Oslo'")
        assert out == City(city="Oslo")


@pytest.mark.compat("langchain-openai", "sampling fields")
def test_sampling(base_url: str, log: Any) -> None:
    model = llm(base_url, max_tokens=50, reasoning_effort="low", **SAMPLING)
    assert model.invoke("Hello").content == "agg says: Hello"
    check_sampling(log(), {**SAMPLING, "max_tokens": 50})


@pytest.mark.compat("langchain-openai", "Responses API")
def test_responses_mode(base_url: str) -> None:
    model = llm(base_url, use_responses_api=True)
    assert model.invoke("Hello").text == "agg says: Hello"
    assert "".join(c.text for c in model.stream("Hi there")) == "agg says: Hi there"
    call = model.bind_tools([TOOL]).invoke("Weather in 'Oslo'?").tool_calls[0]
    assert call["args"] == {"city": "Oslo"}
