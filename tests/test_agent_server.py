"""The production deployment: ``scripts/agent-server`` (Aegra, 2 worker processes, its own
PostgreSQL and Redis) serving this repo's ``langgraph.json``, driven with ``langgraph_sdk``.

One server for the module (its first start installs a Python 3.12 venv under
``.agent-server/venv``: a minute or two; later starts reuse it). Its models are the fake
OpenAI server running in this test process, reached through specs registered with
``MOA_SPECS`` (the deployment's own way: clients cannot send specs). Bearer auth is on
(``MOA_API_TOKENS``), so every test also goes through ``langgraph_moa/auth.py`` in Aegra.
Leases are short (6 s) so a killed worker's run is recovered within seconds. The last test
stops the server with SIGTERM and checks that nothing it started is left running.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import make_model
from test_auth import assert_threads_are_private

from langgraph_moa.testing import Behavior, OpenAIServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux")
        or (os.geteuid() != 0 and shutil.which("sudo") is None),
        reason="scripts/agent-server needs Linux and root (or sudo) for PostgreSQL/Redis",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-agent-server"
STARTUP_TIMEOUT = 900.0  # the first start installs the venv (and apt packages)
RUN_TIMEOUT = 90.0
QUESTION = "What is 2+2?"


@dataclass
class AgentServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    fake: OpenAIServer
    data: Path
    started: set[int] = field(default_factory=set)

    def log_text(self) -> str:
        return self.log.read_bytes().decode(errors="replace")[-20000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- /proc helpers


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(d.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pid_of_connection(local_port: int, remote_port: int, candidates: set[int]) -> int | None:
    """Which of ``candidates`` owns the TCP connection 127.0.0.1:local -> :remote."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            local, remote = f[1].rsplit(":", 1)[1], f[2].rsplit(":", 1)[1]
            if int(local, 16) == local_port and int(remote, 16) == remote_port:
                inode = f[9]
    if inode is None:
        return None
    for pid in candidates:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


# --------------------------------------------------------------------------- the server


def write_specs(folder: Path, base_url: str) -> list[Path]:
    def m(name: str, **kw: Any) -> dict[str, Any]:
        return make_model(base_url, name, timeout=60.0, **kw)

    specs = {
        # Two layers of two proposers, then the aggregator.
        "fast": {"layers": [[m("a"), m("b")], [m("a"), m("b")]], "aggregator": m("agg")},
        # For the crash: layer 1 answers at once; in layer 2 `slow` hangs until its caller
        # dies (hang_first) while `c3` answers; after recovery only `slow` may be called again.
        "crash": {
            "layers": [[m("c1"), m("c2")], [m("slow"), m("c3")]],
            "aggregator": m("cagg"),
        },
    }
    paths = []
    for name, spec in specs.items():
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        paths.append(path)
    return paths


def stop(server: AgentServer) -> int | None:
    """SIGTERM the script (it stops its services), then make sure nothing is left."""
    if server.proc.poll() is None:
        server.started |= descendants(server.proc.pid)  # a worker uvicorn restarted, too
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)
    left = {pid for pid in server.started if alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after SIGTERM: {sorted(left)}"
    return server.proc.returncode


def new_data_dir() -> Path:
    data = Path(tempfile.mkdtemp(prefix="moa-agent-test-", dir="/tmp"))
    data.chmod(0o755)  # the postgres and redis users must reach their folders
    return data


def launch(fake: OpenAIServer, data: Path, workers: int, **extra_env: str) -> AgentServer:
    """scripts/agent-server in its own session; returns once it printed READY."""
    specs = write_specs(data, fake.base_url)
    port = free_port()
    log = data / "agent-server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("PYTHONPATH", None)  # the server runs its own venv, with the project installed
    env.pop("VIRTUAL_ENV", None)
    env.update(
        MOA_SPECS=os.pathsep.join(map(str, specs)),
        MOA_API_TOKENS=f"other-token,{TOKEN}",
        OPENAI_API_KEY="sk-test",
        LANGSMITH_TRACING="false",
        LEASE_DURATION_SECONDS="6",
        HEARTBEAT_INTERVAL_SECONDS="2",
        REAPER_INTERVAL_SECONDS="2",
        LOG_LEVEL="WARNING",
        **extra_env,
    )
    cmd = [sys.executable, str(ROOT / "scripts" / "agent-server"), "--port", str(port)]
    cmd += ["--workers", str(workers), "--data", str(data)]
    cmd += ["--venv", str(ROOT / ".agent-server/venv")]  # kept between test runs
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,  # if pytest dies, the script stops its services
        )
    server = AgentServer(f"http://127.0.0.1:{port}", proc, log, fake, data)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while f"READY {server.url}" not in server.log_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(server)
            pytest.fail(f"agent-server did not start:\n{server.log_text()}")
        time.sleep(0.5)
    server.started = descendants(proc.pid)
    return server


