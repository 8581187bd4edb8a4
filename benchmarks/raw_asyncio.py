"""The baseline: a minimal hand-written MoA in plain asyncio, the seed paper's shape.

``asyncio.gather`` over one layer's proposers, ONE shared ``openai.AsyncOpenAI`` client for
every call, the references injected into the system message exactly as
``langgraph_moa.prompts.inject_references`` (mode "system") does, every call streamed (with
``stream_options.include_usage`` like ``ChatOpenAI(stream_usage=True)``), the same
temperature / max_tokens our ``ModelSpec`` defaults send. No retries, no timeouts, no state,
no records: the floor a framework is measured against.

Deliberately imports neither LangChain nor LangGraph (so its RSS and CPU are the baseline's
own): the aggregate prompt is read from ``prompts/aggregate.txt`` directly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai

AGGREGATE_PROMPT = (Path(__file__).resolve().parents[1] / "prompts" / "aggregate.txt").read_text(
    encoding="utf-8"
)

POOL_MAX_CONNECTIONS = 2048
POOL_MAX_KEEPALIVE = 512
"""Same limits as ``models/factory.py``: 6 proposers x 256 runs = 1536 requests in flight,
more than the SDK's default ``max_connections=1000``; equal pools keep the comparison about
the framework, not the pool size."""


def inject(messages: list[dict[str, str]], references: list[str]) -> list[dict[str, str]]:
    """``inject_references(mode="system")`` on plain dicts (the reference implementation)."""
    text = AGGREGATE_PROMPT + "".join(f"\n{i}. {r}" for i, r in enumerate(references, 1))
    if messages and messages[0]["role"] == "system":
        return [
            {"role": "system", "content": f"{messages[0]['content']}\n\n{text}"},
            *messages[1:],
        ]
    return [{"role": "system", "content": text}, *messages]


def make_client(
    base_url: str, transport: str = "aiohttp", dict_chunks: bool = False
) -> openai.AsyncOpenAI:
    """One shared client. ``transport``: "aiohttp" (``openai.DefaultAioHttpClient``) or
    "httpx" (the SDK's default httpx pool, default limits). ``dict_chunks``: stream chunks
    as the decoded JSON dicts instead of ``ChatCompletionChunk`` models (the shortcut
    ``models/factory.py`` takes), so framework overhead can be measured like for like."""
    if transport == "aiohttp":
        import httpx2

        http = openai.DefaultAioHttpClient(
            limits=httpx2.Limits(
                max_connections=POOL_MAX_CONNECTIONS, max_keepalive_connections=POOL_MAX_KEEPALIVE
            )
        )
    elif transport == "httpx":
        http = None
    else:
        raise ValueError(f"unknown transport {transport!r}")
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="not-needed", max_retries=0, http_client=http
    )
    if dict_chunks:
        from openai.types.chat import ChatCompletionChunk

        typed = client._process_response_data

        def process(*, data: Any, cast_to: Any, response: Any) -> Any:
            if cast_to is ChatCompletionChunk and type(data) is dict:
                return data
            return typed(data=data, cast_to=cast_to, response=response)

        client._process_response_data = process
    return client


def _content(chunk: Any) -> str | None:
    if type(chunk) is dict:
        choices = chunk.get("choices")
        return choices[0]["delta"].get("content") if choices else None
    return chunk.choices[0].delta.content if chunk.choices else None


class RawMoA:
    """``await RawMoA(...).run(question)`` -> (answer, seconds to the answer's first token)."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        layers: list[list[str]],
        aggregator: str,
        *,
        stream: bool = True,
        temperature: float = 0.7,
        max_tokens: int = 512,
    ) -> None:
        self.client = client
        self.layers = layers
        self.aggregator = aggregator
        self.stream = stream
        self.params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}

    async def call(self, model: str, messages: list[dict[str, str]]) -> tuple[str, float | None]:
        """One completion; returns its text and its time to first token."""
        start = time.perf_counter()
        if not self.stream:
            out = await self.client.chat.completions.create(
                model=model, messages=messages, **self.params
            )
            return out.choices[0].message.content or "", time.perf_counter() - start
        parts: list[str] = []
        ttft = None
        stream = await self.client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **self.params,
        )
        async for chunk in stream:
            if text := _content(chunk):
                if ttft is None:
                    ttft = time.perf_counter() - start
                parts.append(text)
        return "".join(parts), ttft

    async def run(self, question: str) -> tuple[str, float | None]:
        import asyncio

        start = time.perf_counter()
        messages = [{"role": "user", "content": question}]
        references: list[str] = []
        for k, layer in enumerate(self.layers):
            prompt = inject(messages, references) if k else messages
            results = await asyncio.gather(*(self.call(m, prompt) for m in layer))
            references = [text.strip() for text, _ in results]
        aggregate_start = time.perf_counter()
        answer, ttft = await self.call(self.aggregator, inject(messages, references))
        first = None if ttft is None else aggregate_start - start + ttft
        return answer, first
