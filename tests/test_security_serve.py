"""Attacks on a real ``moa serve`` (a subprocess on 127.0.0.1), as a client, a web page or a
slow-loris script would try them (issue 20): bodies bounded while they are read, no cross-site
runs, malformed JSON a 400, ``--max-concurrent`` for every kind of run, header and body read
deadlines, keys scrubbed in every form, and a fuzzing pass over the routes.

Upstream models are the project's fake OpenAI server; every test says which of its requests
must (not) have happened. The server's own log must never hold a traceback or a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from langgraph_moa.redact import written_forms
from langgraph_moa.testing import Behavior, OpenAIServer

READ_TIMEOUT = 2.0
"""The server's --read-timeout here (the default is 10 s): slow clients are cut after it."""
MAX_RUNS = 2
ALLOWED = "http://allowed.example:5555"
ODD_KEY = 'k3y!odd#pass%7ee1^x"q\\&<>+ =/?`'
"""A key with every ASCII character class (an HTTP header carries no other), in a variable
whose name does not look secret (unicode keys: tests/test_redact.py)."""
ODD_VAR = "UPSTREAM_ODD_VALUE"


def _model(url: str, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": f"openai:{name}",
        "base_url": url,
        "retry": {"max_attempts": 1, "jitter": False},
        **kw,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Behavior(latency=0.02)) as srv:
        srv.set_behavior("slowagg", Behavior(latency=1.5))
        srv.set_behavior("echo", Behavior(always_status=401, echo_auth=True))
        yield srv


class MoaServe:
    """``moa serve`` as a subprocess; its stdout and stderr go to ``log``."""

    def __init__(
        self, folder: Path, upstream: OpenAIServer, *args: str, command: str = "serve"
    ) -> None:
        url = upstream.base_url
        specs = {
            "tiny": {"layers": [[_model(url, "a")]], "aggregator": _model(url, "agg")},
            "slow": {"layers": [[_model(url, "a")]], "aggregator": _model(url, "slowagg")},
            "echo": {
                "layers": [[_model(url, "echo", api_key_env=ODD_VAR)]],
                "aggregator": _model(url, "agg"),
            },
        }
        files = []
        for name, spec in specs.items():
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump({"name": name, **spec}))
            files += ["--spec", str(path)]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        self.data = folder / "data"
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(self.data),
            ODD_VAR: ODD_KEY,
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [sys.executable, "-m", "langgraph_moa.cli", command, *files, "--port", str(self.port)]
        if command == "serve":
            cmd += ["--max-concurrent", str(MAX_RUNS)]
        else:
            cmd += ["--no-browser", "--db", str(folder / "ui.sqlite")]
        cmd += ["--read-timeout", str(READ_TIMEOUT), "--allow-origin", ALLOWED, *args]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 60
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"moa serve did not start:\n{self.log_text()}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ui/api/specs", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def moa(tmp_path_factory: pytest.TempPathFactory, upstream: OpenAIServer) -> Iterator[MoaServe]:
    server = MoaServe(tmp_path_factory.mktemp("moa-serve"), upstream)
    try:
        yield server
    finally:
        server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    for form in written_forms(ODD_KEY):
        assert form not in log


