"""Write the "client x feature" table of docs/guides/serve.md from the compatibility suite's
results (``results.json``, written by ``conftest.py`` at the end of a run).

    python tests/compat/table.py [results.json] [docs/guides/serve.md]

The table goes between the ``<!-- compat-table -->`` and ``<!-- /compat-table -->`` lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["plain", "streaming", "tools", "structured output", "sampling fields", "Responses API"]
MARK = {"passed": "yes", "failed": "**fails**", "skipped": "skipped"}
START, END = "<!-- compat-table -->", "<!-- /compat-table -->"


def table(results: dict[str, object]) -> str:
    versions = dict(results["versions"])  # type: ignore[call-overload]
    cells = {(c["client"], c["feature"]): c["outcome"] for c in results["cells"]}  # type: ignore[attr-defined]
    lines = [
        "| client | " + " | ".join(FEATURES) + " |",
        "| --- | " + " | ".join("---" for _ in FEATURES) + " |",
    ]
    for client, version in versions.items():
        row = [MARK.get(cells.get((client, feature), ""), "n/a") for feature in FEATURES]
        lines.append(f"| {client} {version or '(not installed)'} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else Path(__file__).with_name("results.json")
    page = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "guides" / "serve.md"
    text = page.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{table(json.loads(results.read_text()))}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
