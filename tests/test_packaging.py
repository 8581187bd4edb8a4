"""What a normal (non-editable) install ships and runs: every module of the package, and the
`moa` command without any optional extra (a face whose extra is missing says which one).

The tests run on an editable install, which sees the source tree whatever pyproject lists, so
a package missing from ``[tool.setuptools] packages`` (as ``langgraph_moa.serve`` once was:
``moa`` then failed at start on a wheel install) passes every other test. This checks the list
against the tree; the slow wheel test in ``test_typing.py`` checks a built wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from langgraph_moa.testing import Behavior, OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "langgraph_moa"


def package_dirs() -> set[str]:
    """Dotted names of the package's folders that hold Python files (links followed: graphs/,
    nodes/ and prompts/ are links into the package)."""
    found = set()
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if any(f.endswith(".py") for f in files):
            found.add(".".join(Path(folder).relative_to(ROOT).parts))
    return found


def test_every_python_folder_of_the_package_is_listed_in_pyproject() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is 3.11+")
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    assert {"langgraph_moa.graphs", "langgraph_moa.nodes", "langgraph_moa.serve"} <= package_dirs()
    assert package_dirs() - listed == set(), "add these to [tool.setuptools] packages"
    assert set(setuptools["package-data"]) <= listed, "package-data of a package not listed"


BLOCKER = """
import sys
BLOCKED = set(sys.argv[1].split(","))

class Block:  # the optional extras are not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
from langgraph_moa.cli import main
sys.exit(main(sys.argv[2:]))
"""

EXTRAS = "fastapi,uvicorn,starlette,numpy,matplotlib,tqdm,llama_cpp"
"""Modules of the serve/web/eval/local extras (``pip install langgraph-moa`` has none)."""


def core_moa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, EXTRAS, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_core_install_runs_moa_without_any_extra(tmp_path: Path) -> None:
    with OpenAIServer(default=Behavior()) as srv:
        model = {"model": "openai:m", "base_url": srv.base_url}
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            yaml.safe_dump(
                {"layers": [[{"name": "a", **model}, {"name": "b", **model}]], "aggregator": model}
            )
        )
        answered = core_moa("--spec", str(spec), "Hi?")
    assert answered.returncode == 0 and "says" in answered.stdout, answered.stderr
    assert core_moa("presets").returncode == 0
    assert "serve" in core_moa("--help").stdout
    # A face whose extra is missing says which one, in one line, without a traceback.
    evaluation = ["eval", "mt-bench", "--judge", "local:smollm2", "--questions", "1"]
    for args, extra in (
        (["serve", "--preset", "moa-lite"], "[serve]"),
        (["ui", "--no-browser"], "[web]"),
        ([*evaluation, "--output", str(tmp_path / "mt.jsonl")], "[eval]"),
        (["What is MoA?"], "[local]"),
    ):
        out = core_moa(*args)
        assert out.returncode != 0 and f'pip install "langgraph-moa{extra}"' in out.stderr, out
        assert "Traceback" not in out.stderr, out.stderr


def test_moa_version_is_the_installed_distribution_s() -> None:
    """One source: pyproject's ``version``, read back through the installed metadata."""
    from importlib.metadata import version

    for flag in ("--version", "-V"):
        out = core_moa(flag)
        assert out.returncode == 0 and out.stdout.strip() == f"moa {version('langgraph-moa')}"
    if sys.version_info >= (3, 11):
        import tomllib

        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert version("langgraph-moa") == declared
