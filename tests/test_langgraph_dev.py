"""The real LangGraph server: ``langgraph dev`` with this repo's ``langgraph.json``.

Starts ``langgraph dev`` in a subprocess (offline: tracing and analytics off, no reload, no
browser), drives it with ``langgraph_sdk``, and points the graph at the fake OpenAI server
running in the test process through the run's *context* (the server process cannot know the
test server's port otherwise). On failure the server's log for that test is printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa.testing import Behavior

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What is 2+2?"
STARTUP_TIMEOUT = 90.0
RUN_TIMEOUT = 60.0


@dataclass
class DevServer:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def log_text(self, start: int = 0) -> str:
        return self.log.read_bytes()[start:].decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


QUIET = {
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "PYTHONUNBUFFERED": "1",
}
"""Offline: no tracing, no analytics; logs unbuffered (read on failure)."""


@contextmanager
def start_dev(
    env: dict[str, str], log: Path, config: str | Path = "langgraph.json"
) -> Iterator[DevServer]:
    """``langgraph dev`` on a free loopback port with ``env`` (the whole environment) and
    ``config``, run from the repo (graph paths in langgraph.json are relative to it), ready
    (``/ok``) when entered; its process group is stopped on exit. Skips the test when the
    LangGraph CLI is missing."""
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    if exe is None:
        pytest.skip("langgraph CLI not installed (pip install 'langgraph-cli[inmem]')")
    port = free_port()
    cmd = [exe, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--config", str(config)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**env, **QUIET},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    server = DevServer(f"http://127.0.0.1:{port}", log, proc)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited ({proc.returncode}):\n{server.log_text()}")
            try:
                with urllib.request.urlopen(server.url + "/ok", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready in {STARTUP_TIMEOUT}s:\n{server.log_text()}")
            time.sleep(0.25)
        yield server
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory) -> Iterator[DevServer]:
    log = tmp_path_factory.mktemp("langgraph-dev") / "server.log"
    env = {
        **os.environ,
        # The operator's run policy: whole client specs, aimed only at local test servers.
        "MOA_TRUST_RUN_SPECS": "1",
        "MOA_RUN_BASE_URLS": "http://127.0.0.1:*",
    }
    with start_dev(env, log) as server:
        yield server


@pytest.fixture
def dev(dev_server: DevServer) -> Iterator[DevServer]:
    """The server; its log for this test is printed (pytest shows it only on failure)."""
    start = dev_server.log.stat().st_size
    yield dev_server
    print(f"--- langgraph dev log ({dev_server.log}):\n{dev_server.log_text(start)[-20000:]}")


@pytest.fixture
def client(dev: DevServer):
    from langgraph_sdk import get_client

    return get_client(url=dev.url, timeout=RUN_TIMEOUT)


def spec_for(model, **extra: Any) -> dict[str, Any]:
    return {
        "layers": [[model("a"), model("b")], [model("a"), model("b")]],
        "aggregator": model("agg"),
        **extra,
    }


async def test_assistants_graph_view_and_schemas(client):
    # The server's own assistants (one per graph of langgraph.json), not ones users created.
    assistants = await client.assistants.search(metadata={"created_by": "system"}, limit=50)
    by_graph = {a["graph_id"]: a for a in assistants}
    assert {"moa", "moa_local"} <= set(by_graph)
    # Studio's graph view of the default assistant: the paper's 2 x 6 proposers.
    view = await client.assistants.get_graph(by_graph["moa"]["assistant_id"])
    ids = {n["id"] for n in view["nodes"]}
    assert sum(1 for i in ids if i.startswith("layer_") and "/" in i and "aggregate" not in i) == 12
    assert {"layer_1", "layer_1/aggregate", "layer_2/aggregate", "aggregator"} <= ids
    local = await client.assistants.get_graph(by_graph["moa_local"]["assistant_id"])
    assert "layer_2/teacher" in {n["id"] for n in local["nodes"]}
    schemas = await client.assistants.get_schemas(by_graph["moa"]["assistant_id"])
    assert {"preset", "spec", "temperature", "max_tokens"} <= set(
        schemas["context_schema"]["properties"]
    )
    assert "messages" in schemas["input_schema"]["properties"]
    assert {"answer", "references", "answers", "calls"} <= set(
        schemas["output_schema"]["properties"]
    )


async def test_stream_a_run_with_the_spec_in_the_context(client, server, model):
    server.set_default(Behavior(latency=0.02, token_delay=0.005))
    context = {"spec": spec_for(model)}
    thread = await client.threads.create()
    try:
        await _stream_two_turns(client, server, thread, context)
    finally:
        await client.threads.delete(thread["thread_id"])


async def _stream_two_turns(client, server, thread: dict[str, Any], context: dict[str, Any]):
    tokens: dict[str, list[str]] = defaultdict(list)
    roles: dict[str, str] = {}
    custom: list[dict[str, Any]] = []
    updated: list[str] = []
    final: dict[str, Any] = {}
    async for part in client.runs.stream(
        thread["thread_id"],
        "moa",
        input={"messages": [{"role": "user", "content": QUESTION}]},
        context=context,
        stream_mode=["values", "messages-tuple", "custom", "updates"],
    ):
        if part.event == "error":
            pytest.fail(f"run failed: {part.data}")
        if part.event == "messages":
            chunk, metadata = part.data
            node = metadata["langgraph_node"]
            tokens[node].append(chunk["content"])
            roles[node] = metadata["moa_role"]
        elif part.event == "custom":
            custom.append(part.data)
        elif part.event == "updates":
            updated.extend(part.data)
        elif part.event == "values":
            final = part.data

    answer = f"agg says: {QUESTION}"
    assert final["answer"] == answer
    assert [m["type"] for m in final["messages"]] == ["human", "ai"]
    # Tokens: the aggregator's, told apart from the proposers' by metadata, each once.
    assert "".join(tokens["aggregator"]) == answer
    assert roles == {
        "layer_1/a": "proposer",
        "layer_1/b": "proposer",
        "layer_2/a": "proposer",
        "layer_2/b": "proposer",
        "aggregator": "aggregator",
    }
    assert "".join(tokens["layer_2/b"]) == f"b says: {QUESTION}"
    # Progress events and per-node updates.
    finished = [e["node"] for e in custom if e["event"] == "call_finished"]
    assert sorted(finished) == sorted(roles)
    assert [e["layer"] for e in custom if e["event"] == "layer_finished"] == [1, 2]
    assert {"layer_1", "layer_1/a", "layer_2/aggregate", "aggregator"} <= set(updated)
    # The models were called at the base_url from the run's context.
    assert len(server.log()) == 5

    # A second turn on the same thread (server-side checkpointer) sees the conversation.
    server.reset()
    second = await client.runs.wait(
        thread["thread_id"],
        "moa",
        input={"messages": [{"role": "user", "content": "And 3+3?"}]},
        context=context,
    )
    assert second["answer"] == "agg says: And 3+3?"
    assert len(second["messages"]) == 4
    first_layer = server.log("a")[0]["messages"]
    assert [(m["role"], m["content"]) for m in first_layer] == [
        ("user", QUESTION),
        ("assistant", answer),
        ("user", "And 3+3?"),
    ]
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["answer"] == "agg says: And 3+3?" and state["next"] == []


async def test_review_interrupt_through_an_assistant(client, server, model):
    """An assistant carries the spec, so thread reads and the resume use its topology."""
    assistant = await client.assistants.create(
        "moa", context={"spec": spec_for(model, review=True)}, name=f"review-{time.time()}"
    )
    thread = await client.threads.create()
    try:
        await _review(client, server, assistant, thread)
    finally:
        await client.threads.delete(thread["thread_id"])
        await client.assistants.delete(assistant["assistant_id"])


async def _review(client, server, assistant: dict[str, Any], thread: dict[str, Any]) -> None:
    view = await client.assistants.get_graph(assistant["assistant_id"])
    assert {"review", "layer_2/b", "aggregator"} <= {n["id"] for n in view["nodes"]}
    await client.runs.wait(
        thread["thread_id"],
        assistant["assistant_id"],
        input={"messages": [{"role": "user", "content": QUESTION}]},
    )
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["review"]
    [interrupt] = state["tasks"][0]["interrupts"]
    assert interrupt["value"]["references"] == [f"a says: {QUESTION}", f"b says: {QUESTION}"]
    assert server.log("agg") == []

    out = await client.runs.wait(
        thread["thread_id"], assistant["assistant_id"], command={"resume": ["edited ref"]}
    )
    assert out["answer"] == f"agg says: {QUESTION}"
    assert out["references"] == ["edited ref"]
    [agg] = server.log("agg")
    assert agg["messages"][0]["content"].endswith("\n1. edited ref")
    assert len(server.log("a")) == 2  # resuming did not re-run the proposers
