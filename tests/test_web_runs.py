"""Runs that belong to the server (issue 23) and conversations kept apart (issue 20, item 8).

The page's app runs on a real uvicorn server on a free port (so an SSE connection can really
drop and come back), with models on the fake OpenAI server whose request log says when the
upstream saw a request abandoned (``outcome == "cancelled"``, ``end``).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.testing import Behavior, OpenAIServer, RecordingChatModel
from langgraph_moa.web import create_ui_app
from langgraph_moa.web.runs import RunRegistry, TooBusy

ModelFactory = Callable[..., dict[str, Any]]


def sse_of(body: str) -> list[tuple[int, str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        seq = int(next(line[4:] for line in lines if line.startswith("id: ")))
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((seq, name, json.loads(data)))
    return out


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on uvicorn (lifespan on) at a free port, and a client for it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            yield c
    finally:
        server.should_exit = True
        await task


def specs_for(model: ModelFactory) -> dict[str, Any]:
    return {
        "pair": parse_spec(
            {"layers": [[model("alpha"), model("beta")]], "aggregator": model("judge")}
        ),
        "stoppable": parse_spec(
            {"layers": [[model("alpha"), model("slow")]], "aggregator": model("judge")}
        ),
    }


@pytest_asyncio.fixture
async def web(
    server: OpenAIServer, model: ModelFactory, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_ui_app(specs_for(model), db_path=tmp_path / "web.sqlite")
    async with served(app) as client:
        yield client


async def start(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/ui/api/runs", json={"spec": "pair", **body})
    assert response.status_code == 202, response.text
    return dict(response.json())


async def events(client: httpx.AsyncClient, run_id: str, after: int = -1) -> list[Any]:
    headers = {"last-event-id": str(after)} if after >= 0 else {}
    response = await client.get(f"/ui/api/runs/{run_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    return sse_of(response.text)


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return value


async def test_a_reload_mid_run_reattaches_replays_and_the_turn_finishes(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    server.set_behavior("judge", Behavior(tokens=40, token_delay=0.03))  # ~1.2 s of answer
    run = await start(web, question="Long answer?")
    seen: list[tuple[int, str, dict[str, Any]]] = []
    # The tab reads until the answer starts streaming, then goes away (reload).
    async with web.stream("GET", f"/ui/api/runs/{run['run_id']}/events") as response:
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            *blocks, buffer = buffer.split("\n\n")
            seen += sse_of("\n\n".join(blocks)) if any(b.strip() for b in blocks) else []
            if any(n == "token" and d["node"] == "aggregator" for _, n, d in seen):
                break
    assert seen[-1][1] not in ("done", "error")
    # Meanwhile the run goes on: the thread says so.
    read = (await web.get(f"/ui/api/threads/{run['thread_id']}")).json()
    assert read["running"] == {"run_id": run["run_id"], "turn": 1}
    assert read["turns"][-1]["status"] == "running"
    listed = (await web.get("/ui/api/threads")).json()["threads"]
    assert listed[0]["running"]["run_id"] == run["run_id"]
    # The reloaded page re-attaches after the last event it saw: only later events come.
    rest = await events(web, run["run_id"], after=seen[-1][0])
    seqs = [seq for seq, _, _ in seen + rest]
    assert seqs == sorted(set(seqs)) and rest[0][0] > seen[-1][0]
    assert rest[-1][1] == "done"
    # A new tab replays it all (a finished run's token previews go: its texts are whole in
    # the answer, final and done events).
    everything = await events(web, run["run_id"])
    assert [e[:2] for e in everything] == [e[:2] for e in seen + rest if e[1] != "token"]
    final = next(d for _, n, d in everything if n == "final")
    assert final["text"] == rest[-1][2]["answer"] and len(final["text"].split()) == 40
    assert {m: server.call_count(m) for m in ("alpha", "beta", "judge")} == {
        "alpha": 1,
        "beta": 1,
        "judge": 1,
    }
    stored = (await web.get(f"/ui/api/threads/{run['thread_id']}")).json()
    assert stored["running"] is None and stored["turns"][0]["status"] == "done"


async def test_stop_abandons_the_upstream_request_at_once_and_keeps_what_finished(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    server.set_behavior("slow", Behavior(latency=30))
    run = await start(web, spec="stoppable", question="Stop me?")
    await until(lambda: server.log("slow") and server.log("alpha"))
    await until(lambda: server.log("alpha")[0]["end"])
    await asyncio.sleep(0.3)  # alpha's answer is checkpointed (its task's writes)
    stopped = time.time()
    response = await web.post(f"/ui/api/runs/{run['run_id']}/cancel")
    assert response.json()["status"] == "cancelled"
    record = await until(lambda: server.log("slow")[0]["end"] and server.log("slow")[0], 2.0)
    assert record["outcome"] == "cancelled"
    assert record["end"] - stopped < 2.0  # the upstream saw the disconnect
    got = await events(web, run["run_id"])
    name, last = got[-1][1:]
    assert name == "cancelled"
    assert last["partial"]["answers"] == {"layer_1/alpha": "alpha says: Stop me?"}
    # Reopened: the finished answer and its call are there, the turn says it was stopped.
    [turn] = (await web.get(f"/ui/api/threads/{run['thread_id']}")).json()["turns"]
    assert turn["status"] == "cancelled" and turn["answer"] is None
    assert turn["answers"] == {"layer_1/alpha": "alpha says: Stop me?"}
    assert [c["node"] for c in turn["calls"]] == ["layer_1/alpha"]
    assert turn["summary"]["calls"] == 1
    assert [s["node"] for s in turn["layout"]["layers"][0]] == ["layer_1/alpha", "layer_1/slow"]
    # Resumed: only what had not finished runs again.
    server.set_behavior("slow", Behavior())
    again = await start(web, spec="stoppable", thread_id=run["thread_id"], resume=True)
    assert again["turn"] == 1
    assert (await events(web, again["run_id"]))[-1][1] == "done"
    assert sorted(r["model"] for r in server.requests) == ["alpha", "judge", "slow", "slow"]
    [turn] = (await web.get(f"/ui/api/threads/{run['thread_id']}")).json()["turns"]
    assert turn["status"] == "done" and turn["answer"] == "judge says: Stop me?"


async def test_a_closed_connection_does_not_cancel_the_run(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    server.set_behavior("judge", Behavior(latency=0.5))
    run = await start(web, question="Anyone there?")
    async with web.stream("GET", f"/ui/api/runs/{run['run_id']}/events") as response:
        async for _ in response.aiter_text():
            break  # the tab closes at once; nobody watches the run any more
    got = await events(web, run["run_id"])
    assert got[-1][1] == "done" and server.call_count("judge") == 1
    assert server.log("judge")[0]["outcome"] == "ok"


async def test_retry_the_synthesis_calls_only_the_aggregator(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    run = await start(web, question="Synthesise?")
    await events(web, run["run_id"])
    server.reset()
    server.set_behavior("judge", Behavior(content="a second synthesis"))
    response = await web.post(
        f"/ui/api/threads/{run['thread_id']}/retry", json={"turn": 1, "what": "synthesis"}
    )
    assert response.status_code == 202, response.text
    got = await events(web, response.json()["run_id"])
    assert got[0][2]["retry"] == "synthesis" and got[-1][1] == "done"
    assert got[-1][2]["answer"] == "a second synthesis"
    assert [r["model"] for r in server.requests] == ["judge"]  # 0 proposer calls
    # The aggregator read the stored references.
    assert "alpha says: Synthesise?" in json.dumps(server.log("judge")[0]["messages"])
    [turn] = (await web.get(f"/ui/api/threads/{run['thread_id']}")).json()["turns"]
    assert turn["answer"] == "a second synthesis" and turn["status"] == "done"
    assert turn["answers"] == {
        "layer_1/alpha": "alpha says: Synthesise?",
        "layer_1/beta": "beta says: Synthesise?",
    }
    bad = await web.post(
        f"/ui/api/threads/{run['thread_id']}/retry", json={"turn": 5, "what": "synthesis"}
    )
    assert bad.status_code == 409 and bad.json()["error"]["field"] == "turn"


async def test_regenerate_and_edit_a_turn_fork_the_thread(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    first = await start(web, question="First?")
    await events(web, first["run_id"])
    thread = first["thread_id"]
    second = await start(web, question="Second?", thread_id=thread)
    await events(web, second["run_id"])
    # Regenerate turn 2: same question, a new answer; turn 1 untouched.
    server.reset()
    server.set_behavior("judge", Behavior(content="regenerated"))
    again = await web.post(f"/ui/api/threads/{thread}/retry", json={"turn": 2, "what": "turn"})
    assert (await events(web, again.json()["run_id"]))[-1][1] == "done"
    turns = (await web.get(f"/ui/api/threads/{thread}")).json()["turns"]
    assert [(t["question"], t["answer"]) for t in turns] == [
        ("First?", "judge says: First?"),
        ("Second?", "regenerated"),
    ]
    assert sorted(r["model"] for r in server.requests) == ["alpha", "beta", "judge"]
    # Edit turn 1 and resend: the later turns go (the thread forks before turn 1).
    server.set_behavior("judge", Behavior())
    edited = await web.post(
        f"/ui/api/threads/{thread}/retry", json={"turn": 1, "what": "turn", "question": "Edited?"}
    )
    got = await events(web, edited.json()["run_id"])
    assert got[0][2]["question"] == "Edited?" and got[-1][1] == "done"
    turns = (await web.get(f"/ui/api/threads/{thread}")).json()["turns"]
    assert [(t["turn"], t["question"]) for t in turns] == [(1, "Edited?")]
    assert "First?" not in json.dumps(server.log("judge")[-1]["messages"])
    listed = (await web.get("/ui/api/threads")).json()["threads"]
    assert [(t["title"], t["turns"]) for t in listed] == [("Edited?", 1)]


async def test_rename_search_export_and_delete(web: httpx.AsyncClient) -> None:
    one = await start(web, question="Tell me about owls.")
    two = await start(web, question="And about cats?")
    await events(web, one["run_id"])
    await events(web, two["run_id"])
    renamed = await web.patch(f"/ui/api/threads/{one['thread_id']}", json={"title": "Birds"})
    assert renamed.status_code == 200
    too_long = await web.patch(f"/ui/api/threads/{one['thread_id']}", json={"title": "x" * 201})
    assert too_long.status_code == 400 and too_long.json()["error"]["field"] == "title"
    found = (await web.get("/ui/api/threads", params={"q": "OWLS"})).json()["threads"]
    assert [(t["thread_id"], t["title"]) for t in found] == [(one["thread_id"], "Birds")]
    assert (await web.get("/ui/api/threads", params={"q": "birds"})).json()["threads"][0][
        "thread_id"
    ] == one["thread_id"]
    md = await web.get(f"/ui/api/threads/{one['thread_id']}/export", params={"format": "md"})
    assert md.headers["content-disposition"] == 'attachment; filename="Birds.md"'
    assert md.text.startswith("# Birds") and "judge says: Tell me about owls." in md.text
    assert "### layer_1/beta" in md.text
    js = await web.get(f"/ui/api/threads/{one['thread_id']}/export", params={"format": "json"})
    assert js.json()["turns"][0]["answers"]["layer_1/alpha"] == "alpha says: Tell me about owls."
    assert (
        await web.get(f"/ui/api/threads/{one['thread_id']}/export?format=pdf")
    ).status_code == 400
    assert (await web.delete(f"/ui/api/threads/{one['thread_id']}")).status_code == 200
    assert (await web.get(f"/ui/api/threads/{one['thread_id']}")).status_code == 404
    listed = (await web.get("/ui/api/threads")).json()["threads"]
    assert [t["thread_id"] for t in listed] == [two["thread_id"]]


async def test_conversations_are_kept_apart_by_token(
    server: OpenAIServer, model: ModelFactory, tmp_path: Path
) -> None:
    app = create_ui_app(specs_for(model), db_path=tmp_path / "web.sqlite")
    a = {"authorization": "Bearer token-of-a"}
    b = {"authorization": "Bearer token-of-b"}
    async with served(app) as web:
        run = (
            await web.post("/ui/api/runs", json={"spec": "pair", "question": "Mine?"}, headers=a)
        ).json()
        thread, rid = run["thread_id"], run["run_id"]
        assert (await web.get(f"/ui/api/runs/{rid}/events", headers=b)).status_code == 404
        assert (await web.post(f"/ui/api/runs/{rid}/cancel", headers=b)).status_code == 404
        done = await web.get(f"/ui/api/runs/{rid}/events", headers=a)
        assert sse_of(done.text)[-1][1] == "done"
        assert [
            t["thread_id"] for t in (await web.get("/ui/api/threads", headers=a)).json()["threads"]
        ] == [thread]
        for headers in (b, {}):  # another token, or none: nothing of a's shows
            assert (await web.get("/ui/api/threads", headers=headers)).json()["threads"] == []
            assert (await web.get(f"/ui/api/threads/{thread}", headers=headers)).status_code == 404
            extend = {"spec": "pair", "question": "Theirs?", "thread_id": thread}
            refused = await web.post("/ui/api/runs", json=extend, headers=headers)
            assert refused.status_code == 404
            for method, path, body in (
                ("PATCH", "", {"title": "x"}),
                ("DELETE", "", None),
                ("GET", "/export", None),
                ("POST", "/retry", {"turn": 1}),
            ):
                r = await web.request(
                    method, f"/ui/api/threads/{thread}{path}", json=body, headers=headers
                )
                assert r.status_code == 404, (method, path, r.text)
        assert (await web.get(f"/ui/api/threads/{thread}", headers=a)).status_code == 200
    assert server.call_count("alpha") == 1  # nothing ran for b


def test_moa_serve_with_tokens_mounts_the_page_and_namespaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from langgraph_moa.serve import create_app

    monkeypatch.setenv("MOA_TEST_TOKENS", "tok-a, tok-b")
    spec = parse_spec({"layers": [[{"model": "local:x"}]], "aggregator": {"model": "local:y"}})
    app = create_app({"s": spec}, api_key_env="MOA_TEST_TOKENS", db_path=tmp_path / "w.sqlite")
    with TestClient(app) as c:
        assert c.get("/").status_code == 200  # the page is served; its API asks for a token
        assert c.get("/ui/api/threads").status_code == 401
        assert c.get("/ui/api/threads", headers={"authorization": "Bearer nope"}).status_code == 401
        for token in ("tok-a", "tok-b"):
            ok = c.get("/ui/api/threads", headers={"authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and ok.json() == {"threads": []}


def test_the_page_uses_its_own_database_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph_moa.web import web_db_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert web_db_path() == tmp_path / "langgraph-moa" / "web.sqlite"
    source = Path(sys.modules["langgraph_moa.serve.app"].__file__ or "").read_text()
    assert "web_db_path()" in source and "threads.sqlite" not in source


async def test_rankings_and_labelled_references_reach_the_page(
    server: OpenAIServer, model: ModelFactory, tmp_path: Path
) -> None:
    def peer(name: str, answer: str) -> RecordingChatModel:
        def reply(messages: list[Any]) -> str:
            text = messages[-1].text
            if "RANKING:" not in text:
                return answer
            blocks = re.findall(r"\[([A-Z])\]\n(.*)", text)
            best = sorted(blocks, key=lambda b: ("GOOD" not in b[1], b[0]))
            return "RANKING: " + " > ".join(b[0] for b in best)

        return RecordingChatModel(name=name, reply=reply)

    fakes = {
        "a": peer("a", "plain a"),
        "b": peer("b", "GOOD b"),
        "c": peer("c", "GOOD c"),
        "agg": RecordingChatModel(name="agg"),
    }
    spec = parse_spec(
        {"layers": [[model(n) for n in "abc"]], "aggregator": model("agg"), "rank": {"top_k": 2}}
    )
    app = create_ui_app({"ranked": spec}, db_path=tmp_path / "web.sqlite", chat_models=fakes)
    async with served(app) as web:
        run = (await web.post("/ui/api/runs", json={"spec": "ranked", "question": "Q?"})).json()
        got = await events(web, run["run_id"])
        [ranked] = [d for _, n, d in got if n == "ranked"]
        assert ranked["kept"] == ["layer_1/b", "layer_1/c"]
        assert [r["model"] for r in ranked["rankers"]] == ["a", "b", "c"]
        assert {row["node"]: row["kept"] for row in ranked["table"]} == {
            "layer_1/a": False,
            "layer_1/b": True,
            "layer_1/c": True,
        }
        assert ranked["table"][-1]["node"] == "layer_1/a"  # worst last
        everyone, refs = [d for _, n, d in got if n == "references"]  # the layer, the kept
        assert [s["model"] for s in everyone["sources"]] == ["a", "b", "c"]
        assert refs["references"] == ["GOOD b", "GOOD c"]
        assert [s["model"] for s in refs["sources"]] == ["b", "c"]
        [turn] = (await web.get(f"/ui/api/threads/{run['thread_id']}")).json()["turns"]
        assert turn["ranking"] == [{k: v for k, v in ranked.items() if k != "run_id"}]
        assert [s["model"] for s in turn["sources"]] == ["b", "c"]


async def test_the_registry_bounds_runs_and_cancels_them_at_shutdown() -> None:
    registry = RunRegistry(max_running=1, max_kept=1, grace_s=60, max_event_bytes=2000)
    forever = asyncio.Event()

    async def hanging() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "run", {}
        for i in range(100):
            yield "token", {"text": "x" * 50, "i": i}
        await forever.wait()
        yield "done", {}

    run = registry.start(thread_id="t", turn=1, owner=None, events=hanging())
    with pytest.raises(TooBusy):
        registry.start(thread_id="u", turn=1, owner=None, events=hanging())
    assert registry.running_on("t") is run
    await until(lambda: run.tokens_dropped > 0)
    assert run.size <= 2000  # token previews past the cap go
    assert run.events[1] is not None and run.events[1][0] == "token"
    await registry.aclose()
    assert run.status == "cancelled" and not run.running
    # Finished: the previews go, the sequence numbers stay.
    assert [(seq, name) async for seq, name, _ in run.follow()] == [
        (0, "run"),
        (len(run.events) - 1, "cancelled"),
    ]
    assert registry.running_on("t") is None

    async def quick() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "done", {}

    for thread in ("v", "w"):
        done = registry.start(thread_id=thread, turn=1, owner=None, events=quick())
        await done.task  # type: ignore[misc]
    registry.prune()
    assert len([r for r in registry.runs.values() if not r.running]) == 1  # max_kept


def test_the_web_server_does_not_import_the_cli() -> None:
    code = "import sys, langgraph_moa.web.router; print('langgraph_moa.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_one_turn_at_a_time_per_thread_even_when_sent_twice_at_once(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    server.set_behavior("judge", Behavior(latency=0.5))
    first = await start(web, question="Once?")
    body = {"spec": "pair", "question": "Twice?", "thread_id": first["thread_id"]}
    both = await asyncio.gather(*(web.post("/ui/api/runs", json=body) for _ in range(2)))
    assert [r.status_code for r in both] == [409, 409]
    assert first["run_id"] in both[0].json()["error"]["message"]
    await events(web, first["run_id"])
    both = await asyncio.gather(*(web.post("/ui/api/runs", json=body) for _ in range(2)))
    assert sorted(r.status_code for r in both) == [202, 409]
    after = await web.get(f"/ui/api/runs/{first['run_id']}/events", params={"after": 3})
    everything = await events(web, first["run_id"])  # ?after= works like Last-Event-ID
    assert sse_of(after.text) == [e for e in everything if e[0] > 3]


async def test_shutting_the_server_down_cancels_its_runs(
    server: OpenAIServer, model: ModelFactory, tmp_path: Path
) -> None:
    server.set_behavior("slow", Behavior(latency=30))
    app = create_ui_app(specs_for(model), db_path=tmp_path / "web.sqlite")
    async with served(app) as web:
        run = await start(web, spec="stoppable", question="Shutdown?")
        await until(lambda: server.log("slow"))
    record = await until(lambda: server.log("slow")[0]["end"] and server.log("slow")[0], 5.0)
    assert record["outcome"] == "cancelled" and run["turn"] == 1


async def test_a_thread_mixing_specs_reads_each_turn_with_its_own_graph(
    web: httpx.AsyncClient, server: OpenAIServer
) -> None:
    """A stopped turn's pending tasks are only known to its own spec's graph: a later turn on
    another spec must not hide them."""
    server.set_behavior("slow", Behavior(latency=30))
    first = await start(web, spec="stoppable", question="Stopped?")
    await until(
        lambda: server.log("slow") and server.log("alpha") and server.log("alpha")[0]["end"]
    )
    await asyncio.sleep(0.3)
    await web.post(f"/ui/api/runs/{first['run_id']}/cancel")
    second = await start(web, spec="pair", question="Other spec?", thread_id=first["thread_id"])
    assert second["turn"] == 2
    assert (await events(web, second["run_id"]))[-1][1] == "done"
    turns = (await web.get(f"/ui/api/threads/{first['thread_id']}")).json()["turns"]
    assert [(t["spec"], t["status"]) for t in turns] == [
        ("stoppable", "cancelled"),
        ("pair", "done"),
    ]
    assert turns[0]["answers"] == {"layer_1/alpha": "alpha says: Stopped?"}
    assert [s["node"] for s in turns[1]["layout"]["layers"][0]] == ["layer_1/alpha", "layer_1/beta"]


def test_moa_serve_cancels_the_pages_runs_when_it_shuts_down(tmp_path: Path) -> None:
    """The router's lifespan joins ``moa serve``'s: stopping the server stops its runs."""
    from conftest import make_model
    from fastapi.testclient import TestClient

    from langgraph_moa.serve import create_app

    with OpenAIServer(behaviors={"slow": Behavior(latency=30)}) as upstream:
        m = lambda name: make_model(upstream.base_url, name)  # noqa: E731
        spec = parse_spec({"layers": [[m("slow")]], "aggregator": m("judge")})
        app = create_app({"s": spec}, db_path=tmp_path / "w.sqlite")
        with TestClient(app) as c:
            accepted = c.post("/ui/api/runs", json={"spec": "s", "question": "Hi"})
            assert accepted.status_code == 202
            deadline = time.monotonic() + 10
            while not upstream.log("slow"):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        deadline = time.monotonic() + 5
        while not upstream.log("slow")[0]["end"]:
            assert time.monotonic() < deadline, "the run outlived the server"
            time.sleep(0.02)
        assert upstream.log("slow")[0]["outcome"] == "cancelled"
