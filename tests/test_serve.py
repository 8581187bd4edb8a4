"""``moa serve`` with real clients on 127.0.0.1: the official ``openai`` client (streaming and
not, ``include_usage``), LangChain's ``ChatOpenAI``, raw HTTP for every error, a bounded load
test, bearer auth, and (slow) ``--workers 2`` as a subprocess. Upstream models are the
project's OpenAI-compatible test server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn
import yaml

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.serve import create_app
from langgraph_moa.testing import Behavior, OpenAIServer


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Behavior(latency=0.02)) as srv:
        yield srv


def _spec(url: str, name: str = "tiny") -> dict[str, Any]:
    def m(n: str) -> dict[str, Any]:
        return {
            "name": n,
            "model": f"openai:{n}",
            "base_url": url,
            "retry": {"max_attempts": 1, "jitter": False},
        }

    return {"name": name, "layers": [[m("a"), m("b")]], "aggregator": m("agg")}


class Served:
    """uvicorn serving ``app`` in a thread on a free port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def served(upstream: OpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    specs = {"tiny": parse_spec(_spec(upstream.base_url))}
    db = tmp_path_factory.mktemp("serve") / "threads.sqlite"
    with Served(create_app(specs, db_path=db)) as s:
        yield s


@pytest.fixture
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


def test_models_and_health(client: openai.OpenAI, served: Served) -> None:
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"


def test_completion_with_usage_over_every_call(client: openai.OpenAI, upstream: Any) -> None:
    upstream.reset()
    out = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Is 221 prime?"}], temperature=0.1
    )
    assert out.choices[0].message.content == "agg says: Is 221 prime?"
    assert out.choices[0].finish_reason == "stop"
    log = upstream.log()
    assert len(log) == 3 and all(r["temperature"] == 0.1 for r in log)
    assert not any(r["stream"] for r in log)  # nobody streams: no model call streams
    assert out.usage is not None
    assert out.usage.completion_tokens == sum(r["completion_tokens"] for r in log)
    assert out.usage.prompt_tokens == sum(r["prompt_tokens"] for r in log)


def test_stop_ends_the_answer_not_the_proposers(client: openai.OpenAI, upstream: Any) -> None:
    upstream.reset()
    out = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Is 221 prime?"}], stop="221"
    )
    assert out.choices[0].message.content == "agg says: Is "
    stops = {r["model"]: r["stop"] for r in upstream.log()}
    assert stops == {"a": None, "b": None, "agg": ["221"]}  # proposers answer in full
    with pytest.raises(openai.BadRequestError, match="stop"):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "x"}], stop=list("12345")
        )


def test_cache_true_spec_answers_a_rerun_from_the_persistent_cache(
    upstream: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = parse_spec({**_spec(upstream.base_url, "cached"), "cache": True})
    ask = {"model": "cached", "messages": [{"role": "user", "content": "Once"}], "temperature": 0}
    answers, calls = [], []
    for _ in range(2):  # two servers, as after a restart: the cache is on disk
        upstream.reset()
        with Served(create_app({"cached": spec}, include_ui=False)) as s:
            answers.append(httpx.post(f"{s.url}/v1/chat/completions", json=ask, timeout=30).json())
        calls.append(len(upstream.log()))
    assert calls == [3, 0]  # the second server made no model call
    assert answers[0]["choices"] == answers[1]["choices"]
    assert (tmp_path / "langgraph-moa").is_dir()


def test_streaming_with_include_usage(client: openai.OpenAI, upstream: Any) -> None:
    upstream.reset()
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "agg says: Stream it"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    streamed = {r["model"] for r in upstream.log() if r["stream"]}
    assert streamed == {"agg"}  # only the answer streams


WEATHER_TOOL = {
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


def _aggregator(upstream: OpenAIServer, behavior: Behavior) -> Iterator[OpenAIServer]:
    """The upstream with its aggregator behaving so for one test (log emptied first)."""
    upstream.reset()
    upstream.set_behavior("agg", behavior)
    yield upstream
    upstream.set_behavior("agg", None)


@pytest.fixture
def calling_agg(upstream: OpenAIServer) -> Iterator[OpenAIServer]:
    """The upstream aggregator answers with a tool call when it is offered tools."""
    yield from _aggregator(upstream, Behavior(latency=0.02, tool_calls=True))


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_cut_at_max_tokens_finishes_with_length(
    client: openai.OpenAI, upstream: OpenAIServer, stream: bool
) -> None:
    question = [{"role": "user", "content": "Tell me a long story please"}]
    reasons = []
    for max_tokens in (2, 100):
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model="tiny", messages=question, max_tokens=max_tokens, stream=True
                )
            )
            reasons.append([c.choices[0].finish_reason for c in chunks if c.choices][-1])
        else:
            out = client.chat.completions.create(
                model="tiny", messages=question, max_tokens=max_tokens
            )
            reasons.append(out.choices[0].finish_reason)
    assert reasons == ["length", "stop"]


