"""A client that leaves ends its run: ``moa serve`` cancels the mixture and abandons every
in-flight upstream request at once (the fake upstream logs them ``cancelled``), for plain and
streamed requests, with the official ``openai`` client (its request task cancelled, as an
app's own timeout does, once the slow proposer is working).
Also: a failed mixture is not replayed by the client's retries (``x-should-retry: false``),
and a busy server's 429 says when to come back (``Retry-After``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from compat.servers import Upstream, moa_serve, tiny_spec
from test_serve import Served, _spec

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.serve import Limits, create_app
from langgraph_moa.testing import Behavior, OpenAIServer

SLOW = 30.0
"""The slow proposer's latency: far longer than any test waits."""
QUESTION = [{"role": "user", "content": "Is 221 prime?"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    behaviors = {
        "slow": Behavior(latency=SLOW),
        # an aggregator that streams one token every 0.3 s (for leaving mid-answer)
        "dripagg": Behavior(latency=0.01, tokens=40, token_delay=0.3),
    }
    with OpenAIServer(behaviors, default=Behavior(latency=0.01)) as srv:
        yield srv


def _slow_spec(url: str) -> dict[str, Any]:
    spec = _spec(url, "slow-mix")
    spec["layers"][0][1] = {**spec["layers"][0][1], "name": "slow", "model": "openai:slow"}
    return spec


@pytest.fixture(scope="module")
def served(upstream: OpenAIServer) -> Iterator[Served]:
    spec = _spec(upstream.base_url, "drip")
    spec["aggregator"] = {**spec["aggregator"], "name": "dripagg", "model": "openai:dripagg"}
    specs = {
        "slow-mix": parse_spec(_slow_spec(upstream.base_url)),
        "drip": parse_spec(spec),
    }
    app = create_app(specs, include_ui=False, limits=Limits(max_concurrent_runs=1))
    with Served(app) as s:
        yield s


def _client(url: str, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=timeout)


def _ended(upstream: Any, model: str, within: float = 5.0) -> dict[str, Any]:
    """The model's (only) upstream request, once it has ended."""
    deadline = time.time() + within
    while True:
        records = upstream.log(model)
        assert len(records) <= 1, records
        if (records and records[0]["end"] is not None) or time.time() > deadline:
            assert records, f"{model} was never called"
            return records[0]
        time.sleep(0.05)


def _leave_while_proposing(url: str, stream: bool, upstream: Any) -> float:
    """Ask the slow mixture, give up once its slow proposer is working (the asyncio task
    of the request is cancelled, as an app's timeout does); return when the client left."""

    async def ask() -> None:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused") as client:
            if stream:
                chunks = await client.chat.completions.create(
                    model="slow-mix", messages=QUESTION, stream=True
                )
                async for _ in chunks:
                    pass
            else:
                await client.chat.completions.create(model="slow-mix", messages=QUESTION)

    async def leave() -> float:
        task = asyncio.create_task(ask())
        deadline = time.time() + 20
        while not upstream.log("slow") and time.time() < deadline and not task.done():
            await asyncio.sleep(0.05)
        assert not task.done(), task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return time.time()

    return asyncio.run(leave())


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_run_and_upstream_calls(
    served: Served, upstream: OpenAIServer, stream: bool
) -> None:
    upstream.reset()
    left = _leave_while_proposing(served.url, stream, upstream)
    slow = _ended(upstream, "slow")
    assert slow["outcome"] == "cancelled" and slow["end"] is not None
    assert slow["end"] - left < 1.5  # abandoned at once, not after its 30 s
    time.sleep(0.5)
    assert sorted(r["model"] for r in upstream.log()) == ["a", "slow"]  # no aggregator call
    # the run's slot is free again (max_concurrent_runs=1): the next client is served
    out = _client(served.url, 30).chat.completions.create(model="drip", messages=QUESTION)
    assert out.choices[0].finish_reason == "stop"


def test_leaving_mid_answer_cancels_the_streaming_aggregator(
    served: Served, upstream: OpenAIServer
) -> None:
    upstream.reset()
    stream = _client(served.url, 30).chat.completions.create(
        model="drip", messages=QUESTION, stream=True
    )
    words = 0
    for chunk in stream:
        words += bool(chunk.choices and chunk.choices[0].delta.content)
        if words == 2:
            break
    stream.close()
    left = time.time()
    agg = _ended(upstream, "dripagg")
    assert agg["outcome"] == "cancelled" and agg["stream"]
    assert agg["end"] - left < 1.5  # 40 tokens at 0.3 s would take 12 s more


def test_a_failed_mixture_is_not_replayed_by_the_sdk_retries(
    served: Served, upstream: OpenAIServer
) -> None:
    """openai's default max_retries=2 retries a 502: ``x-should-retry: false`` stops it."""
    upstream.reset()
    upstream.set_behavior("a", Behavior(always_status=500))
    upstream.set_behavior("dripagg", Behavior(always_status=500))
    try:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")  # default retries
        assert client.max_retries == 2
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="drip", messages=QUESTION)
    finally:
        upstream.set_behavior("a", None)
        upstream.set_behavior("dripagg", Behavior(latency=0.01, tokens=40, token_delay=0.3))
    assert failed.value.status_code == 502
    assert failed.value.response.headers["x-should-retry"] == "false"
    # one mixture's worth of upstream calls: a, b and the aggregator, once each
    assert sorted(r["model"] for r in upstream.log()) == ["a", "b", "dripagg"]


def test_a_busy_server_answers_429_with_retry_after(served: Served, upstream: OpenAIServer) -> None:
    upstream.reset()
    body = {"model": "slow-mix", "messages": QUESTION}
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", f"{served.url}/v1/chat/completions", json={**body, "stream": True}
        ) as first,
    ):
        assert first.status_code == 200
        busy = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=30)
    assert busy.status_code == 429, busy.text
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "server_busy"
    _ended(upstream, "slow")  # the first stream, closed, was cancelled too


@pytest.mark.slow
def test_the_command_line_server_cancels_runs_of_clients_that_leave(tmp_path: Path) -> None:
    """The same on ``moa serve`` itself (a subprocess), upstream in another process too."""
    upstream = Upstream({"slow": {"latency": SLOW}})
    try:
        path = tmp_path / "slow-mix.json"
        path.write_text(json.dumps(tiny_spec(upstream.base_url, "slow-mix", ("a", "slow"))))
        with moa_serve([path]) as url:
            for stream in (False, True):
                upstream.reset()
                left = _leave_while_proposing(url, stream, upstream)
                slow = _ended(upstream, "slow")
                assert slow["outcome"] == "cancelled" and slow["end"] - left < 1.5
                time.sleep(0.5)
                # the two proposers run in parallel: their requests come in either order
                assert sorted(r["model"] for r in upstream.log()) == ["a", "slow"]
    finally:
        upstream.close()


def test_a_client_gone_while_sending_its_body_leaves_no_trace(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a body, then the connection closes: no run, no 500, no traceback."""
    import socket

    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": '
        )
        time.sleep(0.3)
    time.sleep(0.5)
    assert "Traceback" not in caplog.text and "Exception in ASGI" not in caplog.text
    assert httpx.get(f"{served.url}/health").status_code == 200
