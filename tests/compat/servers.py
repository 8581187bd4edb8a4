"""Start the fake upstream and a real ``moa serve`` as subprocesses of the project's Python.

Standard library only (plus ``httpx``), so the compatibility suite can run from a virtualenv
that holds only the client libraries under test: the servers run from the project's own
environment (``MOA_PYTHON``, default: this interpreter), the clients from this one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

PYTHON = os.environ.get("MOA_PYTHON") or sys.executable
"""The project's interpreter (its venv has langgraph-moa installed)."""
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    # The project's own checkout first, so the code under test is this worktree's.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Upstream:
    """``python -m langgraph_moa.testing.server`` in its own process, driven over HTTP."""

    def __init__(self, behaviors: Mapping[str, Any] | None = None) -> None:
        config = json.dumps({"default": {"latency": 0.01}, "models": dict(behaviors or {})})
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "langgraph_moa.testing.server", "--port", "0", "--behaviors", config],
            stdout=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"the test server did not start: {line!r}")
        self.base_url = line.split()[1]
        self.url = self.base_url.removesuffix("/v1")

    def log(self, model: str | None = None) -> list[dict[str, Any]]:
        query = {"model": model} if model else {}
        records: list[dict[str, Any]] = httpx.get(
            f"{self.url}/_control/log", params=query, timeout=10
        ).json()["requests"]
        return records

    def reset(self) -> None:
        httpx.post(f"{self.url}/_control/reset", timeout=10)

    def set_behaviors(self, models: Mapping[str, Any], default: Mapping[str, Any]) -> None:
        body = {"default": dict(default), "models": dict(models)}
        httpx.post(f"{self.url}/_control/behaviors", json=body, timeout=10).raise_for_status()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def tiny_spec(base_url: str, name: str = "tiny", proposers: tuple[str, ...] = ("a", "b")) -> Any:
    """A one-layer mixture on the fake upstream: each model's name is its upstream model."""

    def model(n: str) -> dict[str, Any]:
        return {
            "name": n,
            "model": f"openai:{n}",
            "base_url": base_url,
            "timeout": 30,
            "retry": {"max_attempts": 1, "jitter": False},
        }

    return {"name": name, "layers": [[model(p) for p in proposers]], "aggregator": model("agg")}


@contextmanager
def moa_serve(
    spec_files: list[Path], *args: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``moa serve --spec ...`` on a free loopback port; yields its base URL (no ``/v1``)."""
    port = free_port()
    command = [PYTHON, "-m", "langgraph_moa.cli", "serve", "--port", str(port), "--no-ui"]
    for path in spec_files:
        command += ["--spec", str(path)]
    proc = subprocess.Popen(
        [*command, *args],
        env={**_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"moa serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("moa serve did not start within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
