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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
