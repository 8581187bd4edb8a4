"""Checkpointers: multi-turn threads, human review (interrupt/resume), crash and resume.

Savers: ``InMemorySaver``, ``AsyncSqliteSaver`` and ``AsyncPostgresSaver``. The Postgres
tests need ``MOA_TEST_POSTGRES_DSN`` (``eval "$(scripts/postgres.sh)"`` starts a local
server and prints it); without it they skip, unless ``MOA_REQUIRE_POSTGRES=1`` (then fail).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.testing import Behavior, OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("_crash_runner.py")
AGGREGATE_MARK = "Responses from models:"
Q1, Q2 = "What is 2+2?", "And what is 3+3?"


def postgres_dsn() -> str:
    dsn = os.environ.get("MOA_TEST_POSTGRES_DSN")
    if not dsn:
        hint = 'start one with: eval "$(scripts/postgres.sh)"'
        if os.environ.get("MOA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"MOA_REQUIRE_POSTGRES=1 but MOA_TEST_POSTGRES_DSN is unset; {hint}")
        pytest.skip(f"MOA_TEST_POSTGRES_DSN is unset; {hint}")
    return dsn


def connection(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "checkpoints.sqlite") if kind == "sqlite" else postgres_dsn()


def open_saver(kind: str, conn: str):
    """An async context manager yielding a saver of ``kind`` (call ``setup()`` on it)."""
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        return AsyncSqliteSaver.from_conn_string(conn)
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    return AsyncPostgresSaver.from_conn_string(conn)


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgres"])
async def saver(request, tmp_path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemorySaver()
        return
    async with open_saver(request.param, connection(request.param, tmp_path)) as s:
        await s.setup()
        yield s


def thread() -> dict[str, Any]:
    """A fresh thread (unique, as the Postgres database outlives a test run)."""
    return {"configurable": {"thread_id": f"test-{uuid.uuid4()}"}}


def roles(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages]


def two_layers(model, **extra: Any) -> dict[str, Any]:
    return {
        "layers": [[model("a"), model("b")], [model("a"), model("b")]],
        "aggregator": model("agg"),
        **extra,
    }


# --------------------------------------------------------------------------- multi-turn


async def test_multi_turn_thread(saver, server, model):
    graph = create_moa(two_layers(model), checkpointer=saver)
    config = thread()
    first = await graph.ainvoke({"messages": [("user", Q1)]}, config)
    assert first["answer"] == f"agg says: {Q1}"
    server.reset()

    second = await graph.ainvoke({"messages": [("user", Q2)]}, config)
    assert second["answer"] == f"agg says: {Q2}"
    assert [(m.type, m.text) for m in second["messages"]] == [
        ("human", Q1),
        ("ai", f"agg says: {Q1}"),
        ("human", Q2),
        ("ai", f"agg says: {Q2}"),
    ]
    # Per-turn data was reset: only this turn's calls and answers.
    assert len(second["calls"]) == 5
    assert second["answers"]["layer_1/a"] == f"a says: {Q2}"
    # The proposers got the whole conversation, the first answer included.
    conversation = [("user", Q1), ("assistant", f"agg says: {Q1}"), ("user", Q2)]
    layer1, layer2 = server.log("a")
    assert roles(layer1["messages"]) == conversation
    assert layer2["messages"][0]["role"] == "system"
    assert AGGREGATE_MARK in layer2["messages"][0]["content"]
    assert roles(layer2["messages"][1:]) == conversation
    [agg] = server.log("agg")
    assert roles(agg["messages"][1:]) == conversation

    state = await graph.aget_state(config)
    assert state.next == () and state.values["answer"] == f"agg says: {Q2}"
    history = [s async for s in graph.aget_state_history(config)]
    assert len(history) >= 2 * 9  # every super-step of both turns was checkpointed


# --------------------------------------------------------------------------- review


@pytest.mark.parametrize(
    "decision",
    [True, ["edited ref"], {"references": ["edited ref", "second"]}],
    ids=["approve", "edit-list", "edit-dict"],
)
async def test_review_interrupt_and_resume(saver, server, model, decision):
    graph = create_moa(two_layers(model, review=True), checkpointer=saver)
    config = thread()
    paused = await graph.ainvoke({"messages": [("user", Q1)]}, config)
    original = [f"a says: {Q1}", f"b says: {Q1}"]
    [interrupt] = paused["__interrupt__"]
    assert interrupt.value["references"] == original
    assert interrupt.value["action_request"]["args"] == {
        "question": Q1,
        "a": original[0],
        "b": original[1],
    }
    assert server.log("agg") == []
    state = await graph.aget_state(config)
    assert state.next == ("review",)
    assert state.values["references"] == original

    out = await graph.ainvoke(Command(resume=decision), config)
    assert out["answer"] == f"agg says: {Q1}"
    [agg] = server.log("agg")
    system = agg["messages"][0]["content"]
    if decision is True:
        expected = original
    elif isinstance(decision, dict):
        expected = decision["references"]
    else:
        expected = decision
    assert out["references"] == expected
    assert system.endswith(
        AGGREGATE_MARK + "".join(f"\n{i}. {r}" for i, r in enumerate(expected, 1))
    )
    # Resuming did not call any proposer again.
    assert len(server.log("a")) == 2 and len(server.log("b")) == 2


# --------------------------------------------------------------------------- crash / resume


def layer_of(record: dict[str, Any]) -> int:
    """1 for a first-layer request; 2 for later ones (they carry the aggregate prompt)."""
    system = [m for m in record["messages"] if m.get("role") == "system"]
    return 2 if any(AGGREGATE_MARK in (m.get("content") or "") for m in system) else 1


def calls_by_model_and_layer(srv: OpenAIServer) -> Counter[tuple[str, int]]:
    return Counter((r["model"], layer_of(r)) for r in srv.log())


def start_runner(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LANGSMITH_TRACING": "false", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(RUNNER), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )


async def pending_answers(saver: Any, config: dict[str, Any]) -> set[str]:
    """Nodes whose answers are saved as pending writes of the latest checkpoint."""
    tup = await saver.aget_tuple(config)
    if tup is None:
        return set()
    return {
        node
        for _task, channel, value in tup.pending_writes or []
        if channel == "answers"
        for node in value
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_crash_mid_layer_then_resume_skips_checkpointed_proposers(kind, tmp_path):
    fast = Behavior(latency=0.05)
    with OpenAIServer(default=fast, behaviors={"h": Behavior(hang=True)}) as srv:

        def m(name: str) -> dict[str, Any]:
            return {
                "name": name,
                "model": f"openai:{name}",
                "base_url": srv.base_url,
                "timeout": 60.0,
                "retry": {"jitter": False, "initial_interval": 0.05},
            }

        # Last layer: a and b answer fast, h hangs until the process is killed.
        spec = {
            "layers": [[m("a"), m("b"), m("c")], [m("a"), m("b"), m("h")]],
            "aggregator": m("agg"),
        }
        conn = connection(kind, tmp_path)
        thread_id = f"crash-{uuid.uuid4()}"
        config = {"configurable": {"thread_id": thread_id}}
        base = ["--saver", kind, "--conn", conn, "--thread", thread_id, "--spec", json.dumps(spec)]
        logs = [tmp_path / "run.log", tmp_path / "resume.log"]

        def dump() -> str:
            runs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in logs if p.exists())
            server = "\n".join(
                f"{r['model']} layer={layer_of(r)} outcome={r['outcome']} end={r['end']}"
                for r in srv.log()
            )
            return f"{runs}\n--- test server log\n{server}"

        async with open_saver(kind, conn) as saver:
            await saver.setup()
            child = start_runner([*base, "--question", Q1], logs[0])
            try:
                deadline = time.monotonic() + 60
                while True:
                    assert child.poll() is None, f"runner exited early\n{dump()}"
                    assert time.monotonic() < deadline, f"never reached the crash point\n{dump()}"
                    log = srv.log()
                    done = {
                        r["model"]
                        for r in log
                        if layer_of(r) == 2 and r["outcome"] == "ok" and r["end"] is not None
                    }
                    hanging = [r for r in log if r["model"] == "h" and r["end"] is None]
                    if done >= {"a", "b"} and hanging:
                        saved = await pending_answers(saver, config)
                        if saved >= {"layer_2/a", "layer_2/b"}:
                            break
                    await asyncio.sleep(0.05)
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(10)
            assert child.returncode == -signal.SIGKILL

            # The thread stopped inside layer 2: a's and b's answers are saved, h still to run.
            graph = create_moa(spec, checkpointer=saver)
            state = await graph.aget_state(config)
            assert state.next == ("layer_2/h",), dump()
            assert set(state.values["answers"]) == {
                "layer_1/a",
                "layer_1/b",
                "layer_1/c",
                "layer_2/a",
                "layer_2/b",
            }
            before = calls_by_model_and_layer(srv)
            assert before == {
                ("a", 1): 1,
                ("b", 1): 1,
                ("c", 1): 1,
                ("a", 2): 1,
                ("b", 2): 1,
                ("h", 2): 1,
            }, dump()

            srv.set_behavior("h", fast)  # the hanging model recovers
            resumed = start_runner([*base, "--resume"], logs[1])
            try:
                resumed.wait(60)
            finally:
                if resumed.poll() is None:
                    resumed.kill()
                    resumed.wait()
            assert resumed.returncode == 0, dump()
            line = next(x for x in logs[1].read_text().splitlines() if x.startswith("RESULT "))
            result = json.loads(line.removeprefix("RESULT "))

        assert result["answer"] == f"agg says: {Q1}"
        assert result["answers"]["layer_2/h"] == f"h says: {Q1}"
        assert len(result["answers"]) == 6
        # a and b of layer 2 were checkpointed before the crash: not called again.
        after = calls_by_model_and_layer(srv)
        assert after == {**before, ("h", 2): 2, ("agg", 2): 1}, dump()
        assert [r["outcome"] for r in srv.log("h")] == ["hang", "ok"]
        calls = {(c["node"], c["status"]) for c in result["calls"]}
        assert len(result["calls"]) == 7 and all(status == "ok" for _, status in calls)
