"""Tests of the project's OpenAI-compatible fault-injection test server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from langgraph_moa.testing import Behavior, ControlClient, OpenAIServer, ServerProcess

API_KEY = "test-key-s3cr3t-value"
ROOT = Path(__file__).resolve().parents[1]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


@pytest.fixture
def srv():
    with OpenAIServer() as server:
        yield server


def client(server: OpenAIServer, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, **kw)


def aclient(server: OpenAIServer, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, **kw)


def test_non_stream_answer_matches_question(srv):
    r = client(srv).chat.completions.create(
        model="alpha", messages=user("what is two plus two?"), temperature=0.3, max_tokens=50
    )
    assert r.object == "chat.completion"
    assert r.model == "alpha"
    assert r.choices[0].message.content == "alpha says: what is two plus two?"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 7  # "be brief" + "what is two plus two?"
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == 14
    [rec] = srv.requests
    assert rec["model"] == "alpha" and rec["stream"] is False
    assert rec["messages"] == user("what is two plus two?")
    assert rec["max_tokens"] == 50 and rec["temperature"] == 0.3
    assert rec["status"] == 200 and rec["outcome"] == "ok"
    assert rec["has_auth"] is True
    assert rec["start"] <= rec["end"] <= time.time()


def test_stream_with_usage_chunk(srv):
    question = "multi  word\nquestion here"
    stream = client(srv).chat.completions.create(
        model="beta",
        messages=user(question),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"beta says: {question}"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 4
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert srv.requests[0]["stream"] is True and srv.requests[0]["outcome"] == "ok"


def test_stream_without_include_usage_has_no_usage_chunk(srv):
    chunks = list(client(srv).chat.completions.create(model="m", messages=user("hi"), stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_tokens_padding_token_delay_and_max_tokens(srv):
    srv.set_behavior("long", Behavior(tokens=20, token_delay=0.005))
    c = client(srv)
    r = c.chat.completions.create(model="long", messages=user("q"))
    assert len(r.choices[0].message.content.split()) == 20
    t0 = time.perf_counter()
    chunks = list(c.chat.completions.create(model="long", messages=user("q"), stream=True))
    assert time.perf_counter() - t0 >= 19 * 0.005
    assert len("".join(ch.choices[0].delta.content or "" for ch in chunks).split()) == 20
    r = c.chat.completions.create(model="long", messages=user("q"), max_tokens=5)
    assert len(r.choices[0].message.content.split()) == 5
    assert r.choices[0].finish_reason == "length"
    srv.set_behavior("fixed", Behavior(content="fixed answer"))
    r = c.chat.completions.create(model="fixed", messages=user("q"))
    assert r.choices[0].message.content == "fixed answer"


def test_fail_first_then_success(srv):
    srv.set_behavior("flaky", Behavior(fail_first=2, fail_status=500))
    c = client(srv)
    with pytest.raises(openai.InternalServerError) as ei:
        c.chat.completions.create(model="flaky", messages=user("q"))
    assert ei.value.status_code == 500
    assert ei.value.body["type"] == "server_error"
    srv.reset()
    # the SDK retries (retry-after-ms makes the backoff short) and eventually succeeds
    srv.set_behavior("flaky", Behavior(fail_first=2, retry_after=0.01))
    r = c.with_options(max_retries=3).chat.completions.create(model="flaky", messages=user("q"))
    assert r.choices[0].message.content == "flaky says: q"
    log = srv.log("flaky")
    assert [x["outcome"] for x in log] == ["500", "500", "ok"]
    assert [x["call_index"] for x in log] == [1, 2, 3]
    assert srv.call_count("flaky") == 3


def test_429_has_retry_after_headers(srv):
    srv.set_behavior("limited", Behavior(always_status=429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as ei:
        client(srv).chat.completions.create(model="limited", messages=user("q"))
    assert ei.value.response.headers["retry-after"] == "2"
    assert ei.value.response.headers["retry-after-ms"] == "2000"
    assert ei.value.body["code"] == "rate_limit_exceeded"
    assert srv.requests[0]["status"] == 429 and srv.requests[0]["outcome"] == "429"


def test_hang_times_out_client_side_and_server_keeps_serving(srv):
    srv.set_behavior("stuck", Behavior(hang=True))
    c = client(srv, timeout=0.3)
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="stuck", messages=user("q"))
    assert time.perf_counter() - t0 < 2
    r = c.chat.completions.create(model="fine", messages=user("still alive?"))
    assert r.choices[0].message.content == "fine says: still alive?"
    stuck = srv.log("stuck")[0]
    assert stuck["outcome"] == "hang" and stuck["status"] is None


def test_hang_first_then_answers(srv):
    srv.set_behavior("slowstart", Behavior(hang_first=1))
    c = client(srv, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="slowstart", messages=user("q"))
    assert c.chat.completions.create(model="slowstart", messages=user("q")).choices


def test_stop_with_hanging_request_is_prompt():
    srv = OpenAIServer({"stuck": Behavior(hang=True)}).start()
    errors = []

    async def call():
        try:
            await aclient(srv, timeout=10).chat.completions.create(
                model="stuck", messages=user("q")
            )
        except Exception as exc:
            errors.append(exc)

    async def main():
        task = asyncio.create_task(call())
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        await asyncio.to_thread(srv.stop)
        await task
        return time.perf_counter() - t0

    assert asyncio.run(main()) < 2
    assert isinstance(errors[0], openai.APIConnectionError)
    assert srv.log()[0]["outcome"] == "hang" and srv.log()[0]["end"] is not None


def test_malformed_raises(srv):
    srv.set_behavior("broken", Behavior(malformed=True))
    c = client(srv)
    with pytest.raises((json.JSONDecodeError, openai.APIError)):
        c.chat.completions.create(model="broken", messages=user("q"))
    with pytest.raises((json.JSONDecodeError, openai.APIError)):
        list(c.chat.completions.create(model="broken", messages=user("q"), stream=True))
    assert [r["outcome"] for r in srv.requests] == ["malformed", "malformed"]


def test_empty_content(srv):
    srv.set_behavior("mute", Behavior(empty=True))
    c = client(srv)
    r = c.chat.completions.create(model="mute", messages=user("q"))
    assert r.choices[0].message.content == ""
    chunks = list(c.chat.completions.create(model="mute", messages=user("q"), stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == ""
    assert srv.requests[0]["outcome"] == "empty"


def test_context_window_exceeded(srv):
    srv.set_behavior("tiny", Behavior(context_window=10))
    c = client(srv)
    with pytest.raises(openai.BadRequestError) as ei:
        c.chat.completions.create(model="tiny", messages=user("one two three four five six x y z"))
    err = ei.value.body
    assert err["code"] == "context_length_exceeded"
    assert err["type"] == "invalid_request_error" and err["param"] == "messages"
    assert err["message"].startswith("This model's maximum context length is 10 tokens.")
    assert "resulted in 11 tokens" in err["message"]
    # prompt tokens + max_tokens count against the window
    assert c.chat.completions.create(model="tiny", messages=user("q")).choices
    with pytest.raises(openai.BadRequestError, match="context length"):
        c.chat.completions.create(model="tiny", messages=user("q"), max_tokens=8)
    assert [r["outcome"] for r in srv.requests] == ["context_length", "ok", "context_length"]


def test_drop_mid_stream(srv):
    srv.set_behavior("drop", Behavior(drop_mid_stream_first=1, tokens=30))
    c = client(srv)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in c.chat.completions.create(model="drop", messages=user("q"), stream=True):
            received.append(chunk)
    assert 1 <= len(received) < 30
    # second streaming request is complete
    chunks = list(c.chat.completions.create(model="drop", messages=user("q"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [r["outcome"] for r in srv.requests] == ["dropped", "ok"]


async def test_drop_mid_stream_aiohttp_transport(srv):
    srv.set_behavior("drop", Behavior(drop_mid_stream_first=1, tokens=30))
    async with openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url=srv.base_url,
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(),
    ) as c:
        with pytest.raises(Exception):  # noqa: B017 - transport-specific error type
            stream = await c.chat.completions.create(model="drop", messages=user("q"), stream=True)
            async for _ in stream:
                pass
        r = await c.chat.completions.create(model="drop", messages=user("aio"))
        assert r.choices[0].message.content.startswith("drop says: aio w4 ")


async def test_concurrent_requests_overlap(srv):
    srv.set_default(Behavior(latency=0.3))
    async with aclient(srv, timeout=10) as c:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(
                c.chat.completions.create(model=f"m{i % 5}", messages=user(f"question {i}"))
                for i in range(50)
            )
        )
        elapsed = time.perf_counter() - t0
    assert elapsed < 3.0  # sequential would be 15 s
    for i, r in enumerate(results):
        assert r.choices[0].message.content == f"m{i % 5} says: question {i}"
    log = srv.log()
    assert len(log) == 50
    starts = sorted(r["start"] for r in log)
    assert starts[-1] - starts[0] < 0.3  # all started before the first one finished
    assert min(r["end"] for r in log) > starts[-1]


async def test_streaming_concurrency_256():
    async with OpenAIServer(default=Behavior(latency=0.2, tokens=10, token_delay=0.01)) as srv:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(limits=limits, timeout=10) as http:
            c = openai.AsyncOpenAI(
                api_key=API_KEY, base_url=srv.base_url, max_retries=0, http_client=http
            )

            async def one(i: int) -> str:
                stream = await c.chat.completions.create(
                    model="s", messages=user(f"q{i}"), stream=True
                )
                return "".join([ch.choices[0].delta.content or "" async for ch in stream])

            t0 = time.perf_counter()
            texts = await asyncio.gather(*(one(i) for i in range(256)))
            elapsed = time.perf_counter() - t0
        assert elapsed < 30.0  # concurrent: sequential would take ~75 s (2.3 s idle here)
        assert all(len(t.split()) == 10 for t in texts)
        assert len(srv.log()) == 256


async def test_async_context_manager_on_current_loop_and_langchain():
    async with OpenAIServer({"lc": Behavior(latency=0.01)}) as srv:
        llm = ChatOpenAI(model="lc", base_url=srv.base_url, api_key=API_KEY, max_retries=0)
        msg = await llm.ainvoke("why is the sky blue?")
        assert msg.content == "lc says: why is the sky blue?"
        assert msg.usage_metadata["input_tokens"] == 5
        pieces = [c.content async for c in llm.astream("stream me please")]
        assert "".join(pieces) == "lc says: stream me please"
        assert len(srv.requests) == 2


def test_langchain_sync_and_max_tokens_logged(srv):
    llm = ChatOpenAI(
        model="lc", base_url=srv.base_url, api_key=API_KEY, max_retries=0, max_tokens=64
    )
    assert llm.invoke("hello world").content == "lc says: hello world"
    assert srv.requests[0]["max_tokens"] == 64


def test_models_health_and_http_control_api(srv):
    srv.set_behavior("known", Behavior())
    ctl = ControlClient(srv.base_url)
    assert ctl.health()
    models = client(srv).models.list()
    assert [m.id for m in models.data] == ["known"]
    ctl.set_behaviors({"x": {"always_status": 503}, "pre-*": {"content": "wild"}})
    assert "known" not in ctl.behaviors()["models"]
    c = client(srv)
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="x", messages=user("q"))
    r = c.chat.completions.create(model="pre-fix", messages=user("q"))
    assert r.choices[0].message.content == "wild"
    assert [r["outcome"] for r in ctl.log()] == ["503", "ok"]
    assert [r["model"] for r in ctl.log("x")] == ["x"]
    ctl.reset()
    assert ctl.log() == [] and srv.requests == []
    with pytest.raises(ValueError, match="unknown Behavior field"):
        Behavior.from_dict({"latncy": 1})
    resp = httpx.post(srv.url + "/_control/behaviors", json={"models": {"y": {"nope": 1}}})
    assert resp.status_code == 400


def test_bad_request_body(srv):
    resp = httpx.post(srv.base_url + "/chat/completions", content=b"not json")
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert srv.requests[0]["outcome"] == "bad_request" and srv.requests[0]["has_auth"] is False


def test_log_never_contains_api_key(srv):
    srv.set_behavior("limited", Behavior(fail_first=1, fail_status=429))
    c = client(srv)
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="limited", messages=user("q"))
    c.chat.completions.create(model="limited", messages=user("q"))
    list(c.chat.completions.create(model="limited", messages=user("q"), stream=True))
    assert all(r["has_auth"] for r in srv.requests)
    assert API_KEY not in json.dumps(srv.requests)
    assert API_KEY not in httpx.get(srv.url + "/_control/log").text


def test_no_server_errors_logged(srv, caplog):
    srv.set_behavior("drop", Behavior(drop_mid_stream_first=5))
    srv.set_behavior("stuck", Behavior(hang=True))
    c = client(srv, timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="aiohttp"):
        for model in ("drop", "stuck"):
            with pytest.raises(openai.APIError):
                list(c.chat.completions.create(model=model, messages=user("q"), stream=True))
        time.sleep(0.05)
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")]


def test_subprocess_ready_and_control():
    with ServerProcess(behaviors={"sub": {"content": "from subprocess"}}) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        c = openai.OpenAI(api_key=API_KEY, base_url=proc.base_url, max_retries=0)
        r = c.chat.completions.create(model="sub", messages=user("q"))
        assert r.choices[0].message.content == "from subprocess"
        proc.set_behaviors({"sub": {"always_status": 500}})
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="sub", messages=user("q"))
        log = proc.log()
        assert [x["outcome"] for x in log] == ["ok", "500"]
        assert API_KEY not in json.dumps(log)
        assert log[0]["start"] <= time.time()
        proc_handle = proc.proc
    assert proc_handle.returncode == 0


def test_subprocess_cli_sigint_exit():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa.testing.server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = p.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:") and line.rstrip().endswith("/v1")
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
