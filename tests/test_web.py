"""The web UI's HTTP contract without a browser: the SSE run stream, threads, specs, assets.

The app runs in-process (httpx's ASGI transport) against the fake OpenAI server; what the
page draws from these events is covered in ``test_web_browser.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.testing import Behavior, OpenAIServer
from langgraph_moa.web import create_ui_app

PRICE = {"input": 1.0, "output": 2.0}


def events_of(body: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    return [(name, data) for _, name, data in sse_of(body)]


def sse_of(body: str) -> list[tuple[int, str, dict[str, Any]]]:
    """Parse a text/event-stream body into (id, event, data) triples."""
    out = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        seq = int(next((line[4:] for line in lines if line.startswith("id: ")), "-1"))
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((seq, name, json.loads(data)))
    return out


@pytest_asyncio.fixture
async def client(
    server: OpenAIServer, model: Callable[..., dict[str, Any]], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    server.set_behavior("broken", Behavior(always_status=503))
    specs = {
        "mix": parse_spec(
            {
                "name": "mix",
                "layers": [
                    [model("alpha", price=PRICE), model("broken", price=PRICE)],
                    [model("alpha", price=PRICE), model("beta", price=PRICE)],
                ],
                "aggregator": model("judge", price=PRICE),
            }
        ),
        "keyed": parse_spec(
            {
                "layers": [[{"model": "openai:gpt-4o", "api_key_env": "MOA_UNSET_KEY_Y"}]],
                "aggregator": {"model": "openai:gpt-4o", "api_key_env": "MOA_UNSET_KEY_Y"},
            }
        ),
        "reviewed": parse_spec(
            {
                "layers": [[model("alpha"), model("beta")]],
                "aggregator": model("judge"),
                "review": True,
            }
        ),
        "doomed": parse_spec({"layers": [[model("alpha")]], "aggregator": model("broken")}),
    }
    app = create_ui_app(specs, db_path=tmp_path / "web.sqlite")
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://ui")
    async with app.router.lifespan_context(app), client as c:
        yield c


async def start(client: httpx.AsyncClient, question: str, **body: Any) -> dict[str, Any]:
    """POST /ui/api/runs: the accepted run (202)."""
    body = {"spec": "mix", "question": question, **body}
    response = await client.post("/ui/api/runs", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def watch(client: httpx.AsyncClient, run_id: str, after: int | None = None) -> str:
    """The run's event stream from the start (or after ``after``) to its terminal event."""
    headers = {} if after is None else {"last-event-id": str(after)}
    response = await client.get(f"/ui/api/runs/{run_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.text


async def ask(client: httpx.AsyncClient, question: str, **body: Any) -> list[tuple[str, dict]]:
    """Start a run and read all its events."""
    run = await start(client, question, **body)
    return events_of(await watch(client, run["run_id"]))


async def test_a_run_streams_cards_references_and_the_answer(client: httpx.AsyncClient) -> None:
    accepted = await start(client, "What is 2+2?")
    body = await watch(client, accepted["run_id"])
    assert [seq for seq, _, _ in sse_of(body)] == list(range(len(sse_of(body))))  # SSE ids
    events = events_of(body)
    names = [name for name, _ in events]
    assert names[0] == "run" and names[-1] == "done"
    run = events[0][1]
    assert run["turn"] == 1 and run["thread_id"].startswith("ui-")
    assert (run["run_id"], run["thread_id"]) == (accepted["run_id"], accepted["thread_id"])
    assert all(d["run_id"] == accepted["run_id"] for _, d in events)
    assert [s["node"] for s in run["layout"]["layers"][0]] == ["layer_1/alpha", "layer_1/broken"]

    # Proposer tokens are tagged by node, layer, role and model (stream_proposers=True).
    tokens = [d for n, d in events if n == "token"]
    first = next(t for t in tokens if t["node"] == "layer_2/beta")
    assert (first["layer"], first["role"], first["model"]) == (2, "proposer", "beta")
    assert "".join(t["text"] for t in tokens if t["node"] == "layer_2/beta") == (
        "beta says: What is 2+2?"
    )
    assert any(t["node"] == "aggregator" and t["role"] == "aggregator" for t in tokens)

    answers = {d["node"]: d["text"] for n, d in events if n == "answer"}
    assert answers == {
        "layer_1/alpha": "alpha says: What is 2+2?",
        "layer_2/alpha": "alpha says: What is 2+2?",
        "layer_2/beta": "beta says: What is 2+2?",
    }
    calls = {d["node"]: d for n, d in events if n == "call"}
    assert calls["layer_1/broken"]["status"] == "failed"
    assert "HTTP 503" in calls["layer_1/broken"]["error"]
    assert calls["layer_2/beta"]["cost_usd"] > 0
    progress = [d["event"] for n, d in events if n == "progress"]
    assert "call_failed" in progress and progress.count("layer_started") == 2

    refs = [d for n, d in events if n == "references"]
    assert [r["layer"] for r in refs] == [1, 2]
    assert refs[1]["references"] == [answers["layer_2/alpha"], answers["layer_2/beta"]]
    assert refs[1]["sources"] == [
        {"node": "layer_2/alpha", "model": "alpha"},
        {"node": "layer_2/beta", "model": "beta"},
    ]
    assert refs[0]["sources"] == [{"node": "layer_1/alpha", "model": "alpha"}]
    final = next(d for n, d in events if n == "final")
    assert (final["node"], final["text"]) == ("aggregator", "judge says: What is 2+2?")

    done = events[-1][1]
    assert done["answer"] == final["text"]
    s = done["summary"]
    assert (s["calls"], s["failed"]) == (5, 1)
    assert s["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls.values()))
    assert 0 < s["critical_path_s"] <= s["wall_s"]


async def test_a_conversation_continues_and_is_stored(
    client: httpx.AsyncClient, server: OpenAIServer
) -> None:
    first = await ask(client, "Name a prime.")
    thread = first[0][1]["thread_id"]
    server.reset()
    second = await ask(client, "And another?", thread_id=thread)
    assert second[0][1]["turn"] == 2
    # The aggregator of turn 2 read the conversation: turn 1's question and answer.
    sent = [m["content"] for m in server.log("judge")[0]["messages"]]
    assert any("Name a prime." in str(c) for c in sent)
    assert any("judge says: Name a prime." in str(c) for c in sent)

    listed = (await client.get("/ui/api/threads")).json()["threads"]
    assert [(t["thread_id"], t["title"], t["turns"], t["spec"]) for t in listed] == [
        (thread, "Name a prime.", 2, "mix")
    ]
    assert listed[0]["running"] is None
    read = (await client.get(f"/ui/api/threads/{thread}")).json()
    assert (read["title"], read["spec"], read["running"], read["paused"]) == (
        "Name a prime.",
        "mix",
        None,
        None,
    )
    stored = read["turns"]
    assert [t["status"] for t in stored] == ["done", "done"] and stored[1]["turn"] == 2
    assert stored[1]["sources"][0] == {"node": "layer_2/alpha", "model": "alpha"}
    assert [t["question"] for t in stored] == ["Name a prime.", "And another?"]
    for turn, live in zip(stored, (first, second), strict=True):
        assert turn["answer"] == live[-1][1]["answer"]
        assert turn["answers"] == {d["node"]: d["text"] for n, d in live if n == "answer"}
        assert sorted(c["node"] for c in turn["calls"]) == sorted(
            d["node"] for n, d in live if n == "call"
        )
        assert turn["layout"] == live[0][1]["layout"]  # the cards the live turn drew
        assert turn["summary"]["calls"] == 5 and turn["error"] is None
        assert turn["summary"]["wall_s"] >= turn["summary"]["critical_path_s"] > 0
    assert (await client.get("/ui/api/threads/nope")).status_code == 404


async def test_a_failed_run_is_an_error_event_with_what_was_computed(
    client: httpx.AsyncClient,
) -> None:
    events = await ask(client, "Hi?", spec="doomed")
    name, error = events[-1]
    assert name == "error"
    assert "broken" in error["message"] and "HTTP 503" in error["message"]
    assert error["partial"]["answers"] == {"layer_1/alpha": "alpha says: Hi?"}
    # alpha's answer and the aggregator's failed call (it was paid for): both counted
    assert (error["summary"]["calls"], error["summary"]["failed"]) == (2, 1)
    failed = error["partial"]["calls"][-1]
    assert (failed["node"], failed["model"], failed["status"]) == ("aggregator", "broken", "failed")
    assert [c["status"] for c in error["partial"]["calls"]] == ["ok", "failed"]

    # The conversation goes on after a failed turn, which stays on record as unfinished.
    thread = events[0][1]["thread_id"]
    after = await ask(client, "Again?", thread_id=thread)
    assert after[-1][0] == "done" and after[0][1]["turn"] == 2
    turns = (await client.get(f"/ui/api/threads/{thread}")).json()["turns"]
    assert [t["question"] for t in turns] == ["Hi?", "Again?"]
    # The stored turn says why it failed (the run's own message), not "did not finish".
    assert turns[0]["status"] == "failed" and turns[0]["answer"] is None
    assert turns[0]["error"] == error["message"]
    assert turns[0]["answers"] == {"layer_1/alpha": "alpha says: Hi?"}
    assert (turns[0]["summary"]["calls"], turns[0]["summary"]["failed"]) == (2, 1)
    assert turns[1]["error"] is None and turns[1]["answer"] == "judge says: Again?"


async def test_a_broken_thread_store_is_an_error_event_not_a_dropped_stream(
    server: OpenAIServer, model: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    # The store fails before the graph runs (here: the file is not SQLite). The page must get
    # an error event saying so: a stream that just ends reads as a lost connection.
    store = tmp_path / "threads.sqlite"
    store.write_bytes(b"not a database, " * 512)
    spec = parse_spec({"layers": [[model("alpha")]], "aggregator": model("judge")})
    app = create_ui_app({"one": spec}, db_path=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as c:
        response = await c.post("/ui/api/runs", json={"spec": "one", "question": "Hi?"})
        assert response.status_code == 500
        assert "DatabaseError" in response.json()["error"]["message"]
        assert "Traceback" not in response.text
        assert (await c.get("/ui/api/specs")).status_code == 200  # still serving
    assert server.requests == []


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"spec": "nope", "question": "Hi"}, 404, "spec", "unknown spec 'nope'"),
        ({"spec": "mix", "question": "  "}, 400, "question", "empty"),
        ({"spec": "keyed", "question": "Hi"}, 400, "spec", "not configured on the server"),
        ({"question": "Hi"}, 400, "spec", "required"),
        ({"spec": "mix", "question": "x" * (32 * 1024 + 1)}, 400, "question", "32 KiB"),
        ({"spec": "mix", "question": "é" * (16 * 1024 + 1)}, 400, "question", "32 KiB"),
        ({"spec": "mix", "question": "Hi", "thread_id": "a" * 129}, 400, "thread_id", "128"),
        ({"spec": "mix", "question": "Hi", "thread_id": "../x"}, 400, "thread_id", "128"),
        ({"spec": "mix", "question": "Hi", "thread_id": "t", "resume": [1]}, 400, "resume", ""),
        ({"spec": "mix", "resume": True}, 400, "thread_id", "resume needs"),
    ],
)
async def test_bad_requests_are_refused_naming_the_field_before_any_model_call(
    client: httpx.AsyncClient,
    server: OpenAIServer,
    body: dict,
    status: int,
    field: str,
    words: str,
) -> None:
    response = await client.post("/ui/api/runs", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and words in error["message"]
    assert "MOA_UNSET_KEY_Y" not in response.text  # never a server variable's name
    assert server.requests == []


async def test_the_spec_list_never_names_server_variables(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/api/specs")
    assert "MOA_UNSET_KEY_Y" not in response.text
    configured = {s["name"]: s["configured"] for s in response.json()["specs"]}
    assert configured == {"mix": True, "keyed": False, "reviewed": True, "doomed": True}


async def test_page_assets_specs_and_graph_are_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "form-action 'none'" in csp and "frame-ancestors 'none'" in csp
    for src in ("ui/static/app.js", "ui/static/app.css", "ui/static/vendor/marked.min.js"):
        assert src in page.text or src.endswith("vendor/marked.min.js")
        asset = await client.get("/" + src)
        assert asset.status_code == 200 and len(asset.content) > 1000
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
    assert "ui/static/vendor/highlight.min.js" in page.text  # syntax colours, served here
    hljs = await client.get("/ui/static/vendor/highlight.min.js")
    assert hljs.status_code == 200 and b"BSD-3-Clause" in hljs.content[:400]
    mermaid = await client.get("/ui/static/vendor/mermaid.min.js")
    assert mermaid.headers["content-type"].startswith("text/javascript")
    assert (await client.get("/ui/static/../router.py")).status_code == 404

    specs = (await client.get("/ui/api/specs")).json()["specs"]
    assert [s["name"] for s in specs] == ["mix", "keyed", "reviewed", "doomed"]
    graph = (await client.get("/ui/api/mermaid", params={"spec": "mix"})).json()["mermaid"]
    assert "layer_2/beta" in graph and "aggregator" in graph


def test_moa_ui_serves_the_page(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "langgraph_moa.cli", "ui", "--no-browser", "--port", str(port)]
    cmd += ["--db", str(tmp_path / "t.sqlite")]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/ui/api/specs"
                with urllib.request.urlopen(url, timeout=2) as r:
                    names = [s["name"] for s in json.loads(r.read())["specs"]]
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "moa ui did not come up"
                time.sleep(0.2)
        assert names[0] == "local" and "moa-lite" in names
        # A second `moa ui` on that port finds the first and only opens the browser.
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "already runs" in again.stdout
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_cross_site_form_post_cannot_start_a_run(
    client: httpx.AsyncClient, server: OpenAIServer
) -> None:
    """Only a JSON body starts a run: the content types a foreign page may send without a
    CORS preflight (form, text/plain) are refused, so a web page cannot spend your keys."""
    body = '{"spec": "mix", "question": "Hi"}'
    for kind in ("text/plain", "application/x-www-form-urlencoded"):
        response = await client.post("/ui/api/runs", content=body, headers={"content-type": kind})
        assert response.status_code == 415  # RequestGuard (langgraph_moa.asgi)
    assert server.requests == []


async def test_allowed_hosts_refuses_other_host_names(tmp_path: Path) -> None:
    spec = parse_spec(
        {"layers": [[{"model": "local:smollm2"}]], "aggregator": {"model": "local:x"}}
    )
    app = create_ui_app({"s": spec}, db_path=tmp_path / "t.sqlite", allowed_hosts=["127.0.0.1"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        assert (await c.get("/ui/api/specs")).status_code == 200
        evil = await c.get("/ui/api/threads", headers={"host": "evil.example"})
        assert evil.status_code == 400


async def test_conversations_run_side_by_side(client: httpx.AsyncClient) -> None:
    """Two turns at once (two tabs): each on its own thread, both stored."""
    import asyncio

    runs = await asyncio.gather(ask(client, "First tab?"), ask(client, "Second tab?"))
    assert [r[-1][0] for r in runs] == ["done", "done"]
    threads = (await client.get("/ui/api/threads")).json()["threads"]
    assert sorted(t["title"] for t in threads) == ["First tab?", "Second tab?"]


async def test_a_review_pause_is_an_event_and_resuming_finishes_the_turn(
    client: httpx.AsyncClient, server: OpenAIServer
) -> None:
    paused = await ask(client, "Check this?", spec="reviewed")
    assert paused[-1][0] == "review"
    assert paused[-1][1]["references"] == ["alpha says: Check this?", "beta says: Check this?"]
    assert server.log("judge") == []
    thread = paused[0][1]["thread_id"]
    # A reload reads the thread: the pause is still there, with what it would send.
    read = (await client.get(f"/ui/api/threads/{thread}")).json()
    assert read["paused"]["turn"] == 1
    assert read["paused"]["references"] == paused[-1][1]["references"]
    assert read["turns"][0]["status"] == "paused" and read["turns"][0]["error"] is None
    resumed = await ask(client, "", spec="reviewed", thread_id=thread, resume=["edited reference"])
    assert resumed[0][1]["resumed"] and resumed[0][1]["turn"] == 1
    assert resumed[0][1]["question"] == "Check this?"
    assert resumed[-1][0] == "done"
    assert "edited reference" in json.dumps(server.log("judge")[0]["messages"])
    assert not any(n == "call" and d["role"] == "proposer" for n, d in resumed)  # not rerun
    assert (await client.get(f"/ui/api/threads/{thread}")).json()["paused"] is None
    again = await client.post(
        "/ui/api/runs", json={"spec": "reviewed", "thread_id": thread, "resume": True}
    )
    assert again.status_code == 409 and "not paused" in again.json()["error"]["message"]
    no_thread = await client.post("/ui/api/runs", json={"spec": "reviewed", "resume": True})
    assert no_thread.status_code == 400


async def test_malformed_bodies_and_unknown_ids_are_clear_errors(
    client: httpx.AsyncClient, server: OpenAIServer
) -> None:
    json_type = {"content-type": "application/json"}
    for body in ("[" * 200_000, "{not json", "[1, 2]", '"text"'):
        response = await client.post("/ui/api/runs", content=body, headers=json_type)
        assert response.status_code == 400, body[:10]
        assert "JSON" in response.json()["error"]["message"]
    for path in ("/ui/api/runs/nope/events", "/ui/api/runs/nope", "/ui/api/threads/nope"):
        response = await client.get(path)
        assert response.status_code == 404 and "error" in response.json()
    response = await client.get("/ui/api/threads/" + "x" * 129)
    assert response.status_code == 400 and response.json()["error"]["field"] == "thread_id"
    assert server.requests == []


async def test_a_run_missing_a_key_never_names_the_variable() -> None:
    """Keys are checked before a run starts; if one goes missing after, the run's error
    event still does not tell the page the server's variable names."""
    from langgraph_moa.graphs.builder import create_moa
    from langgraph_moa.web.events import run_events

    spec = parse_spec(
        {
            "layers": [[{"model": "openai:gpt-4o", "api_key_env": "MOA_UNSET_KEY_Z"}]],
            "aggregator": {"model": "openai:gpt-4o", "api_key_env": "MOA_UNSET_KEY_Z"},
        }
    )
    events = [
        e async for e in run_events(create_moa(spec), {"messages": [("user", "Hi")]}, {}, start={})
    ]
    name, error = events[-1]
    assert name == "error" and "not configured on the server" in error["message"]
    assert "MOA_UNSET_KEY_Z" not in json.dumps(events)
