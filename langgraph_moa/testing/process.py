"""The test server in another process: ``ServerProcess`` starts
``python -m langgraph_moa.testing.server`` and ``ControlClient`` drives it over its
``/_control`` endpoints (benchmarks, crash/resume tests, ``langgraph dev`` tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langgraph_moa.testing.behavior import Behavior

# --------------------------------------------------------------------------- other process


class ControlClient:
    """Drive a server running in another process through its ``/_control`` API (stdlib)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        root = base_url.rstrip("/")
        self.url = root[:-3] if root.endswith("/v1") else root
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer

    def set_behaviors(
        self,
        models: Mapping[str, Behavior | Mapping[str, Any]] | None = None,
        default: Behavior | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replace all behaviours (``default=None`` -> ``Behavior()``)."""
        payload = {
            "default": Behavior.from_dict(default).to_dict(),
            "models": {k: Behavior.from_dict(v).to_dict() for k, v in (models or {}).items()},
        }
        return self._call("POST", "/_control/behaviors", payload)

    def behaviors(self) -> dict[str, Any]:
        return self._call("GET", "/_control/behaviors")

    def log(self, model: str | None = None) -> list[dict[str, Any]]:
        path = "/_control/log" + (f"?model={urllib.parse.quote(model)}" if model else "")
        requests: list[dict[str, Any]] = self._call("GET", path)["requests"]
        return requests

    def reset(self) -> None:
        self._call("POST", "/_control/reset", {})

    def health(self) -> bool:
        try:
            return bool(self._call("GET", "/health").get("status") == "ok")
        except OSError:
            return False


class ServerProcess:
    """Run the server as ``python -m langgraph_moa.testing.server`` in a subprocess.

    ``with ServerProcess(behaviors={"m": {"latency": 0.1}}) as proc:`` waits for the
    ``READY`` line; ``proc.base_url``, ``proc.control`` (a :class:`ControlClient`),
    ``proc.log()``, ``proc.set_behaviors()``, ``proc.reset()``; SIGTERM on exit.
    """

    def __init__(
        self,
        behaviors: Mapping[str, Behavior | Mapping[str, Any]] | None = None,
        default: Behavior | Mapping[str, Any] | None = None,
        *,
        port: int = 0,
        startup_timeout: float = 15.0,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = {
            "default": Behavior.from_dict(default).to_dict(),
            "models": {k: Behavior.from_dict(v).to_dict() for k, v in (behaviors or {}).items()},
        }
        self._port = port
        self._timeout = startup_timeout
        self._python = python
        self._env = env
        self.proc: subprocess.Popen[str] | None = None
        self.base_url: str = ""
        self.control: ControlClient | None = None

    def start(self) -> ServerProcess:
        env = dict(os.environ if self._env is None else self._env)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [self._python, "-m", "langgraph_moa.testing.server", "--port", str(self._port)]
        cmd += ["--behaviors", json.dumps(self._config)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env
        )
        line_box: list[str] = []
        stdout = self.proc.stdout
        assert stdout is not None  # stdout=PIPE
        reader = threading.Thread(target=lambda: line_box.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._timeout)
        line = line_box[0].strip() if line_box else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"test server did not start (got {line!r})")
        self.base_url = line.split(" ", 1)[1]
        self.control = ControlClient(self.base_url)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def log(self, model: str | None = None) -> list[dict[str, Any]]:
        assert self.control is not None
        return self.control.log(model)

    def set_behaviors(self, models: Mapping[str, Any] | None = None, default: Any = None) -> Any:
        assert self.control is not None
        return self.control.set_behaviors(models, default)

    def reset(self) -> None:
        assert self.control is not None
        self.control.reset()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