def ask(text: str, model: str = "tiny", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def upstream_calls(upstream: OpenAIServer, marker: str) -> list[dict[str, Any]]:
    """The upstream requests whose messages carry ``marker``."""
    return [r for r in upstream.requests if marker in json.dumps(r["messages"])]


# --------------------------------------------------------------------------- raw HTTP


def _connect(server: MoaServe) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of one response (read until the body is complete or EOF)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body.decode(errors="replace")


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (EOF or reset; data first is read away)."""
    try:
        sock.setblocking(False)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _head(server: MoaServe, path: str, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


# --------------------------------------------------------------------------- 1. body size


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/ui/api/runs"])
def test_a_chunked_body_over_the_limit_is_refused_while_it_is_sent(
    moa: MoaServe, upstream: OpenAIServer, path: str
) -> None:
    """The issue's attack: a 300 MB thread_id sent in chunks (no Content-Length). The server
    must answer 413 as the body passes 1 MiB, long before the client has sent it all, and
    neither its memory nor its thread store may grow by what was sent."""
    rss_before = moa.peak_rss_mb()
    sock = _connect(moa)
    sock.sendall(_head(moa, path, "Transfer-Encoding: chunked\r\n"))
    piece = b"x" * 65536
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sock.sendall(b'8\r\n{"spec":\r\n' if path.startswith("/ui") else b'9\r\n{"model":\r\n')
    sent, attempt = 0, 256 << 20
    sock.setblocking(False)
    while sent < attempt:
        readable, writable, _ = select.select([sock], [sock], [], 5)
        if readable:
            break
        if writable:
            try:
                sent += sock.send(frame)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # reset after the answer: read it below
                break
    sock.setblocking(True)
    status, headers, body = _read_response(sock)
    assert status == 413, body
    assert headers["connection"] == "close"  # the rest of the body is not read
    deadline = time.monotonic() + 5
    while not _closed(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _closed(sock)
    sock.close()
    assert "over 1048576 bytes" in json.loads(body)["error"]["message"]
    assert sent < 64 << 20, f"the server read {sent} bytes before refusing"
    assert moa.peak_rss_mb() - rss_before < 64
    assert not list(moa.data.rglob("*.sqlite")) or all(
        f.stat().st_size < 1 << 20 for f in moa.data.rglob("*.sqlite*")
    )
    assert moa.healthy()


def test_a_content_length_over_the_limit_is_refused_before_any_byte_of_body(
    moa: MoaServe,
) -> None:
    sock = _connect(moa)
    sock.sendall(_head(moa, "/v1/chat/completions", f"Content-Length: {300 << 20}\r\n"))
    status, _, body = _read_response(sock, timeout=5)
    sock.close()
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"


def test_a_large_question_within_the_limit_still_runs(moa: MoaServe) -> None:
    question = "q" * 500_000
    response = httpx.post(f"{moa.url}/v1/chat/completions", json=ask(question), timeout=30)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- 11. slow clients


def test_slow_loris_headers_are_cut_at_the_read_timeout(moa: MoaServe) -> None:
    """Half-sent requests (the issue held 1,200 open): each connection is closed once its
    headers are not complete after --read-timeout, even one that keeps trickling bytes,
    while the server keeps answering others."""
    socks = []
    for _ in range(100):
        sock = _connect(moa)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(sock)
    trickler = _connect(moa)
    trickler.sendall(b"GET /health HTTP/1.1\r\n")
    start = time.monotonic()
    closed_at = None
    while time.monotonic() - start < READ_TIMEOUT + 3:
        try:
            trickler.sendall(b"X-Slow: 1\r\n")
        except OSError:
            closed_at = time.monotonic() - start
            break
        assert moa.healthy()  # others are served meanwhile
        time.sleep(0.25)
    assert closed_at is not None and closed_at >= READ_TIMEOUT - 0.5
    time.sleep(0.5)
    assert all(_closed(s) for s in socks)
    for sock in [*socks, trickler]:
        sock.close()


@pytest.mark.parametrize("kind", ["h11", "httptools"])
def test_the_header_deadline_holds_on_both_of_uvicorns_protocols(kind: str) -> None:
    """``pip install 'langgraph-moa[serve]'`` gets h11 (httptools comes with other
    packages): the deadline and the header size cap must hold on either."""
    import uvicorn

    from langgraph_moa.http_protocol import HeaderDeadline

    if kind == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    else:
        pytest.importorskip("httptools")
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base

    protocol = type("Protocol", (HeaderDeadline, base), {"header_timeout": 0.5})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        big = socket.create_connection(("127.0.0.1", port))
        with contextlib.suppress(OSError):
            big.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"y" * 70_000 + b"\r\n")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(3):  # a keep-alive client past the deadline is served
                assert client.get("/").text == "ok"
                time.sleep(0.3)
        time.sleep(0.5)
        assert _closed(slow) and _closed(big)
        slow.close()
        big.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_slow_body_is_answered_408_at_the_read_timeout(moa: MoaServe) -> None:
    sock = _connect(moa)
    sock.sendall(_head(moa, "/v1/chat/completions", "Content-Length: 1000\r\n") + b'{"mo')
    start = time.monotonic()
    status, headers, body = _read_response(sock, timeout=READ_TIMEOUT + 5)
    took = time.monotonic() - start
    assert status == 408 and "did not arrive" in body
    assert READ_TIMEOUT - 0.5 < took < READ_TIMEOUT + 3
    time.sleep(0.2)
    assert _closed(sock)
    sock.close()


def test_a_keep_alive_connection_is_served_again(moa: MoaServe) -> None:
    """The header deadline does not cut ordinary clients that reuse a connection."""
    with httpx.Client(base_url=moa.url, timeout=30) as client:
        for i in range(3):
            assert client.post("/v1/chat/completions", json=ask(f"ka{i}")).status_code == 200
            time.sleep(READ_TIMEOUT / 2)


# --------------------------------------------------------------------------- 2. cross-site


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/chat/completions", {"content-type": "text/plain"}, 415),
        ("/v1/chat/completions", {"content-type": "application/x-www-form-urlencoded"}, 415),
        ("/v1/chat/completions", {"content-type": "multipart/form-data; boundary=x"}, 415),
        ("/v1/chat/completions", {"content-type": None}, 415),
        ("/v1/chat/completions", {"origin": "http://evil.example"}, 403),
        ("/v1/chat/completions", {"origin": "null"}, 403),
        ("/v1/chat/completions", {"origin": "http://127.0.0.1:1"}, 403),
        ("/v1/chat/completions", {"origin": "http://localhost"}, 403),
        ("/ui/api/runs", {"content-type": "text/plain"}, 415),
        ("/ui/api/runs", {"origin": "http://evil.example"}, 403),
    ],
)
def test_a_cross_site_request_starts_no_run(
    moa: MoaServe, upstream: OpenAIServer, path: str, headers: dict[str, Any], status: int
) -> None:
    marker = f"xsite-{path}-{sorted(headers.items())}"
    body = ask(marker) if path.startswith("/v1") else {"spec": "tiny", "question": marker}
    sent = {k: v for k, v in {"content-type": "application/json", **headers}.items() if v}
    response = httpx.post(f"{moa.url}{path}", content=json.dumps(body), headers=sent, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] in ("forbidden_origin", "unsupported_media_type")
    if status == 403:
        assert "--allow-origin" in error["message"]
    assert upstream_calls(upstream, marker) == []


@pytest.mark.parametrize(
    "origin",
    [None, "same", ALLOWED, ALLOWED.upper() + "/"],
    ids=["none", "same", "allowed", "case"],
)
def test_same_origin_allowed_origins_and_non_browsers_run(
    moa: MoaServe, upstream: OpenAIServer, origin: str | None
) -> None:
    headers = {}
    if origin is not None:
        headers["origin"] = f"http://127.0.0.1:{moa.port}" if origin == "same" else origin
    marker = f"ok-origin-{origin}"
    response = httpx.post(
        f"{moa.url}/v1/chat/completions", json=ask(marker), headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    assert upstream_calls(upstream, marker)


ATTACK_PAGE = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="f" method="POST" enctype="text/plain" target="sink" action="{url}/v1/chat/completions">
<input name='{{"model":"tiny","messages":[{{"role":"user","content":"form-{marker}"}}],"x":"'
 value='"}}'>
</form>
<script>
const body = (m) => JSON.stringify({{model: "tiny", messages: [{{role: "user", content: m}}]}});
const ui = (m) => JSON.stringify({{spec: "tiny", question: m}});
Promise.allSettled([
  fetch("{url}/v1/chat/completions", {{method: "POST", mode: "no-cors",
        headers: {{"Content-Type": "text/plain"}}, body: body("nocors-{marker}")}}),
  fetch("{url}/ui/api/runs", {{method: "POST", mode: "no-cors",
        headers: {{"Content-Type": "text/plain"}}, body: ui("nocors-ui-{marker}")}}),
  fetch("{url}/v1/chat/completions", {{method: "POST", mode: "cors",
        headers: {{"Content-Type": "application/json"}}, body: body("cors-{marker}")}}),
]).then((r) => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script></body></html>"""


@pytest.mark.browser
async def test_a_foreign_web_page_in_chromium_starts_no_run(
    moa: MoaServe, upstream: OpenAIServer
) -> None:
    """The issue's attack in a real browser: a page served from another 127.0.0.1 port
    posts to moa serve with a no-cors text/plain fetch, a CORS JSON fetch and an HTML form
    (enctype=text/plain, which makes a body that parses as JSON). No run may start."""
    from test_web_browser import ARGS, CHROMIUM, _require_browser

    _require_browser()
    from playwright.async_api import async_playwright

    marker = "csrf-canary"
    html = ATTACK_PAGE.format(url=moa.url, marker=marker).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    statuses: list[tuple[str, int]] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page()
            page.on(
                "response",
                lambda r: statuses.append((r.request.method + " " + r.url, r.status)),
            )
            await page.goto(f"http://127.0.0.1:{evil.server_port}/")
            await page.wait_for_function("document.title === 'fetched'", timeout=20_000)
            for _ in range(100):  # the form's navigation in the iframe
                if any("chat/completions" in u and s == 403 for u, s in statuses[3:]):
                    break
                await asyncio.sleep(0.1)
            await browser.close()
    finally:
        evil.shutdown()
    posts = [(u, s) for u, s in statuses if u.startswith("POST") and str(moa.port) in u]
    print(posts)  # shown on failure
    # Every request reached the server and was refused there (the CORS one never left
    # the browser: its preflight got no Access-Control-Allow-Origin).
    assert posts and all(s == 403 for _, s in posts), posts
    assert len([u for u, _ in posts if "completions" in u]) >= 2  # the no-cors fetch + form
    assert upstream_calls(upstream, marker) == []


# --------------------------------------------------------------------------- 10. malformed JSON


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 200_000, "nests deeper than 64"),
        (b'{"a":' * 100_000, "nests deeper than 64"),
        (b"[" * 70 + b"]" * 70, "nests deeper than 64"),
        (b'{"model": "tiny", "messages": [' + b"[" * 65 + b"]" * 65 + b"]}", "nests deeper"),
        (b'{"model":', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),
        (b"", "not valid JSON"),
        (b"NaN", "NaN is not a JSON value"),
        (b'{"model": "tiny", "temperature": -Infinity}', "-Infinity is not a JSON value"),
        (b"[]", "the request body must be a JSON object"),
        (b'"text"', "the request body must be a JSON object"),
    ],
    ids=lambda v: v[:12].decode(errors="replace") if isinstance(v, bytes) else v,
)
def test_malformed_json_of_any_shape_is_a_400(moa: MoaServe, body: bytes, words: str) -> None:
    for path in ("/v1/chat/completions", "/ui/api/runs"):
        response = httpx.post(
            f"{moa.url}{path}", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422), (path, response.text[:300])
        if path.startswith("/v1"):
            assert words in response.json()["error"]["message"]
    assert "Traceback" not in moa.log_text()