CITY_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


@pytest.fixture
def json_agg(upstream: OpenAIServer) -> Iterator[OpenAIServer]:
    """The upstream aggregator answers in JSON (as a model told a response_format would)."""
    yield from _aggregator(upstream, Behavior(latency=0.02, content='{"city": "Oslo"}'))


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_reaches_the_aggregator_only(
    client: openai.OpenAI, json_agg: OpenAIServer, stream: bool
) -> None:
    question = [{"role": "user", "content": "Where?"}]
    if stream:
        chunks = client.chat.completions.create(
            model="tiny", messages=question, response_format=CITY_FORMAT, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        out = client.chat.completions.create(
            model="tiny", messages=question, response_format=CITY_FORMAT
        )
        text = out.choices[0].message.content or ""
    assert json.loads(text) == {"city": "Oslo"}
    log = {r["model"]: r for r in json_agg.log()}
    assert log["agg"]["response_format"] == CITY_FORMAT and log["agg"]["stream"] == stream
    assert log["a"]["response_format"] is None and log["b"]["response_format"] is None


@pytest.mark.parametrize(
    ("response_format", "named"),
    [
        ({"type": "xml"}, "response_format"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema"),
        ({"type": "json_object", "schema": {}}, "response_format"),
        ("json", "response_format"),
    ],
)
def test_a_bad_response_format_is_a_400_naming_it(
    served: Served, response_format: Any, named: str
) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}
    r = httpx.post(
        f"{served.url}/v1/chat/completions", json={**body, "response_format": response_format}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(named + ":"), r.text


def test_tools_reach_the_aggregator_only(client: openai.OpenAI, calling_agg: Any) -> None:
    question = {"role": "user", "content": "Weather in 'Oslo'?"}
    out = client.chat.completions.create(
        model="tiny", messages=[question], tools=[WEATHER_TOOL], tool_choice="auto", stop=["END"]
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    log = {r["model"]: r for r in calling_agg.log()}
    assert log["agg"]["tools"] == ["get_weather"] and log["agg"]["stop"] == ["END"]
    assert log["a"]["tools"] is None and log["b"]["tools"] is None and log["a"]["stop"] is None
    # the agent's next turn: the tool's result goes back, the answer is text
    calling_agg.reset()
    follow = [
        question,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    out = client.chat.completions.create(model="tiny", messages=follow, tools=[WEATHER_TOOL])
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[0].message.content == "agg says: Weather in 'Oslo'?"
    log = {r["model"]: r for r in calling_agg.log()}
    assert [m["role"] for m in log["agg"]["messages"]][-2:] == ["assistant", "tool"]
    assert [m["role"] for m in log["a"]["messages"]] == ["user", "assistant", "user"]
    assert log["a"]["messages"][-1]["content"] == "[tool get_weather returned]: sunny"


def test_streamed_tool_call(client: openai.OpenAI, calling_agg: Any) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Weather in 'Rome'?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"city": "Rome"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_langchain_chat_openai(served: Served) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="tiny", base_url=f"{served.url}/v1", api_key="unused")
    assert llm.invoke("Hello").content == "agg says: Hello"
    assert "".join(c.text for c in llm.stream("Hi there")) == "agg says: Hi there"


def test_moa_extension_returns_references_and_calls(served: Served) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Q"}],
        "moa": {"include": ["references", "calls"]},
    }
    out = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=30).json()
    assert out["moa"]["references"] == ["a says: Q", "b says: Q"]
    assert [c["model"] for c in out["moa"]["calls"]] == ["a", "b", "agg"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "nope", "messages": [{"role": "user", "content": "q"}]}, 404, "unknown model"),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "n": 2},
            400,
            "n: only 1",
        ),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "tools": [{}]},
            400,
            "tools[0]: must be an OpenAI tool schema",
        ),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "tool_choice": "any"},
            400,
            "tool_choice: set without any tools",
        ),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "functions": [{}]},
            400,
            "use tools",
        ),
        ({"model": "tiny", "messages": []}, 400, "messages"),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "temperature": 5},
            400,
            "temperature",
        ),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "max_tokens": 10**7},
            400,
            "capped",
        ),
        ({"model": "tiny", "messages": [{"role": "user", "content": "q"}], "frob": 1}, 400, "frob"),
        ({"model": "tiny", "messages": [{"role": "tool", "content": "q"}]}, 400, "tool_call_id"),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "top_p": 2},
            400,
            "top_p: Input should be less than or equal to 1",
        ),
        (
            {
                "model": "tiny",
                "messages": [{"role": "user", "content": "q"}],
                "logit_bias": {"x": 1},
            },
            400,
            "logit_bias['x']: a token id",
        ),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "q"}], "seed": 2**70},
            400,
            "seed: must be a whole number",
        ),
        (
            {
                "model": "tiny",
                "messages": [{"role": "user", "content": "q"}],
                "reasoning_effort": "max",
            },
            400,
            "reasoning_effort: one of none",
        ),
    ],
)
def test_errors_are_openai_shaped(served: Served, body: Any, status: int, words: str) -> None:
    resp = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert words in error["message"] and "Traceback" not in resp.text


