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
    out = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((name, json.loads(data)))
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
    app = create_ui_app(specs, db_path=tmp_path / "threads.sqlite")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as c:
        yield c


async def ask(client: httpx.AsyncClient, question: str, **body: Any) -> list[tuple[str, dict]]:
    body = {"spec": "mix", "question": question, **body}
    response = await client.post("/ui/api/runs", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return events_of(response.text)


async def test_a_run_streams_cards_references_and_the_answer(client: httpx.AsyncClient) -> None:
    events = await ask(client, "What is 2+2?")
    names = [name for name, _ in events]
    assert names[0] == "run" and names[-1] == "done"
    run = events[0][1]
    assert run["turn"] == 1 and run["thread_id"].startswith("ui-")
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
    final = next(d for n, d in events if n == "final")
    assert final == {"node": "aggregator", "text": "judge says: What is 2+2?"}

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
    stored = (await client.get(f"/ui/api/threads/{thread}")).json()["turns"]
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
    response = await client.post("/ui/api/runs", json={"spec": "doomed", "question": "Hi?"})
    events = events_of(response.text)
    name, error = events[-1]
    assert name == "error"
    assert "broken" in error["message"] and "HTTP 503" in error["message"]
    assert error["partial"]["answers"] == {"layer_1/alpha": "alpha says: Hi?"}
    # alpha's answer and the aggregator's failed call (it was paid for): both counted
    assert (error["summary"]["calls"], error["summary"]["failed"]) == (2, 1)
    assert [c["status"] for c in error["partial"]["calls"]] == ["ok", "failed"]

    # The conversation goes on after a failed turn, which stays on record as unfinished.
    thread = events[0][1]["thread_id"]
    after = await ask(client, "Again?", thread_id=thread)
    assert after[-1][0] == "done" and after[0][1]["turn"] == 2
    turns = (await client.get(f"/ui/api/threads/{thread}")).json()["turns"]
    assert [t["question"] for t in turns] == ["Hi?", "Again?"]
    assert "did not finish" in turns[0]["error"] and turns[0]["answer"] is None
    assert turns[0]["answers"] == {"layer_1/alpha": "alpha says: Hi?"}
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
        assert response.status_code == 200
        [(name, error)] = events_of(response.text)
        assert name == "error"
        assert "could not run this turn" in error["message"]
        assert "DatabaseError" in error["message"]
        assert (await c.get("/ui/api/specs")).status_code == 200  # still serving
    assert server.requests == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"spec": "nope", "question": "Hi"}, 404, "unknown spec 'nope'"),
        ({"spec": "mix", "question": "  "}, 400, "empty"),
        ({"spec": "keyed", "question": "Hi"}, 400, "MOA_UNSET_KEY_Y"),
        ({"question": "Hi"}, 422, "spec"),
    ],
)
async def test_bad_requests_are_refused_before_any_model_call(
    client: httpx.AsyncClient, server: OpenAIServer, body: dict, status: int, words: str
) -> None:
    response = await client.post("/ui/api/runs", json=body)
    assert response.status_code == status
    assert words in json.dumps(response.json())
    assert server.requests == []


async def test_page_assets_specs_and_graph_are_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for src in ("ui/static/app.js", "ui/static/app.css", "ui/static/vendor/marked.min.js"):
        assert src in page.text or src.endswith("vendor/marked.min.js")
        asset = await client.get("/" + src)
        assert asset.status_code == 200 and len(asset.content) > 1000
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
    mermaid = await client.get("/ui/static/vendor/mermaid.min.js")
    assert mermaid.headers["content-type"].startswith("text/javascript")
    assert (await client.get("/ui/static/../router.py")).status_code == 404

    specs = (await client.get("/ui/api/specs")).json()["specs"]
    assert [s["name"] for s in specs] == ["mix", "keyed", "reviewed", "doomed"]
    assert specs[1]["missing_keys"] == {"MOA_UNSET_KEY_Y": ["gpt-4o"]}
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
    assert paused[-1] == (
        "review",
        {"references": ["alpha says: Check this?", "beta says: Check this?"]},
    )
    assert server.log("judge") == []
    thread = paused[0][1]["thread_id"]
    resumed = await ask(client, "", spec="reviewed", thread_id=thread, resume=["edited reference"])
    assert resumed[0][1]["resumed"] and resumed[0][1]["turn"] == 1
    assert resumed[0][1]["question"] == "Check this?"
    assert resumed[-1][0] == "done"
    assert "edited reference" in json.dumps(server.log("judge")[0]["messages"])
    assert not any(n == "call" and d["role"] == "proposer" for n, d in resumed)  # not rerun
    again = await ask(client, "", spec="reviewed", thread_id=thread, resume=True)
    assert again[-1][0] == "error" and "not paused" in again[-1][1]["message"]
    no_thread = await client.post("/ui/api/runs", json={"spec": "reviewed", "resume": True})
    assert no_thread.status_code == 400
