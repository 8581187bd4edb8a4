"""Attacks on a real ``langgraph dev`` server, as any client of it could try them.

The server process has canary keys in its environment and accepts whole client specs
(``MOA_TRUST_RUN_SPECS=1``: the most permissive setting, so the policy's own rules are what is
tested). The only upstream is a raw TCP listener on 127.0.0.1 that records every byte it
receives: every attack must be refused, no byte (so no canary) may reach the listener, no
refusal may name a server variable, and the server must keep answering ``/ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from test_langgraph_dev import DevServer, start_dev

from langgraph_moa.testing import ServerProcess

pytestmark = pytest.mark.slow

CANARIES = {
    "OPENAI_API_KEY": "sk-canary-openai-0001",
    "TOGETHER_API_KEY": "canary-together-0002",
    "AZURE_OPENAI_API_KEY": "canary-azure-0003",
    "LANGSMITH_API_KEY": "lsv2-canary-langsmith-0004",
    "SECRET_CANARY": "canary-secret-0005",
}
QUESTION = {"messages": [{"role": "user", "content": "What is 2+2?"}]}


class Listener:
    """A TCP listener on 127.0.0.1 that keeps every byte sent to it."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.url = ""
        self._server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.TimeoutError):
            self.received += await asyncio.wait_for(reader.read(65536), 2)
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        writer.close()

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[ServerProcess]:
    """The project's test server, answering every request 401 with a body that quotes the
    request's Authorization header (a careless upstream)."""
    with ServerProcess(default={"always_status": 401, "echo_auth": True}) as proc:
        yield proc


@pytest.fixture(scope="module")
def canary_server(tmp_path_factory, echo_upstream) -> Iterator[DevServer]:
    folder = tmp_path_factory.mktemp("langgraph-dev-canary")
    log = folder / "server.log"
    # The operator's own spec (trusted, registered by name): its key goes to the echoing upstream.
    echo_model = {
        "model": "openai:echo",
        "base_url": echo_upstream.base_url,
        "api_key_env": "SECRET_CANARY",
        "retry": {"max_attempts": 1},
    }
    (folder / "echo.yaml").write_text(
        json.dumps({"layers": [[{"name": "a", **echo_model}]], "aggregator": echo_model})
    )
    env = {
        **os.environ,
        **CANARIES,
        "MOA_TRUST_RUN_SPECS": "1",
        "MOA_SPECS": str(folder / "echo.yaml"),
    }
    env.pop("MOA_RUN_BASE_URLS", None)
    with start_dev(env, log) as server:
        yield server