def test_malformed_and_oversized_bodies(served: Served) -> None:
    url = f"{served.url}/v1/chat/completions"
    bad = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    huge = httpx.post(url, content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_upstream_failure_is_a_502_naming_the_models(
    served: Served, upstream: OpenAIServer
) -> None:
    for name in ("a", "b"):
        upstream.set_behavior(name, Behavior(always_status=500))
    try:
        resp = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "q"}]},
            timeout=30,
        )
    finally:
        upstream.set_behavior("a", Behavior(latency=0.02))
        upstream.set_behavior("b", Behavior(latency=0.02))
    assert resp.status_code == 502
    message = resp.json()["error"]["message"]
    assert "a" in message and "b" in message and "HTTP 500" in message
    # the server stays up
    assert httpx.get(f"{served.url}/health").status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_answer_is_in_the_moa_calls_of_the_502(
    served: Served, upstream: OpenAIServer, stream: bool
) -> None:
    """The aggregator fails after its retries: a client that asked for ``moa.calls`` gets
    what the run did, the failed call included (what it paid for), with the error."""
    upstream.set_behavior("agg", Behavior(always_status=500))
    body: dict[str, Any] = {"model": "tiny", "messages": [{"role": "user", "content": "q"}]}
    try:
        asked = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={**body, "stream": stream, "moa": {"include": ["calls"]}},
            timeout=30,
        )
        plain = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=30)
    finally:
        upstream.set_behavior("agg", Behavior(latency=0.02))
    if stream:
        events = [line[6:] for line in asked.text.splitlines() if line.startswith("data: {")]
        out = json.loads(events[-1])
    else:
        assert asked.status_code == 502
        out = asked.json()
    assert out["error"]["code"] == "upstream_failed"
    calls = out["moa"]["calls"]
    assert [(c["model"], c["status"]) for c in calls] == [
        ("a", "ok"),
        ("b", "ok"),
        ("agg", "failed"),
    ]
    assert calls[-1]["attempts"] == 1 and calls[-1]["error"].startswith("HTTP 500")
    assert plain.status_code == 502 and "moa" not in plain.json()  # not asked: not sent