# --------------------------------------------------------------------------- 6. --max-concurrent


def test_max_concurrent_counts_streams_and_says_why_with_retry_after(
    moa: MoaServe, upstream: OpenAIServer
) -> None:
    """The issue: 12 streams at a limit of 2 all got 200 and queued. Now a stream holds its
    slot until it ends; the next request of either kind (and a web page run) gets 429."""

    async def go() -> None:
        async with httpx.AsyncClient(base_url=moa.url, timeout=30) as http:
            started = [asyncio.Event() for _ in range(MAX_RUNS)]

            async def stream(i: int) -> int:
                body = ask(f"held-{i}", model="slow", stream=True)
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    async for _ in r.aiter_raw():
                        started[i].set()  # its first chunk: the run holds its slot
                    return r.status_code

            held = [asyncio.create_task(stream(i)) for i in range(MAX_RUNS)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 20)
            refused = [
                await http.post("/v1/chat/completions", json=ask("busy", stream=True)),
                await http.post("/v1/chat/completions", json=ask("busy")),
                await http.post("/ui/api/runs", json={"spec": "tiny", "question": "busy"}),
            ]
            for response in refused:
                assert response.status_code == 429, response.text
                assert response.headers["retry-after"] == "1"
                assert "--max-concurrent" in response.json()["error"]["message"]
            assert await asyncio.gather(*held) == [200] * MAX_RUNS
            after = await http.post("/v1/chat/completions", json=ask("after"))
            assert after.status_code == 200

    asyncio.run(go())
    assert upstream_calls(upstream, "busy") == []


