"""``langgraph_moa/auth.py``: the bearer-token handler ``langgraph.json`` installs, called the
way each server calls it (LangGraph: ``headers`` as ``{bytes: bytes}`` plus the ASGI
``scope`` by name; Aegra: a ``{str: str}`` mapping, positionally). Through a real server:
tests/test_agent_server.py (Aegra) and tests/test_langgraph_dev.py (local callers)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import Auth

from langgraph_moa import auth as moa_auth

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"type": "http", "client": ("127.0.0.1", 50000)}
REMOTE = {"type": "http", "client": ("203.0.113.7", 50000)}


@pytest.fixture(autouse=True)
def no_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(moa_auth.TOKENS_ENV, raising=False)
    monkeypatch.delenv(moa_auth.ANONYMOUS_ENV, raising=False)


async def call(headers: dict[Any, Any], scope: dict[str, Any] | None = None) -> Any:
    """As the servers do: the registered handler, LangGraph-style or Aegra-style."""
    handler = moa_auth.auth._authenticate_handler
    assert handler is not None
    if scope is None:
        return await handler(headers)  # Aegra: headers only, positionally
    return await handler(headers=headers, scope=scope)


def denied(exc: pytest.ExceptionInfo[Auth.exceptions.HTTPException]) -> str:
    assert exc.value.status_code == 401
    assert exc.value.headers == {"WWW-Authenticate": "Bearer"}
    return str(exc.value.detail)


async def test_tokens_required_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(moa_auth.TOKENS_ENV, " first , second,")
    for headers in ({}, {b"authorization": b"Bearer wrong"}, {"Authorization": "Basic second"}):
        for scope in (LOCAL, None):  # being local does not help once tokens are set
            with pytest.raises(Auth.exceptions.HTTPException) as exc:
                await call(headers, scope)
            denied(exc)
    user = await call({b"authorization": b"Bearer second"}, REMOTE)
    again = await call({"Authorization": "bearer  second "})
    assert (
        user["identity"]
        == again["identity"]
        != (await call({"authorization": "Bearer first"}))["identity"]
    )
    assert user["identity"].startswith("token:") and "second" not in json.dumps(user)


async def test_missing_bearer_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(moa_auth.TOKENS_ENV, "t")
    with pytest.raises(Auth.exceptions.HTTPException) as exc:
        await call({})
    assert "Authorization: Bearer" in denied(exc)


async def test_without_tokens_only_local_callers() -> None:
    assert (await call({}, LOCAL))["identity"] == "anonymous"
    assert (await call({}, {"type": "http", "client": ("::1", 1)}))["identity"] == "anonymous"
    for scope in (REMOTE, {"type": "http", "client": None}, None):
        with pytest.raises(Auth.exceptions.HTTPException) as exc:
            await call({}, scope)
        assert moa_auth.TOKENS_ENV in denied(exc)
    # A proxy on the same machine: the peer is local, the caller is not.
    for header in (b"x-forwarded-for", b"Forwarded", b"X-Real-IP"):
        with pytest.raises(Auth.exceptions.HTTPException):
            await call({header: b"203.0.113.7"}, LOCAL)


async def test_anonymous_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(moa_auth.ANONYMOUS_ENV, "1")
    assert (await call({}, REMOTE))["identity"] == "anonymous"
    assert (await call({}))["identity"] == "anonymous"
    monkeypatch.setenv(moa_auth.TOKENS_ENV, "t")  # tokens win over the opt-in
    with pytest.raises(Auth.exceptions.HTTPException):
        await call({}, REMOTE)


def test_langgraph_json_points_at_the_handler() -> None:
    """The path in langgraph.json loads (as a file, the way the servers load it) to an Auth."""
    config = json.loads((ROOT / "langgraph.json").read_text())
    file, _, name = config["auth"]["path"].partition(":")
    spec = importlib.util.spec_from_file_location("moa_auth_from_file", ROOT / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(getattr(module, name), Auth)


@pytest.mark.slow
def test_langgraph_dev_enforces_tokens(tmp_path: Path) -> None:
    """The real `langgraph dev` (LangGraph's own server) loads the handler from langgraph.json
    and passes it what it asks for by name."""
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    if exe is None:
        pytest.skip("langgraph CLI not installed (pip install 'langgraph-cli[inmem]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        moa_auth.TOKENS_ENV: "secret-1,secret-2",
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    }
    cmd = [exe, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"

    def status(headers: dict[str, str]) -> int:
        req = urllib.request.Request(
            url + "/assistants/search", data=b"{}", headers=headers, method="POST"
        )
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url + "/ok", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.25)
        assert status({}) == 401  # although this caller is local: tokens are set
        assert status({"Authorization": "Bearer secret-3"}) == 401
        assert status({"Authorization": "Bearer secret-2"}) == 200
        assert_threads_are_private(url, "secret-1", "secret-2")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def assert_threads_are_private(url: str, mine: str, theirs: str) -> None:
    """A thread belongs to the token that made it: another token can neither see nor use it
    (used against Aegra too: tests/test_agent_server.py)."""
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.errors import NotFoundError

    me = get_sync_client(url=url, headers={"Authorization": f"Bearer {mine}"})
    other = get_sync_client(url=url, headers={"Authorization": f"Bearer {theirs}"})
    thread = me.threads.create(metadata={"topic": "private"})
    tid = thread["thread_id"]
    assert me.threads.get(tid)["metadata"]["topic"] == "private"
    assert tid in {t["thread_id"] for t in me.threads.search(limit=100)}
    assert tid not in {t["thread_id"] for t in other.threads.search(limit=100)}
    with pytest.raises(NotFoundError):
        other.threads.get(tid)
    with pytest.raises(NotFoundError):
        other.threads.update(tid, metadata={"topic": "taken"})
    with pytest.raises(NotFoundError):
        other.runs.create(tid, "moa", input={"messages": []})
    with pytest.raises(NotFoundError):
        other.threads.delete(tid)
    assert me.threads.get(tid)["metadata"]["topic"] == "private"
    assert other.assistants.search(graph_id="moa")  # assistants stay shared


async def test_anonymous_threads_are_left_alone() -> None:
    """Without tokens there is one user: no owner stamped, no filter (local dev unchanged)."""
    from types import SimpleNamespace

    handler = moa_auth.private_threads
    value: dict[str, Any] = {"metadata": {"a": 1}}
    ctx = SimpleNamespace(user=SimpleNamespace(identity="anonymous"))
    assert await handler(ctx, value) is None and value == {"metadata": {"a": 1}}  # type: ignore[arg-type]
    ctx = SimpleNamespace(user=SimpleNamespace(identity="token:abc"))
    assert await handler(ctx, value) == {"owner": "token:abc"}  # type: ignore[arg-type]
    assert value == {"metadata": {"a": 1, "owner": "token:abc"}}
    value = {"metadata": None, "thread_id": "t"}
    await handler(ctx, value)  # type: ignore[arg-type]
    assert value["metadata"] == {"owner": "token:abc"}
