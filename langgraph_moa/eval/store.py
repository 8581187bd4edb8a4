"""The result file: JSONL, a header line then one line per finished item, appended and
flushed as each item completes, so an interrupted eval loses at most the items in flight.

Resume: items whose record has no ``error`` are done and skipped; failed ones run again
(the newest record of an id wins). Every call is also journaled as it is made (``calls``
lines), so calls an interrupted or failed attempt paid for still count in the totals (as
repeated) after the retry replaced its record. The header's fingerprint names what produced the
results (spec, judge, data); a different one is refused instead of mixing results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from langgraph_moa.errors import MoAError


class ResultStore:
    def __init__(self, path: str | Path, header: dict[str, Any]):
        self.path = Path(path)
        self.header = header
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            _drop_cut_line(self.path)
        if self.path.exists() and self.path.stat().st_size:
            old, self.records = read_results(self.path)
            self._check(old)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write({"kind": "header", **header})

    def _check(self, old: dict[str, Any]) -> None:
        changed = [
            what
            for what in ("eval", "spec", "judge", "data", "settings")
            if old.get("fingerprints", {}).get(what) != self.header["fingerprints"].get(what)
        ]
        if changed:
            raise MoAError(
                f"{self.path} holds results of a different {', '.join(changed)}"
                f" ({old.get('eval')} of {old.get('spec_name')!r}, judge {old.get('judge')});"
                " refusing to mix them: choose another --output"
            )

    def done(self, item_id: str) -> bool:
        rec = self.records.get(item_id)
        return rec is not None and not rec.get("error")

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["id"]] = record
        self._write({"kind": "item", **record})

    def journal(self, item_id: str, calls: list[dict[str, Any]]) -> None:
        """Record calls the moment they are made (before the item's record exists)."""
        if calls:
            self._write({"kind": "calls", "id": item_id, "calls": calls})

    def _write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _drop_cut_line(path: Path) -> None:
    """Remove a last line a crash cut mid-write, so the next record starts on its own line
    (that item simply runs again)."""
    blob = path.read_bytes()
    if blob and not blob.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(blob.rfind(b"\n") + 1)


def read_results(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(header, latest record per item id) of a result file."""
    header, records, _ = read_all(path)
    return header, records


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Every call the result file's runs journaled, in order (each with its item ``id``)."""
    return read_all(path)[2]


def read_all(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(header, latest record per item id, journaled calls) of a result file."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MoAError(f"cannot read {str(p)!r}: {exc.strerror}") from None
    header: dict[str, Any] | None = None
    records: dict[str, dict[str, Any]] = {}
    journal: list[dict[str, Any]] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):  # a line cut by a crash mid-write: that item reruns
                continue
            raise MoAError(f"{p}:{i}: not valid JSON") from None
        kind = row.pop("kind", None)
        if kind == "header" and header is None:
            header = row
        elif kind == "item":
            records[str(row["id"])] = row
        elif kind == "calls":
            journal += [{**c, "id": str(row["id"])} for c in row.get("calls") or []]
    if header is None:
        raise MoAError(f"{p} is not a moa eval result file (no header line)")
    return header, records, journal