@pytest.fixture(scope="module")
def agent_server() -> Iterator[AgentServer]:
    fake = OpenAIServer().start()
    data = new_data_dir()
    try:
        server = launch(fake, data, workers=2)
        try:
            yield server
        finally:
            stop(server)
    finally:
        fake.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def server(agent_server: AgentServer) -> Iterator[AgentServer]:
    agent_server.fake.reset()
    agent_server.fake.set_behaviors({})
    yield agent_server
    print(f"--- agent-server log:\n{agent_server.log_text()}")


def sdk_client(server: AgentServer) -> Any:
    from langgraph_sdk import get_client

    return get_client(
        url=server.url, timeout=RUN_TIMEOUT, headers={"Authorization": f"Bearer {TOKEN}"}
    )


@pytest.fixture
def client(server: AgentServer) -> Any:
    return sdk_client(server)


def ask(question: str = QUESTION) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}]}


# --------------------------------------------------------------------------- tests


def test_bearer_tokens_and_private_threads(server: AgentServer) -> None:
    def status(headers: dict[str, str]) -> int:
        req = urllib.request.Request(
            server.url + "/assistants/search", data=b"{}", headers=headers, method="POST"
        )
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status({}) == 401
    assert status({"Authorization": "Bearer wrong"}) == 401
    assert status({"Authorization": f"Basic {TOKEN}"}) == 401
    assert status({"Authorization": f"Bearer {TOKEN}"}) == 200
    assert status({"Authorization": "Bearer other-token"}) == 200
    assert_threads_are_private(server.url, TOKEN, "other-token")


async def test_registered_specs_run_and_stream(server: AgentServer, client: Any) -> None:
    assistants = await client.assistants.search(limit=20)
    assert {"moa", "moa_local"} <= {a["graph_id"] for a in assistants}

    thread = await client.threads.create()
    out = await client.runs.wait(
        thread["thread_id"], "moa", input=ask(), context={"preset": "fast"}
    )
    assert out["answer"].startswith("agg says:"), out
    assert {r["model"] for r in server.fake.requests} == {"a", "b", "agg"}
    assert len(server.fake.log("a")) == 2 and len(server.fake.log("agg")) == 1

    # Second turn on the same thread, streamed: tokens of every model, progress events,
    # and the final values with both turns in the conversation.
    modes: dict[str, list[Any]] = defaultdict(list)
    async for part in client.runs.stream(
        thread["thread_id"],
        "moa",
        input=ask("And 3+3?"),
        context={"preset": "fast"},
        stream_mode=["values", "messages-tuple", "custom", "updates"],
    ):
        modes[part.event.split("|")[0]].append(part.data)
    assert not modes.get("error"), modes.get("error")
    final = modes["values"][-1]
    assert final["answer"].startswith("agg says:")
    assert [m["type"] for m in final["messages"]] == ["human", "ai", "human", "ai"]
    streamed = {meta.get("moa_model") for _msg, meta in modes["messages"]}
    assert {"a", "b", "agg"} <= streamed
    assert any(e.get("event") == "layer_finished" for e in modes["custom"] if isinstance(e, dict))
    assert modes["updates"]

    # A name that is neither built in nor registered is refused, and no model is called.
    server.fake.reset()
    bad = await client.runs.create(
        thread["thread_id"], "moa", input=ask(), context={"preset": "unregistered"}
    )
    await client.runs.join(thread["thread_id"], bad["run_id"])
    assert (await client.runs.get(thread["thread_id"], bad["run_id"]))["status"] == "error"
    assert server.fake.requests == []


async def test_local_graph_without_its_extra_says_how_to_install(client: Any) -> None:
    """The server's venv has no [local] extra: moa_local fails with the install hint."""
    thread = await client.threads.create()
    with pytest.raises(Exception, match=r"LocalModelUnavailableError.*langgraph-moa\[local\]"):
        await client.runs.wait(thread["thread_id"], "moa_local", input=ask())


