"""The compatibility suite: real client libraries against a real ``moa serve``.

Runs from a virtualenv of its own that holds only the clients (``scripts/test`` makes it, in
``~/.cache/langgraph-moa/compat-venv``): ``MOA_COMPAT=1 <that venv>/bin/python -m pytest
tests/compat``. Without ``MOA_COMPAT``
(the project's default suite) nothing here is collected. The servers run from the project's
Python (``MOA_PYTHON``): the fake upstream and ``moa serve`` as subprocesses.

Each test is marked ``@pytest.mark.compat(client, feature)``; the outcomes are written to
``MOA_COMPAT_RESULTS`` (default ``tests/compat/results.json``), from which ``table.py``
writes the "client x feature" table of docs/guides/serve.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("MOA_COMPAT"):
    collect_ignore_glob = ["test_*.py"]
else:
    from servers import Upstream, moa_serve, tiny_spec

RESULTS = Path(os.environ.get("MOA_COMPAT_RESULTS") or Path(__file__).with_name("results.json"))
CLIENTS = {
    "openai": "openai",
    "langchain-openai": "langchain-openai",
    "pydantic-ai": "pydantic-ai-slim",
    "litellm": "litellm",
    "openai-agents": "openai-agents",
}
"""Client (as the table names it) -> its distribution (for the version)."""
CITY = '{"city": "Oslo"}'

_outcomes: dict[tuple[str, str], str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat(client, feature): a cell of the table")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    for mark in item.iter_markers("compat"):  # a test may fill several cells
        if not (report.when == "call" or report.failed):
            continue
        key = (mark.args[0], mark.args[1])
        if report.skipped:
            _outcomes.setdefault(key, "skipped")
        else:  # every test of a cell must pass
            failed = _outcomes.get(key) == "failed" or report.failed
            _outcomes[key] = "failed" if failed else "passed"
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _outcomes:
        return
    versions = {}
    for client, dist in CLIENTS.items():
        try:
            versions[client] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[client] = None
    cells = [
        {"client": client, "feature": feature, "outcome": outcome}
        for (client, feature), outcome in sorted(_outcomes.items())
    ]
    RESULTS.write_text(json.dumps({"versions": versions, "cells": cells}, indent=1) + "\n")


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    behaviors = {"agg": {"latency": 0.01, "tool_calls": True}, "jsonagg": {"content": CITY}}
    server = Upstream(behaviors)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def base_url(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``moa serve`` serving ``tiny`` (its aggregator calls a tool when offered one) and
    ``json`` (its aggregator answers {"city": "Oslo"}); yields its ``/v1`` URL."""
    folder = tmp_path_factory.mktemp("specs")
    tiny = tiny_spec(upstream.base_url)
    as_json = tiny_spec(upstream.base_url, "json")
    as_json["aggregator"] = {**as_json["aggregator"], "name": "jsonagg", "model": "openai:jsonagg"}
    paths = []
    for spec in (tiny, as_json):
        path = folder / f"{spec['name']}.json"
        path.write_text(json.dumps(spec))
        paths.append(path)
    with moa_serve(paths) as url:
        yield f"{url}/v1"


@pytest.fixture
def log(upstream: Upstream) -> Any:
    """The upstream log of this test only: ``log()`` -> model -> its last request."""
    upstream.reset()

    def by_model() -> dict[str, dict[str, Any]]:
        return {
            r["model"]: {**r, "params": {**r["params"], "max_tokens": r["max_tokens"]}}
            for r in upstream.log()
        }

    return by_model


SAMPLING = {
    "top_p": 0.5,
    "seed": 7,
    "frequency_penalty": 0.25,
    "presence_penalty": -0.5,
    "logit_bias": {"1734": -100},
}
"""The sampling fields each client sends in its "sampling fields" test."""


def check_sampling(sent: dict[str, dict[str, Any]], fields: dict[str, Any]) -> None:
    """The answer got every field the client sent; the proposers only the seed."""
    agg = next(v for k, v in sent.items() if k.endswith("agg"))
    for name, value in fields.items():
        assert agg["params"].get(name) == value, (name, agg["params"])
    for proposer in ("a", "b"):
        params = sent[proposer]["params"]
        assert params.get("seed") == fields.get("seed")
        assert not {"top_p", "frequency_penalty", "presence_penalty", "logit_bias"} & set(params)
