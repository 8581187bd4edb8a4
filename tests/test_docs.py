"""The documentation site tells the truth: its examples run, its specs load, its generated
reference covers the code, and the README stays the short page that points into it.

* (slow) Every ```python block right after a ``<!-- test -->`` line in ``docs/**/*.md``, and
  every one of the README, runs in a fresh
  interpreter against the project's OpenAI-compatible test server: both hosted providers'
  base URLs point at it (``OPENAI_API_BASE``, ``TOGETHER_API_BASE``, dummy keys), and
  ``http://127.0.0.1:8000/v1`` (the guides' "your own server") is replaced by its address.
  ``<!-- test: {"model": {...}} -->`` gives models a ``Behavior``. Top-level ``await`` works.
* Every ```yaml block with ``layers:`` is a valid spec.
* The generators of ``scripts/docs_hooks.py`` list every spec field, every CLI option and
  every HTTP route (the strict site build itself runs in ``scripts/test``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from langgraph_moa.testing import Behavior, OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OWN_SERVER = "http://127.0.0.1:8000/v1"
"""The address the guides give "your own OpenAI-compatible server" (vLLM's default port)."""

BLOCK = re.compile(
    r"^<!-- test(?::\s*(?P<behaviors>\{[^\n]*\}))? -->\n```python\n(?P<code>.*?)^```",
    re.M | re.S,
)
YAML_BLOCK = re.compile(r"^```yaml\n(?P<text>.*?)^```", re.M | re.S)

RUNNER = """
import ast, asyncio, inspect, sys
source = sys.stdin.read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if inspect.iscoroutine(result):
    asyncio.run(result)
"""


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _examples() -> list[Any]:
    found = []
    for page in _pages():
        for match in BLOCK.finditer(page.read_text(encoding="utf-8")):
            line = page.read_text(encoding="utf-8")[: match.start()].count("\n") + 1
            name = f"{page.relative_to(DOCS)}:{line}"
            behaviors = json.loads(match["behaviors"]) if match["behaviors"] else {}
            found.append(pytest.param(name, match["code"], behaviors, id=name))
    return found


def _readme_examples() -> list[Any]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    return [
        pytest.param(f"README.md#{i}", code, {}, id=f"README.md#{i}")
        for i, code in enumerate(blocks, 1)
    ]


EXAMPLES = _examples() + _readme_examples()


def test_the_guides_have_tested_examples() -> None:
    pages = {str(p.values[0]).split(":")[0] for p in EXAMPLES}
    assert len(EXAMPLES) >= 15, EXAMPLES
    for page in ("getting-started.md", "guides/providers.md", "guides/agent.md"):
        assert page in pages


@pytest.mark.slow  # a fresh interpreter per example: about 5 s each
@pytest.mark.parametrize(("name", "code", "behaviors"), EXAMPLES)
def test_documented_example_runs(
    name: str, code: str, behaviors: dict[str, Any], tmp_path: Path
) -> None:
    with OpenAIServer(behaviors=behaviors, default=Behavior(tool_calls=True)) as server:
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-docs-test",
            "TOGETHER_API_KEY": "docs-test",
            "OPENAI_API_BASE": server.base_url,
            "TOGETHER_API_BASE": server.base_url,
            "HOME": str(tmp_path),  # thread stores and caches land here, not in the user's
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        out = subprocess.run(
            [sys.executable, "-c", RUNNER, name],
            input=code.replace(OWN_SERVER, server.base_url),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
    assert out.returncode == 0, f"{name}\n{out.stdout}\n{out.stderr}"


def test_every_spec_in_the_docs_loads() -> None:
    from langgraph_moa.graphs.spec import parse_spec

    checked = 0
    for page in _pages():
        for match in YAML_BLOCK.finditer(page.read_text(encoding="utf-8")):
            data = yaml.safe_load(match["text"])
            if isinstance(data, dict) and "layers" in data:
                parse_spec(data, source=str(page.relative_to(DOCS)))
                checked += 1
    assert checked >= 5


# --------------------------------------------------------------------------- generators


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts/docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spec_reference_lists_every_field_with_its_bounds() -> None:
    from langgraph_moa.graphs.spec import (
        EarlyStopSpec,
        MoASpec,
        ModelSpec,
        Price,
        RankSpec,
        RetrySpec,
    )

    hooks = _hooks()
    text = hooks.spec_reference()
    for model in (MoASpec, ModelSpec, RetrySpec, Price, RankSpec, EarlyStopSpec):
        assert f"## {model.__name__}" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text, (model.__name__, name)
    assert "| `max_attempts` | `int` | `3` | ≥ 1, ≤ 20 | Attempts including the first. |" in text
    assert "| `model` | `str` | **required** |" in text
    assert "| `layers` | `list[list[ModelSpec]]` | **required** | at most 16 items |" in text
    context = hooks.context_reference()
    assert "| `stream_proposers` | `bool` | `False` |" in context


def test_cli_reference_lists_every_command_and_option() -> None:
    import argparse

    from langgraph_moa.cli import _parser

    text = _hooks().cli_reference()
    parsers = [_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
                for name in action.choices:
                    assert f" {name}\n" in text, name
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.option_strings[0] in text, action.option_strings
    assert "| `--max-cost MAX_COST` | USD this run may spend" in text


def test_http_reference_matches_the_routes() -> None:
    hooks = _hooks()
    page = (DOCS / "reference/http.md").read_text(encoding="utf-8")
    assert hooks.check_routes(page) == []
    assert ("POST", "/v1/chat/completions") in hooks.documented_routes(page)
    trimmed = page.replace("| `GET /health` |", "| health |")
    assert hooks.check_routes(trimmed) == ["route GET /health is not documented"]


def test_an_unknown_marker_fails_the_build() -> None:
    hooks = _hooks()
    assert "| `local` |" in hooks.render("<!-- gen:presets -->")
    with pytest.raises(ValueError, match="gen:nope"):
        hooks.render("<!-- gen:nope -->")


def test_the_graph_diagram_is_the_preset_s() -> None:
    block = _hooks().render("<!-- gen:mermaid moa-lite -->")
    assert block.startswith("```mermaid\n") and block.endswith("\n```")
    assert "aggregator --> __end__" in block and "layer_1/wizardlm-2-8x22b" in block


# --------------------------------------------------------------------------- README


README = ROOT / "README.md"


def test_readme_is_short_and_points_into_the_site() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 12_000
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 8
    for link in links:
        assert (ROOT / link).is_file(), link


def test_readme_commands_are_the_documented_ones() -> None:
    """The two commands a newcomer copies: install-and-answer, and the tests."""
    install = (
        'python3 -m venv .venv && . .venv/bin/activate && pip install ".[local]"'
        ' && moa "What is Mixture-of-Agents?"'
    )
    text = README.read_text(encoding="utf-8")
    assert install in text and "./scripts/test" in text
    assert install in (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert "./scripts/test" in (DOCS / "development.md").read_text(encoding="utf-8")


def test_every_progress_event_is_documented() -> None:
    """Event kinds written anywhere in the graph's code have a row in the events reference."""
    pattern = re.compile(r'(?:"event": |emit\(\s*runtime,\s*)"([a-z_]+)"')
    kinds = {
        kind
        for folder in ("nodes", "graphs")
        for source in (ROOT / folder).glob("*.py")
        for kind in pattern.findall(source.read_text(encoding="utf-8"))
    }
    assert {"layer_started", "call_started", "call_finished", "layer_ranked"} <= kinds
    page = (DOCS / "reference/events.md").read_text(encoding="utf-8")
    assert {k for k in kinds if f"| `{k}` |" not in page} == set()
