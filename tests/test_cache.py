"""A cache that survives (issue 15): LangGraph's SqliteCache in the user's cache directory."""

from __future__ import annotations

import json

import pytest
import yaml
from langgraph.cache.memory import InMemoryCache

from langgraph_moa.cache import (
    cache_entries,
    cache_path,
    clear_cache,
    graph_cache,
    persistent_cache,
)
from langgraph_moa.cli import main
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.graphs.state import Context
from langgraph_moa.testing import OpenAIServer


def spec(model, temperature: float = 0.0) -> dict:
    m = lambda n: model(n, temperature=temperature)  # noqa: E731
    return {"layers": [[m("a"), m("b")], [m("a"), m("b")]], "aggregator": m("agg"), "cache": True}


def test_cache_lives_in_the_users_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_path() == tmp_path / "langgraph-moa" / "cache.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_path() == tmp_path / "home" / ".cache" / "langgraph-moa" / "cache.sqlite"


async def test_identical_rerun_makes_no_call_and_a_changed_parameter_misses(
    model, server, tmp_path
):
    db = tmp_path / "cache.sqlite"
    question = {"messages": [("user", "Is 221 prime?")]}
    first = await create_moa(spec(model), cache=persistent_cache(db)).ainvoke(question)
    assert len(server.log()) == 5
    # A new process would open the same file: a fresh graph and a fresh cache object.
    server.reset()
    again = await create_moa(spec(model), cache=persistent_cache(db)).ainvoke(question)
    assert server.log() == []
    assert again["answer"] == first["answer"] and again["references"] == first["references"]
    # A changed model setting misses...
    await create_moa(spec(model, 0.5), cache=persistent_cache(db)).ainvoke(question)
    assert len(server.log()) == 5
    # ...and so does a run override (Context), which the node's input alone would not show.
    server.reset()
    graph = create_moa(spec(model), cache=persistent_cache(db))
    await graph.ainvoke(question, context=Context(max_tokens=77))
    assert [r["max_tokens"] for r in server.log()] == [77] * 5
    # ...and a changed question.
    server.reset()
    await graph.ainvoke({"messages": [("user", "Is 222 prime?")]})
    assert len(server.log()) == 5
    assert cache_entries(db) == 4 * 5
    assert clear_cache(db) == 20 and cache_entries(db) == 0


def moa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``moa ARGS`` in this process (the subprocess path is covered by test_cli.py)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def sync_server():
    with OpenAIServer() as srv:
        yield srv


def test_cli_cache_flag_spec_cache_and_cache_clear(tmp_path, sync_server, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    m = lambda n: {  # noqa: E731
        "name": n,
        "model": f"openai:{n}",
        "base_url": sync_server.base_url,
        "temperature": 0,
    }
    plain = tmp_path / "spec.yaml"
    plain.write_text(yaml.safe_dump({"layers": [[m("a"), m("b")]], "aggregator": m("agg")}))
    code, out, err = moa(capsys, "--spec", str(plain), "--cache", "--json", "Hi")
    assert code == 0, err
    assert len(sync_server.log()) == 3 and json.loads(out)["totals"]["cached"] == 0
    sync_server.reset()
    code, out, _ = moa(capsys, "--spec", str(plain), "--cache", "--json", "Hi")
    result = json.loads(out)
    assert sync_server.log() == []  # zero model calls
    assert result["answer"] == "agg says: Hi" and result["totals"]["cached"] == 3
    assert all(c["cached"] for c in result["calls"])
    # Without --cache the same spec calls the models again.
    assert moa(capsys, "--spec", str(plain), "-q", "Hi")[0] == 0
    assert len(sync_server.log()) == 3
    # `cache: true` in the spec uses the same persistent cache; --temperature misses.
    cached = tmp_path / "cached.yaml"
    cached.write_text(plain.read_text() + "cache: true\n")
    sync_server.reset()
    code, _, err = moa(capsys, "--spec", str(cached), "Hi")
    assert code == 0 and sync_server.log() == []
    assert "(3 from the cache)" in err
    assert moa(capsys, "--spec", str(cached), "--temperature", "0.4", "-q", "Hi")[0] == 0
    assert [r["temperature"] for r in sync_server.log()] == [0.4] * 3
    _, out, _ = moa(capsys, "cache", "path")
    assert out.strip() == str(tmp_path / "xdg" / "langgraph-moa" / "cache.sqlite")
    code, out, _ = moa(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 6 cached answers")
    sync_server.reset()
    assert moa(capsys, "--spec", str(cached), "-q", "Hi")[0] == 0
    assert len(sync_server.log()) == 3


def test_graph_cache_follows_the_spec(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert graph_cache(parse_spec(spec(model))) is not None
    assert graph_cache(parse_spec({**spec(model), "cache": False})) is None


async def test_web_ui_reuses_answers_for_a_cache_true_spec(model, server, tmp_path, monkeypatch):
    """The web UI compiles `cache: true` specs with the same persistent cache."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from langgraph_moa.web import create_ui_app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    app = create_ui_app({"c": parse_spec(spec(model))}, db_path=tmp_path / "threads.sqlite")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
        for expected_calls in (5, 0):  # two new conversations, the same question
            server.reset()
            response = await client.post("/ui/api/runs", json={"spec": "c", "question": "Hi"})
            assert response.status_code == 202
            run_id = response.json()["run_id"]
            response = await client.get(f"/ui/api/runs/{run_id}/events")
            assert "event: done" in response.text
            assert len(server.log()) == expected_calls


@pytest.mark.parametrize(("scope", "recalled"), [("answer", ["agg"]), ("all", ["a", "b", "agg"])])
async def test_the_answer_settings_key_the_calls_they_reach(model, server, scope, recalled):
    """A changed top_p misses the cache for the calls it reaches only: the aggregator's, and
    the proposers' too with ``request_sampling: all``."""
    data = {
        "layers": [[model("a", temperature=0), model("b", temperature=0)]],
        "aggregator": model("agg", temperature=0),
        "cache": True,
        "request_sampling": scope,
    }
    graph = create_moa(data, cache=InMemoryCache())
    question = {"messages": [("user", "Is 221 prime?")]}
    await graph.ainvoke(question, context=Context(top_p=0.5))
    server.reset()
    await graph.ainvoke(question, context=Context(top_p=0.5))
    assert server.log() == []
    await graph.ainvoke(question, context=Context(top_p=0.25))
    assert sorted(r["model"] for r in server.log()) == sorted(recalled)
