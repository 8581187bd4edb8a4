"""What ``langgraph build``/``up`` and LangGraph Platform read: ``langgraph.json``,
``.dockerignore``, ``.env.example``. The image itself needs Docker (not here): the CLI's
generated Dockerfile and a model of Docker's ignore rules stand in for it."""

from __future__ import annotations

import fnmatch
import importlib.machinery
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = json.loads((ROOT / "langgraph.json").read_text())


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rules, as far as this file uses them: the last matching
    pattern wins, ``!`` re-includes, a match on a folder covers what is inside it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        rx = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        rx = rx.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(rx, p) for p in prefixes):
            result = not negate
    return result


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_secrets_caches_and_envs_out() -> None:
    patterns = dockerignore()
    for path in (
        ".git/HEAD",
        ".env",
        ".env.production",
        ".venv/bin/python",
        ".agent-server/venv/bin/python",
        ".mypy_cache/3.11/cache.db",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "langgraph_moa/__pycache__/cli.cpython-311.pyc",
        "graphs/__pycache__/studio.cpython-311.pyc",
        "build/lib/x.py",
        "src/langgraph_moa.egg-info/PKG-INFO",
        "checkpoints.sqlite",
    ):
        assert ignored(path, patterns), path


def test_dockerignore_keeps_what_the_image_serves() -> None:
    """Everything git tracks that the package, the graphs or the build needs stays in."""
    patterns = dockerignore()
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        [git, "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    needed = [
        p
        for p in tracked
        if p in ("pyproject.toml", "README.md", "langgraph.json", ".env.example")
        or fnmatch.fnmatch(p, "*.py")
        or p.startswith(("graphs/", "nodes/", "prompts/", "langgraph_moa/", "src/"))
    ]
    assert "graphs/studio.py" in needed and "langgraph_moa/auth.py" in needed
    kept_out = [p for p in needed if ignored(p, patterns)]
    assert not kept_out


def test_langgraph_json_deployment_keys() -> None:
    assert CONFIG["dependencies"] == ["."]
    assert set(CONFIG["graphs"]) == {"moa", "moa_local"}
    assert CONFIG["env"] == ".env"
    file, _, name = CONFIG["auth"]["path"].partition(":")
    assert (ROOT / file).is_file() and name == "auth"
    # A checkout or an image never carries a .env of its own: git and Docker ignore it.
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in dockerignore()


def test_env_example_documents_what_the_code_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    guide = (ROOT / "docs" / "guides" / "deployment.md").read_text()
    for var in (
        "MOA_API_TOKENS",
        "MOA_AUTH_ANONYMOUS",
        "MOA_SPECS",
        "MOA_TRUST_RUN_SPECS",
        "MOA_RUN_BASE_URLS",
        "MOA_RUN_MODELS",
        "TOGETHER_API_KEY",
        "LEASE_DURATION_SECONDS",
        "HEARTBEAT_INTERVAL_SECONDS",
        "REAPER_INTERVAL_SECONDS",
    ):
        assert var in example and var in guide, var
    # Only empty values or commented lines: an example never carries a secret.
    for line in example.splitlines():
        if line and not line.startswith("#"):
            assert line.endswith("="), line


def test_langgraph_cli_generates_the_image(tmp_path: Path) -> None:
    """`langgraph validate` and `langgraph dockerfile` (what `langgraph build` runs before
    Docker) accept the config: the repo is installed as a package, and both graphs and the
    auth handler resolve inside the image."""
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    if exe is None:
        pytest.skip("langgraph CLI not installed")
    valid = subprocess.run(
        [exe, "validate", "-c", "langgraph.json"], cwd=ROOT, capture_output=True, text=True
    )
    assert valid.returncode == 0 and "is valid" in valid.stdout, valid.stdout + valid.stderr
    out = subprocess.run(
        [exe, "dockerfile", "-c", "langgraph.json", str(tmp_path / "Dockerfile")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    dockerfile = (tmp_path / "Dockerfile").read_text()
    folder = ROOT.name
    assert f"ADD . /deps/{folder}" in dockerfile
    assert f"/deps/{folder}/graphs/studio.py:moa_local" in dockerfile
    assert f"/deps/{folder}/langgraph_moa/auth.py:auth" in dockerfile


def agent_server_module() -> Any:
    """scripts/agent-server as a module (it has no .py suffix: it is a command)."""
    loader = importlib.machinery.SourceFileLoader(
        "agent_server", str(ROOT / "scripts/agent-server")
    )
    spec = importlib.util.spec_from_loader("agent_server", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_agent_server_reads_the_env_of_langgraph_json(tmp_path: Path) -> None:
    script = agent_server_module()
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {}, "env": ".env"}))
    assert script.env_defaults(config) == {}  # no file: nothing, no error
    (tmp_path / ".env").write_text(
        "# keys\nexport A=1\nB = 'two words'\nC=\"x=y\"\n\nnot a line\nEMPTY=\n"
    )
    assert script.env_defaults(config) == {"A": "1", "B": "two words", "C": "x=y", "EMPTY": ""}
    config.write_text(json.dumps({"graphs": {}, "env": {"K": 3}}))
    assert script.env_defaults(config) == {"K": "3"}


def test_agent_server_refuses_bad_arguments() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/agent-server"), "--port", "1", "--workers", "0"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "--workers must be at least 1" in out.stderr