def test_a_client_that_drops_its_stream_frees_its_slot(moa: MoaServe) -> None:
    for i in range(MAX_RUNS + 1):
        with (
            httpx.Client(base_url=moa.url, timeout=30) as http,
            http.stream(
                "POST", "/v1/chat/completions", json=ask(f"drop{i}", "slow", stream=True)
            ) as r,
        ):
            assert r.status_code == 200
            next(r.iter_raw())  # the first chunk, then hang up
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = httpx.post(f"{moa.url}/v1/chat/completions", json=ask("freed"), timeout=30)
        if response.status_code == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"slots were not freed: {response.status_code} {response.text}")


# --------------------------------------------------------------------------- 5. the scrubber


def test_a_key_the_upstream_echoes_is_scrubbed_in_every_form(
    moa: MoaServe, upstream: OpenAIServer
) -> None:
    """The spec's model sends ODD_KEY (from a variable not named like a secret) to an
    upstream that quotes it back in its 401; the 502 and the log show none of it."""
    response = httpx.post(
        f"{moa.url}/v1/chat/completions", json=ask("echo me", model="echo"), timeout=30
    )
    assert response.status_code == 502, response.text
    assert upstream.log("echo") and upstream.log("echo")[-1]["has_auth"]
    text = response.text + moa.log_text()
    assert "401" in response.text and "[REDACTED]" in response.text
    for form in written_forms(ODD_KEY) | {json.dumps(ODD_KEY), urllib.parse.quote(ODD_KEY)}:
        assert form not in text
    for tail in ("odd#pass", "%7ee1^x", "1^x"):
        assert tail not in text