async def test_20_concurrent_runs_over_both_workers(server: AgentServer, client: Any) -> None:
    server.fake.set_behavior("a", Behavior(latency=1.0))  # calls in flight long enough to see
    workers = {p for p in descendants(server.proc.pid) if _is_uvicorn_worker(p)}
    seen: set[int] = set()

    async def watch() -> None:
        while True:
            for rec in server.fake.log("a"):
                if rec["end"] is None and rec.get("peer_port"):
                    pid = pid_of_connection(rec["peer_port"], _port(server), workers)
                    if pid is not None:
                        seen.add(pid)
            await asyncio.sleep(0.1)

    async def one(i: int) -> dict[str, Any]:
        thread = await client.threads.create()
        return dict(
            await client.runs.wait(
                thread["thread_id"],
                "moa",
                input=ask(f"What is {i}+{i}?"),
                context={"preset": "fast"},
            )
        )

    watcher = asyncio.create_task(watch())
    try:
        outs = await asyncio.gather(*(one(i) for i in range(20)))
    finally:
        watcher.cancel()
    for i, out in enumerate(outs):
        assert out["answer"].startswith("agg says:"), out
        assert out["messages"][0]["content"] == f"What is {i}+{i}?"
    assert len(server.fake.log("agg")) == 20 and len(server.fake.log("a")) == 40
    assert len(seen) == 2, f"model calls came from workers {seen} of {workers}"


async def test_worker_killed_mid_run_is_resumed(server: AgentServer, client: Any) -> None:
    server.fake.set_behavior("slow", Behavior(hang_first=1))
    workers = {p for p in descendants(server.proc.pid) if _is_uvicorn_worker(p)}
    thread = await client.threads.create()
    run = await client.runs.create(
        thread["thread_id"], "moa", input=ask(), context={"preset": "crash"}
    )
    deadline = time.monotonic() + RUN_TIMEOUT
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, "the slow proposer was never called"
        hanging = [r for r in server.fake.log("slow") if r["end"] is None]
        if hanging and len(server.fake.log("c3")) == 1 and server.fake.log("c3")[0]["end"]:
            victim = pid_of_connection(hanging[0]["peer_port"], _port(server), workers)
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # c3's finished task is written to the checkpoint
    os.kill(victim, signal.SIGKILL)

    # The SDK's pooled connections to the dead worker are gone too: a new client.
    client = sdk_client(server)
    await client.runs.join(thread["thread_id"], run["run_id"])
    status = (await client.runs.get(thread["thread_id"], run["run_id"]))["status"]
    assert status == "success", server.fake.requests
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["answer"].startswith("cagg says:")
    # Finished proposers were not called again; only the one that was cut off.
    calls = {m: [r["outcome"] for r in server.fake.log(m)] for m in ("c1", "c2", "c3", "slow")}
    assert calls == {"c1": ["ok"], "c2": ["ok"], "c3": ["ok"], "slow": ["hang", "ok"]}
    assert len(server.fake.log("cagg")) == 1


async def test_second_server_shares_the_database_and_queue(
    server: AgentServer, client: Any
) -> None:
    """Scaling out: another agent-server on the first one's PostgreSQL and Redis
    (DATABASE_URL/REDIS_URL: it starts neither) serves the same threads."""
    log = server.log_text()
    pg = re.search(r"PostgreSQL ready on 127\.0\.0\.1:(\d+)", log)
    redis = re.search(r"Redis ready on 127\.0\.0\.1:(\d+)", log)
    assert pg and redis, log
    keys = json.loads((server.data / "secrets.json").read_text())
    data = new_data_dir()
    second = launch(
        server.fake,
        data,
        workers=1,
        DATABASE_URL=f"postgresql://moa:{keys['postgres']}@127.0.0.1:{pg[1]}/aegra",
        REDIS_URL=f"redis://:{keys['redis']}@127.0.0.1:{redis[1]}/0",
    )
    try:
        assert "PostgreSQL ready" not in second.log_text()
        assert "Redis ready" not in second.log_text()
        thread = await client.threads.create()
        out = await sdk_client(second).runs.wait(
            thread["thread_id"], "moa", input=ask(), context={"preset": "fast"}
        )
        assert out["answer"].startswith("agg says:")
        state = await client.threads.get_state(thread["thread_id"])
        assert state["values"]["answer"] == out["answer"]
    finally:
        try:
            assert stop(second) == 0
        finally:
            shutil.rmtree(data, ignore_errors=True)


def test_sigterm_stops_everything(agent_server: AgentServer) -> None:
    assert agent_server.started, "no child processes were recorded"
    assert stop(agent_server) == 0
    assert "agent-server: stopped" in agent_server.log_text()
    port = int(agent_server.url.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def _terminate_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port(server: AgentServer) -> int:
    assert server.fake.port is not None
    return server.fake.port


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_uvicorn_worker(pid: int) -> bool:
    """uvicorn's worker processes are multiprocessing children of its master."""
    return "multiprocessing" in _cmdline(pid)
