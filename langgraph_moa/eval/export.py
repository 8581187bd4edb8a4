"""Hand our outputs to the official tools, so anyone with keys can run the official judges:

- ``alpaca_eval``: AlpacaEval's ``model_outputs.json``, a JSON list of
  ``{"instruction", "output", "generator"}`` (pairwise and GSM8K results; MT-Bench's first
  turns);
- ``fastchat``: FastChat ``llm_judge``'s ``model_answer/<model>.jsonl``, one line per question:
  ``{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [...]}],
  "tstamp"}`` (MT-Bench results).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from langgraph_moa.errors import MoAError
from langgraph_moa.eval.store import read_results

FORMATS = ("alpaca_eval", "fastchat")


def _done(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records.values() if not r.get("error")]


def alpaca_eval(header: dict[str, Any], records: dict[str, dict[str, Any]]) -> list[dict]:
    generator = str(header.get("spec_name"))
    out = []
    for r in _done(records):
        if header["eval"] == "mt-bench":
            out.append(
                {
                    "instruction": r["prompt_turns"][0],
                    "output": r["turns"][0],
                    "generator": generator,
                }
            )
        else:
            instruction = r.get("instruction") or r.get("question")
            out.append({"instruction": instruction, "output": r["output"], "generator": generator})
    return out


def fastchat(header: dict[str, Any], records: dict[str, dict[str, Any]]) -> list[dict]:
    if header["eval"] != "mt-bench":
        raise MoAError("--export fastchat needs MT-Bench results (FastChat model_answer)")
    rows = sorted(_done(records), key=lambda r: r["question_id"])
    return [
        {
            "question_id": r["question_id"],
            "answer_id": uuid.uuid4().hex[:22],
            "model_id": str(header.get("spec_name")),
            "choices": [{"index": 0, "turns": r["turns"]}],
            "tstamp": r.get("tstamp", time.time()),
        }
        for r in rows
    ]


def fastchat_judgments(
    header: dict[str, Any], records: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Our judgments as FastChat's ``model_judgment/<judge>_single.jsonl`` lines, so its
    ``show_result.py --mode single`` can recompute the scores from our file."""
    model = str(header.get("spec_name"))
    return [
        {
            "question_id": r["question_id"],
            "model": model,
            "judge": j["judge"],
            "user_prompt": j["user_prompt"],
            "judgment": j["judgment"],
            "score": j["score"],
            "turn": j["turn"],
            "tstamp": r.get("tstamp", time.time()),
        }
        for r in sorted(_done(records), key=lambda r: r["question_id"])
        for j in r.get("judgments", [])
    ]


def export(results: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write ``results`` in ``fmt``; default path next to the results file. ``fastchat``
    also writes the judgments to ``model_judgment/<judge>_single.jsonl`` beside the answers'
    ``model_answer/`` folder."""
    header, records = read_results(results)
    base = Path(results)
    if fmt == "alpaca_eval":
        path = Path(out) if out else base.with_name(base.stem + ".model_outputs.json")
        text = json.dumps(alpaca_eval(header, records), indent=2, ensure_ascii=False)
    elif fmt == "fastchat":
        # FastChat reads model_answer/<model id>.jsonl
        name = f"{header.get('spec_name')}.jsonl"
        path = Path(out) if out else base.parent / "model_answer" / name
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fastchat(header, records))
        judge = str(header.get("judge") or "judge").partition(":")[2] or "judge"
        judged = path.parent.parent / "model_judgment" / f"{judge.replace('/', '_')}_single.jsonl"
        judged.parent.mkdir(parents=True, exist_ok=True)
        judged.write_text(
            "".join(
                json.dumps(j, ensure_ascii=False) + "\n"
                for j in fastchat_judgments(header, records)
            ),
            encoding="utf-8",
        )
    else:
        raise MoAError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