# --------------------------------------------------------------------------- moa ui


@pytest.mark.slow
def test_moa_ui_has_the_same_guard(
    tmp_path_factory: pytest.TempPathFactory, upstream: OpenAIServer
) -> None:
    """``moa ui`` (its own app, no /v1): bodies bounded while read, no cross-site runs, slow
    headers cut."""
    ui = MoaServe(tmp_path_factory.mktemp("moa-ui"), upstream, command="ui")
    try:
        sock = _connect(ui)
        sock.sendall(_head(ui, "/ui/api/runs", "Transfer-Encoding: chunked\r\n"))
        with contextlib.suppress(OSError):
            for _ in range(64):
                sock.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        status, _, body = _read_response(sock)
        assert status == 413 and json.loads(body)["detail"].startswith("request body over")
        sock.close()
        run = {"spec": "tiny", "question": "ui-canary"}
        for headers, code in (
            ({"origin": "http://evil.example"}, 403),
            ({"content-type": "text/plain"}, 415),
        ):
            sent = {"content-type": "application/json", **headers}
            response = httpx.post(f"{ui.url}/ui/api/runs", content=json.dumps(run), headers=sent)
            assert response.status_code == code, response.text
        response = httpx.post(
            f"{ui.url}/ui/api/runs", json=run, headers={"origin": ALLOWED}, timeout=30
        )
        assert response.status_code == 202, response.text  # a server-side run started
        events = httpx.get(f"{ui.url}/ui/api/runs/{response.json()['run_id']}/events", timeout=30)
        assert "event: done" in events.text
        assert len(upstream_calls(upstream, "ui-canary")) == 2  # the allowed run only
        slow = _connect(ui)
        slow.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(READ_TIMEOUT + 1)
        assert _closed(slow)
        slow.close()
    finally:
        ui.stop()
    assert "Traceback" not in ui.log_text()


# --------------------------------------------------------------------------- fuzzing


