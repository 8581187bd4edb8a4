"""A conversation as a file to keep: Markdown to read, JSON to process (what the thread read
returns, every turn with its proposer answers, references, ranking and calls)."""

from __future__ import annotations

import json
import re
from typing import Any


def filename(thread: dict[str, Any], ext: str) -> str:
    """A safe file name from the title (ASCII letters, digits and dashes)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", str(thread.get("title") or "")).strip("-")[:60]
    return f"{stem or thread['thread_id']}.{ext}"


def to_json(thread: dict[str, Any]) -> str:
    return json.dumps(thread, ensure_ascii=False, indent=2, default=str)


def to_markdown(thread: dict[str, Any]) -> str:
    """Question, answer, then each proposer's answer and the ranking, turn by turn."""
    out = [f"# {thread.get('title') or thread['thread_id']}", ""]
    for turn in thread["turns"]:
        out += [f"## Turn {turn['turn']}", "", f"**Question** ({turn.get('spec') or '?'}):", ""]
        out += [turn["question"], ""]
        if turn.get("answer"):
            out += ["**Answer:**", "", turn["answer"], ""]
        else:
            out += [f"*{turn['status']}*: {turn.get('error') or ''}".rstrip(": "), ""]
        for node, text in (turn.get("answers") or {}).items():
            out += [f"### {node}", "", text, ""]
        for ranking in turn.get("ranking") or []:
            out += [f"### Ranking of layer {ranking['layer']}", ""]
            out += ["| answer | mean rank | kept |", "|---|---|---|"]
            for row in ranking["table"]:
                score = "" if row["score"] is None else f"{row['score']:.2f}"
                out.append(f"| {row['node']} | {score} | {'yes' if row['kept'] else 'no'} |")
            out.append("")
        s = turn.get("summary") or {}
        if s:
            cost = s.get("cost_usd")
            money = "" if cost is None else f", ${cost:.4f}"
            out += [f"*{s.get('calls', 0)} calls, {s.get('failed', 0)} failed{money}*", ""]
    return "\n".join(out)