def _ok(server: DevServer) -> bool:
    try:
        with urllib.request.urlopen(server.url + "/ok", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[Listener]:
    async with Listener() as lst:
        yield lst


@pytest.fixture
def client(canary_server: DevServer):
    from langgraph_sdk import get_client

    return get_client(url=canary_server.url, timeout=60)


def m(name: str, model: str = "openai:gpt-4o-mini", **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": model, "timeout": 10, **kw}


def one(model: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"layers": [[model]], "aggregator": m("agg"), **kw}


def attacks(url: str) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (run context, the rule the refusal must name)."""
    return {
        "together URL param": (
            {"spec": one(m("t", "together:x", params={"together_api_base": url}))},
            "params.together_api_base",
        ),
        "together URL + any variable": (
            {
                "spec": one(
                    m(
                        "t",
                        "together:x",
                        api_key_env="SECRET_CANARY",
                        params={"together_api_base": url},
                    )
                )
            },
            "params.together_api_base",
        ),
        "azure endpoint": (
            {"spec": one(m("az", "azure_openai:gpt-4o", params={"azure_endpoint": url}))},
            "params.azure_endpoint",
        ),
        "langsmith base": (
            {"spec": one(m("ls", "langsmith:gpt-4o", params={"openai_api_base": url}))},
            "params.openai_api_base",
        ),
        "base_url + key variable": (
            {"spec": one(m("o", base_url=url, api_key_env="OPENAI_API_KEY"))},
            "api_key_env",
        ),
        "base_url not allowed": ({"spec": one(m("o", base_url=url))}, "base_url"),
        "any variable to default endpoint": (
            {"spec": one(m("o", api_key_env="HOME"))},
            "api_key_env",
        ),
        "default headers": (
            {"spec": one(m("o", params={"default_headers": {"x": "y"}}))},
            "params.default_headers",
        ),
        "local n_threads": (
            {"spec": one(m("l", "local:smollm2", params={"n_threads": 100000}))},
            "params.n_threads",
        ),
        "local n_ctx": (
            {"spec": one(m("l", "local:smollm2", params={"n_ctx": 10**9}))},
            "params.n_ctx",
        ),
        "local model_path": (
            {"spec": one(m("l", "local:smollm2", params={"model_path": "/etc/passwd"}))},
            "params.model_path",
        ),
        "ReDoS strip pattern": ({"spec": one(m("o"), strip_patterns=["(a+)+$"])}, "strip_pat"),
        "huge graph": (
            {"spec": {"layers": [[m(f"p{i}") for i in range(200)]] * 50, "aggregator": m("a")}},
            "layers",
        ),
        "unbounded retry interval": (
            {"spec": one(m("o", retry={"initial_interval": 10**9}))},
            "initial_interval",
        ),
        "unbounded timeout": ({"spec": one(m("o", timeout=10**9))}, "timeout"),
        "hot temperature": ({"preset": "moa-lite", "temperature": "hot"}, "temperature"),
        "negative max_tokens": ({"preset": "moa-lite", "max_tokens": -1}, "max_tokens"),
    }


def assert_clean(text: str) -> None:
    for var, value in CANARIES.items():
        assert value not in text
        assert var not in text, f"refusal names the server variable {var}"


async def refused(client: Any, assistant: str, context: dict[str, Any] | None) -> str:
    from langgraph_sdk.errors import APIError

    try:
        out = await client.runs.wait(None, assistant, input=QUESTION, context=context)
    except APIError as exc:
        return str(exc)
    except Exception as exc:  # the run's error, raised by the SDK
        return f"{type(exc).__name__}: {exc}"
    pytest.fail(f"not refused: {str(out)[:300]}")


async def test_every_attack_is_refused_and_nothing_reaches_the_listener(
    client, listener, canary_server
):
    for name, (context, rule) in attacks(listener.url).items():
        text = await refused(client, "moa", context)
        print(f"{name}: {text[:300]}")  # shown on failure (or with -rP)
        assert rule in text, f"{name}: {text[:400]}"
        assert_clean(text)
        assert _ok(canary_server), f"{name}: the server stopped answering /ok"
    assert canary_server.proc.poll() is None
    assert listener.connections == 0 and not listener.received
    log = canary_server.log_text()
    for value in CANARIES.values():
        assert value not in log


async def test_unset_and_set_variables_are_refused_alike(client, listener):
    texts = [
        await refused(client, "moa", {"spec": one(m("o", api_key_env=var))})
        for var in ("SECRET_CANARY", "NO_SUCH_VARIABLE_XYZ")
    ]
    assert texts[0] == texts[1]  # nothing tells a client which variables exist
    assert "NO_SUCH_VARIABLE_XYZ" not in texts[1]


async def test_a_stored_assistant_context_is_refused_on_every_run(client, listener):
    evil = {"spec": one(m("t", "together:x", params={"together_api_base": listener.url}))}
    try:
        assistant = await client.assistants.create("moa", context=evil, name="evil")
    except Exception as exc:  # refused at creation: as good
        assert "together_api_base" in str(exc)
        return
    try:
        for _ in range(2):
            text = await refused(client, assistant["assistant_id"], None)
            assert "together_api_base" in text
            assert_clean(text)
    finally:
        await client.assistants.delete(assistant["assistant_id"])
    assert listener.connections == 0 and not listener.received


async def test_a_key_an_upstream_echoes_is_never_stored_or_shown(
    client, canary_server, echo_upstream
):
    """The operator's spec sends SECRET_CANARY to an upstream that quotes it back in a 401."""
    thread = await client.threads.create()
    seen: list[str] = []
    try:
        async for part in client.runs.stream(
            thread["thread_id"],
            "moa",
            input=QUESTION,
            context={"preset": "echo"},
            stream_mode=["values", "custom", "updates", "messages-tuple"],
        ):
            seen.append(json.dumps(part.data, default=str))
        state = await client.threads.get_state(thread["thread_id"])
        history = await client.threads.get_history(thread["thread_id"], limit=50)
        seen += [json.dumps(state, default=str), json.dumps(history, default=str)]
    finally:
        await client.threads.delete(thread["thread_id"])
    requests = echo_upstream.log()
    assert requests and all(r["has_auth"] for r in requests)  # the key did go upstream...
    text = "\n".join(seen)
    assert "401" in text  # ...the failure is reported...
    assert CANARIES["SECRET_CANARY"] not in text  # ...without the key it echoed
    assert CANARIES["SECRET_CANARY"] not in canary_server.log_text()


# ------------------------------------------------------------- cross-site (langgraph.json http)

STUDIO = "https://smith.langchain.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}
TEXT, JSON = {"Content-Type": "text/plain"}, {"Content-Type": "application/json"}


def _raw(server: DevServer, method: str, path: str, body: Any = None, **headers: str) -> Any:
    """One request with exactly these headers (urllib: no client adds an Origin)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def _allow_origin(headers: dict[str, str]) -> str | None:
    return {k.lower(): v for k, v in headers.items()}.get("access-control-allow-origin")


def test_a_foreign_page_can_neither_start_a_run_nor_read_one(canary_server, echo_upstream):
    """The issue's attack: a web page's text/plain POST to /runs/wait (no CORS preflight
    needed). ``http.app`` refuses it before any run (so no upstream call), and ``http.cors``
    gives a foreign origin no Access-Control-Allow-Origin, so nothing could be read anyway."""
    before = len(echo_upstream.log())
    run = {"assistant_id": "moa", "input": QUESTION, "context": {"preset": "echo"}}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        status, headers, body = _raw(
            canary_server,
            "POST",
            "/runs/wait",
            run,
            Origin=origin,
            **{"Content-Type": "text/plain"},
        )
        assert status == 403, body
        assert _allow_origin(headers) is None
        pre, pre_headers, _ = _raw(
            canary_server,
            "OPTIONS",
            "/runs/wait",
            Origin=origin,
            **{
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert _allow_origin(pre_headers) is None, (origin, pre, pre_headers)
    assert len(echo_upstream.log()) == before  # no run reached a model


def test_studio_and_non_browser_clients_still_work(canary_server):
    pre, headers, _ = _raw(
        canary_server,
        "OPTIONS",
        "/assistants/search",
        Origin=STUDIO,
        **{
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre == 200 and _allow_origin(headers) == STUDIO
    ctype = {"Content-Type": "application/json"}
    status, headers, body = _raw(
        canary_server, "POST", "/assistants/search", {}, Origin=STUDIO, **ctype
    )
    assert status == 200 and _allow_origin(headers) == STUDIO, body
    status, _, body = _raw(canary_server, "POST", "/assistants/search", {}, **JSON)  # the SDK
    assert status == 200 and "moa" in body
