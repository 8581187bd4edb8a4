"""Shared fixtures for tests that run MoA graphs against the fake OpenAI server.

- ``server``: an ``OpenAIServer`` on 127.0.0.1, started with ``async with`` on the test's own
  event loop (so no thread; hangs are cancelled when the test ends). Default behaviour: answer
  immediately with ``"{model} says: {last user text}"``. Configure per test with
  ``server.set_behavior(name, Behavior(...))`` and inspect ``server.log(name)``.
- ``model``: ``model(name, **overrides)`` -> a ModelSpec dict for ``openai:{name}`` on that
  server, with fast retries (no jitter, 0.02 s initial interval, 3 attempts) and a tight
  timeout (5 s). Overrides replace top-level keys; ``retry`` overrides are merged.
- ``run``: ``await run(spec, question, **kw)`` -> final output of ``create_moa(spec).ainvoke``.
- ``collect``: ``await collect(graph, input, modes)`` -> (final values, custom events, all chunks).
- autouse: after every test, the event loop's HTTP pools are closed (``aclose_clients``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.models.factory import aclose_clients
from langgraph_moa.testing import OpenAIServer

FAST_RETRY = {"jitter": False, "initial_interval": 0.02, "backoff_factor": 1.5, "max_attempts": 3}
"""Retry settings that keep a retried call within tens of milliseconds."""

ModelFactory = Callable[..., dict[str, Any]]

collect_ignore = ["compat"]
"""tests/compat runs from a virtualenv of its own (scripts/test), with its own conftest: both
conftests would be the one module ``conftest`` in one run."""


@pytest_asyncio.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    """A fresh fake OpenAI server on the test's event loop."""
    async with OpenAIServer() as srv:
        yield srv


def make_model(base_url: str, name: str, /, **overrides: Any) -> dict[str, Any]:
    """A ModelSpec dict for ``openai:{name}`` served at ``base_url`` (fast retries).

    ``overrides`` may set any ModelSpec field, ``base_url`` included."""
    retry = {**FAST_RETRY, **overrides.pop("retry", {})}
    spec: dict[str, Any] = {
        "name": name,
        "model": f"openai:{name}",
        "base_url": base_url,
        "timeout": 5.0,
        "retry": retry,
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def model(server: OpenAIServer) -> ModelFactory:
    """``model(name, **overrides)``: a ModelSpec dict pointing at ``server``."""

    def factory(name: str, **overrides: Any) -> dict[str, Any]:
        return make_model(server.base_url, name, **overrides)

    return factory


@pytest.fixture
def run() -> Callable[..., Any]:
    """``await run(spec, question="...", **ainvoke_kwargs)``: one full MoA run."""

    async def go(spec: dict[str, Any], question: str = "What is 2+2?", **kw: Any) -> dict:
        graph = create_moa(spec)
        return await graph.ainvoke({"messages": [("user", question)]}, **kw)

    return go


async def collect_stream(
    graph: Any, graph_input: Any, modes: list[str] | None = None, **kw: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[str, Any]]]:
    """Stream a run; return (last ``values`` chunk, custom events, every (mode, chunk))."""
    modes = modes or ["values", "custom"]
    if "values" not in modes:
        modes = [*modes, "values"]
    final: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    chunks: list[tuple[str, Any]] = []
    async for mode, chunk in graph.astream(graph_input, stream_mode=modes, **kw):
        chunks.append((mode, chunk))
        if mode == "values":
            final = chunk
        elif mode == "custom":
            events.append(chunk)
    return final, events, chunks


@pytest.fixture
def collect() -> Callable[..., Any]:
    """``await collect(graph, input, modes=None, **kw)`` -> (final, events, chunks)."""
    return collect_stream


@pytest_asyncio.fixture(autouse=True)
async def _close_http_clients() -> AsyncIterator[None]:
    """Close the test loop's aiohttp pools so no 'Unclosed client session' warnings leak."""
    yield
    await aclose_clients()
