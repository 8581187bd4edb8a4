"""The "client x feature" table of docs/guides/serve.md is the one ``tests/compat/table.py``
writes from the compatibility suite's committed results (regenerate both together)."""

from __future__ import annotations

import json
from pathlib import Path

from compat import table

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_table_matches_the_committed_results(tmp_path: Path) -> None:
    page = ROOT / "docs" / "guides" / "serve.md"
    copy = tmp_path / "serve.md"
    copy.write_text(page.read_text())
    assert table.main([str(ROOT / "tests" / "compat" / "results.json"), str(copy)]) == 0
    assert copy.read_text() == page.read_text()


def test_a_failed_or_missing_cell_shows() -> None:
    results = {
        "versions": {"openai": "3.0.0", "litellm": None},
        "cells": [
            {"client": "openai", "feature": "plain", "outcome": "passed"},
            {"client": "openai", "feature": "tools", "outcome": "failed"},
        ],
    }
    rows = table.table(json.loads(json.dumps(results))).splitlines()
    assert rows[2].startswith("| openai 3.0.0 | yes | n/a | **fails** |")
    assert rows[3].startswith("| litellm (not installed) | n/a |")