@pytest.mark.slow
def test_fuzzing_the_routes_gives_no_500_and_no_traceback(moa: MoaServe) -> None:
    """Hypothesis sends generated bodies and headers to every route; any answer but a 5xx
    is fine, and the server's log must stay free of tracebacks."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
        max_leaves=20,
    )
    fields = {
        "model": st.sampled_from(["tiny", "nope", ""]) | st.text(max_size=20),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"])},
                optional={"content": values, "tool_calls": values, "name": values},
            ),
            max_size=3,
        )
        | values,
        "stream": st.booleans() | values,
        "temperature": values,
        "max_tokens": values,
        "stop": values,
        "tools": values,
        "tool_choice": values,
        "response_format": values,
        "moa": values,
        "n": values,
        "spec": st.sampled_from(["tiny", "nope"]) | values,
        "question": st.text(max_size=50) | values,
        "thread_id": st.text(max_size=50) | values,
        "resume": values,
    }
    bodies = (
        st.fixed_dictionaries({}, optional=fields).map(lambda d: json.dumps(d).encode())
        | values.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=200)
    )
    routes = st.sampled_from(
        [
            ("POST", "/v1/chat/completions"),
            ("POST", "/ui/api/runs"),
            ("GET", "/v1/models"),
            ("GET", "/ui/api/threads"),
            ("GET", "/ui/api/mermaid"),
            ("GET", "/ui/api/threads/{}"),
            ("DELETE", "/ui/api/threads/{}"),
            ("PATCH", "/ui/api/threads/{}"),
        ]
    )
    headers = st.fixed_dictionaries(
        {},
        optional={
            "content-type": st.sampled_from(
                ["application/json", "text/plain", "application/json; charset=utf-8", ""]
            ),
            "origin": st.sampled_from(["http://evil.example", "null", ALLOWED, "%%"]),
        },
    )

    client = httpx.Client(base_url=moa.url, timeout=60)
    seen: set[int] = set()

    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(route=routes, body=bodies, head=headers, query=st.text(max_size=20))
    def fuzz(route: tuple[str, str], body: bytes, head: dict[str, str], query: str) -> None:
        method, path = route
        path = path.format(urllib.parse.quote(query, safe=""))
        response = client.request(
            method, path, content=body, headers=head, params={"spec": query, "stream": "1"}
        )
        seen.add(response.status_code)
        assert response.status_code < 500, (method, path, body[:200], response.text[:300])

    with client:
        fuzz()
    assert {200, 400, 403, 415} <= seen, seen  # the bodies reached the routes, not only the guard
    log = moa.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert moa.healthy()


# --------------------------------------------------------------------------- origin rules


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://LOCALHOST:8000", "localhost:8000", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("https://moa.example.com", "moa.example.com", True),  # 443 is the default port
        ("https://moa.example.com:443", "moa.example.com", True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # another port is another site
        ("https://127.0.0.1:8000", "127.0.0.1:8000", True),  # behind a TLS proxy
        ("http://127.0.0.1.evil.example:8000", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        ("file://", "127.0.0.1:8000", False),
        ("http://allowed.example:5555", "127.0.0.1:8000", True),
        ("http://allowed.example", "127.0.0.1:8000", False),
    ],
)
def test_which_origins_pass(origin: str, host: str, ok: bool) -> None:
    from langgraph_moa.asgi import Refused, allowed_origin_set, check_site

    allowed = allowed_origin_set([ALLOWED])
    try:
        check_site({"origin": origin, "host": host}, allowed)
        passed = True
    except Refused as exc:
        assert exc.status == 403
        passed = False
    assert passed == ok


@pytest.mark.parametrize("bad", ["evil.example", "http://x/path", "ftp://x", "*", ""])
def test_a_mistyped_allow_origin_fails_at_startup(bad: str) -> None:
    from langgraph_moa.errors import MoAError
    from langgraph_moa.graphs.spec import parse_spec
    from langgraph_moa.web import create_ui_app

    spec = parse_spec(
        {"layers": [[{"model": "local:smollm2"}]], "aggregator": {"model": "local:x"}}
    )
    with pytest.raises(MoAError, match="--allow-origin"):
        create_ui_app({"s": spec}, db_path="unused.sqlite", allowed_origins=[bad])
