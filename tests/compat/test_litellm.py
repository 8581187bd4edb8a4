"""litellm on ``moa serve`` (as an OpenAI-compatible endpoint: ``openai/<model>``)."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest
from conftest import SAMPLING, check_sampling

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


def ask(base_url: str, model: str = "tiny", **kw: Any) -> Any:
    return litellm.completion(
        model=f"openai/{model}",
        api_base=base_url,
        api_key="unused",
        messages=kw.pop("messages", Q),
        **kw,
    )


@pytest.mark.compat("litellm", "plain")
def test_plain(base_url: str) -> None:
    assert ask(base_url).choices[0].message.content == "agg says: Is 221 prime?"


@pytest.mark.compat("litellm", "streaming")
def test_stream(base_url: str) -> None:
    text = "".join(c.choices[0].delta.content or "" for c in ask(base_url, stream=True))
    assert text == "agg says: Is 221 prime?"


@pytest.mark.compat("litellm", "tools")
def test_tools(base_url: str) -> None:
    out = ask(base_url, messages=[{"role": "user", "content": "Weather in 'Oslo'?"}], tools=[TOOL])
    assert json.loads(out.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}


@pytest.mark.compat("litellm", "structured output")
def test_structured(base_url: str) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    out = ask(base_url, "json", response_format=fmt)
    assert json.loads(out.choices[0].message.content) == {"city": "Oslo"}


@pytest.mark.compat("litellm", "sampling fields")
def test_sampling(base_url: str, log: Any) -> None:
    out = ask(base_url, max_tokens=50, reasoning_effort="low", user="me", **SAMPLING)
    assert out.choices[0].message.content == "agg says: Is 221 prime?"
    check_sampling(log(), {**SAMPLING, "max_tokens": 50})


@pytest.mark.compat("litellm", "Responses API")
def test_responses(base_url: str) -> None:
    out = litellm.responses(
        model="openai/tiny", input="Is 221 prime?", api_base=base_url, api_key="unused"
    )
    texts = [part.text for item in out.output if item.type == "message" for part in item.content]
    assert texts == ["agg says: Is 221 prime?"]