def test_sixty_four_concurrent_clients_each_get_their_own_answer(served: Served) -> None:
    async def main() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=f"{served.url}/v1", api_key="unused", max_retries=0
        ) as c:

            async def one(i: int) -> str:
                out = await c.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": f"question {i}"}]
                )
                return out.choices[0].message.content or ""

            return await asyncio.gather(*(one(i) for i in range(64)))

    answers = asyncio.run(main())
    assert answers == [f"agg says: question {i}" for i in range(64)]


def test_the_web_page_is_served_at_root(served: Served) -> None:
    page = httpx.get(f"{served.url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    specs = httpx.get(f"{served.url}/ui/api/specs").json()
    assert "tiny" in str(specs)


def test_bearer_token_required_when_configured(
    upstream: OpenAIServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOA_SERVE_TOKEN", "s3cret-token-value")
    app = create_app(
        {"tiny": parse_spec(_spec(upstream.base_url))},
        api_key_env="MOA_SERVE_TOKEN",
        db_path=tmp_path / "t.sqlite",
    )
    body = {"model": "tiny", "messages": [{"role": "user", "content": "q"}]}
    with Served(app) as s:
        url = f"{s.url}/v1/chat/completions"
        assert httpx.post(url, json=body).status_code == 401
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "s3cret" not in wrong.text
        ok = httpx.post(
            url, json=body, headers={"Authorization": "Bearer s3cret-token-value"}, timeout=30
        )
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
        assert httpx.get(f"{s.url}/health").status_code == 200  # for load balancers
        assert httpx.get(f"{s.url}/").status_code == 200  # the page; its API needs the token
        assert httpx.get(f"{s.url}/ui/api/threads").status_code == 401


def test_concurrency_limit_answers_429(upstream: OpenAIServer, tmp_path: Any) -> None:
    from langgraph_moa.serve import Limits

    upstream.set_behavior("slowagg", Behavior(latency=1.0))
    spec = _spec(upstream.base_url)
    spec["aggregator"] = {**spec["aggregator"], "name": "slowagg", "model": "openai:slowagg"}
    app = create_app(
        {"tiny": parse_spec(spec)},
        limits=Limits(max_concurrent_runs=1),
        db_path=tmp_path / "t.sqlite",
        include_ui=False,
    )
    body = {"model": "tiny", "messages": [{"role": "user", "content": "q"}]}
    with Served(app) as s:

        async def two() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                first = asyncio.create_task(http.post(f"{s.url}/v1/chat/completions", json=body))
                await asyncio.sleep(0.3)
                second = await http.post(f"{s.url}/v1/chat/completions", json=body)
                return [(await first).status_code, second.status_code]

        assert asyncio.run(two()) == [200, 429]


@pytest.mark.slow
def test_two_workers_from_the_command_line(upstream: OpenAIServer, tmp_path: Any) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_spec(upstream.base_url)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langgraph_moa.cli",
            "serve",
            "--spec",
            str(path),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        answers = [
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"w{i}"}]
            )
            .choices[0]
            .message.content
            for i in range(8)
        ]
        assert answers == [f"agg says: w{i}" for i in range(8)]
        # On a loopback address a request naming another host (DNS rebinding) is refused.
        rebound = httpx.get(f"{base}/v1/models", headers={"Host": "evil.example:80"})
        assert rebound.status_code == 400
    finally:
        proc.terminate()
        proc.wait(20)
