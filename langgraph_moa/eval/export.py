"""Hand our results to the official tools, in files they read without editing:

- ``alpaca_eval``: AlpacaEval's ``model_outputs.json`` (a JSON list of ``instruction``,
  ``output``, ``generator``: pairwise and GSM8K results, MT-Bench's first turns); for pairwise
  results also ``annotations.json`` (``instruction``, ``output_1`` the baseline's,
  ``generator_1``, ``output_2`` ours, ``generator_2``, ``annotator``, ``preference`` 1/2/1.5,
  ``index``: what ``get_length_controlled_winrate`` reads) and the leaderboard row
  (``leaderboard.csv`` in AlpacaEval's columns, our row replaced, other rows kept);
- ``fastchat``: FastChat ``llm_judge``'s ``model_answer/<model>.jsonl`` and
  ``model_judgment/<judge>_single.jsonl`` (judge named as FastChat names it: ``gpt-4``), each
  MERGED into what the folder holds: only our model's lines are replaced, so exporting into a
  FastChat data folder keeps every other model's answers and judgments.

A judge call that failed is exported as FastChat writes it: that turn's line with judgment
``$ERROR$`` and score -1. A partial MT-Bench export (fewer than 80 answers) is noted:
FastChat's ``gen_judgment`` cannot re-judge it (``check_data`` asserts every answer exists).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from langgraph_moa.errors import MoAError
from langgraph_moa.eval import data
from langgraph_moa.eval.judge import fastchat_name
from langgraph_moa.eval.store import read_all
from langgraph_moa.eval.summary import alpaca_annotations, answered, summarize

FORMATS = ("alpaca_eval", "fastchat")

LEADERBOARD_COLUMNS = (
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
    "mode",
    "avg_length",
    "length_controlled_winrate",
    "lc_standard_error",
)
"""AlpacaEval's ``leaderboard.csv`` columns (after the unnamed model-name column)."""


def _done(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records.values() if not r.get("error")]


def alpaca_eval(header: dict[str, Any], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    generator = str(header.get("spec_name"))
    out = []
    if header["eval"] == "mt-bench":
        for r in records.values():
            if answered(r):
                first = {"instruction": r["prompt_turns"][0], "output": r["turns"][0]}
                out.append({**first, "generator": generator})
        return out
    for r in _done(records):
        instruction = r.get("instruction") or r.get("question")
        out.append({"instruction": instruction, "output": r["output"], "generator": generator})
    return out


def leaderboard_row(summary: dict[str, Any]) -> dict[str, Any]:
    """Our pairwise summary in AlpacaEval's leaderboard columns."""
    return {
        "win_rate": summary["win_rate"],
        "standard_error": summary["standard_error"],
        "n_wins": summary["wins"],
        "n_wins_base": summary["losses"],
        "n_draws": summary["ties"],
        "n_total": summary["n"],
        "discrete_win_rate": summary["win_rate"],  # our preferences are discrete already
        "mode": "community",
        "avg_length": int(summary["avg_length"] or 0),
        "length_controlled_winrate": summary["lc_win_rate"],
        "lc_standard_error": summary["lc_standard_error"],
    }


def _merge_leaderboard(path: Path, name: str, row: dict[str, Any]) -> str:
    rows: dict[str, dict[str, Any]] = {}
    if path.exists():
        for old in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
            rows[old.get("") or ""] = {k: old.get(k, "") for k in LEADERBOARD_COLUMNS}
    rows[name] = row
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", *LEADERBOARD_COLUMNS])
    for key, values in rows.items():
        writer.writerow([key, *(values.get(c, "") for c in LEADERBOARD_COLUMNS)])
    return out.getvalue()


def _answer_id(model: str, r: dict[str, Any]) -> str:
    return data.fingerprint(model, r["question_id"], r["turns"]) + "000000"


def fastchat(header: dict[str, Any], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``model_answer/<model>.jsonl`` lines (``gen_model_answer``'s format)."""
    if header["eval"] != "mt-bench":
        raise MoAError("--export fastchat needs MT-Bench results (FastChat model_answer)")
    model = str(header.get("spec_name"))
    rows = sorted((r for r in records.values() if answered(r)), key=lambda r: r["question_id"])
    return [
        {
            "question_id": r["question_id"],
            "answer_id": _answer_id(model, r),
            "model_id": model,
            "choices": [{"index": 0, "turns": r["turns"]}],
            "tstamp": r.get("tstamp", 0.0),
        }
        for r in rows
    ]


def fastchat_judgments(
    header: dict[str, Any], records: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Our judgments as FastChat's ``model_judgment/<judge>_single.jsonl`` lines (what
    ``play_a_match_single`` writes), so ``show_result.py --mode single`` reads our scores."""
    model = str(header.get("spec_name"))
    rows = sorted((r for r in records.values() if answered(r)), key=lambda r: r["question_id"])
    return [
        {
            "question_id": r["question_id"],
            "model": model,
            "judge": [fastchat_name(str(j["judge"][0])), j["judge"][1]],
            "user_prompt": j["user_prompt"],
            "judgment": j["judgment"],
            "score": j["score"],
            "turn": j["turn"],
            "tstamp": r.get("tstamp", 0.0),
        }
        for r in rows
        for j in sorted(r.get("judgments", []), key=lambda j: j["turn"])
    ]


def _merge_jsonl(path: Path, ours: list[dict[str, Any]], field: str, model: str) -> str:
    """``path``'s lines of other models, then ours (only ``field == model`` lines replaced)."""
    kept = []
    if path.exists():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise MoAError(f"{path}:{i}: not valid JSON; refusing to merge into it") from None
            if row.get(field) != model:
                kept.append(line + "\n")
    return "".join(kept) + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ours)


def _sibling(path: Path, name: str, suffix: str) -> Path:
    if "model_outputs" in path.name:
        return path.with_name(path.name.replace("model_outputs", name).replace(".json", suffix))
    return path.with_name(f"{path.stem}.{name}{suffix}")


def export(results: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write ``results`` in ``fmt`` (default: next to the results file); returns the main
    file written and notes for the user (what else was written, what cannot be re-run)."""
    header, records, journal = read_all(results)
    base = Path(results)
    model = str(header.get("spec_name"))
    notes: list[str] = []
    if fmt == "alpaca_eval":
        path = Path(out) if out else base.with_name(base.stem + ".model_outputs.json")
        text = json.dumps(alpaca_eval(header, records), indent=2, ensure_ascii=False)
        if header["eval"] == "pairwise":
            done = _done(records)
            ann_path = _sibling(path, "annotations", ".json")
            ann_path.parent.mkdir(parents=True, exist_ok=True)
            ann_path.write_text(
                json.dumps(alpaca_annotations(header, done), indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            board = _sibling(path, "leaderboard", ".csv")
            row = leaderboard_row(summarize(header, records, journal))
            board.write_text(_merge_leaderboard(board, model, row), encoding="utf-8")
            notes += [f"annotations: {ann_path}", f"leaderboard row: {board}"]
    elif fmt == "fastchat":
        answers = fastchat(header, records)
        path = Path(out) if out else base.parent / "model_answer" / f"{model}.jsonl"
        text = _merge_jsonl(path, answers, "model_id", model)
        judge = fastchat_name(str(header.get("judge") or "judge")).replace("/", "_")
        judged = path.parent.parent / "model_judgment" / f"{judge}_single.jsonl"
        judged.parent.mkdir(parents=True, exist_ok=True)
        merged = _merge_jsonl(judged, fastchat_judgments(header, records), "model", model)
        judged.write_text(merged, encoding="utf-8")
        notes.append(f"judgments: {judged} (other models' lines kept)")
        total = int(header.get("questions_total") or 80)
        if len(answers) < total:
            notes.append(
                f"partial export: {len(answers)} of {total} answers. FastChat's gen_judgment"
                " cannot re-judge it (it requires an answer to every question);"
                " show_result.py reads the exported judgments as they are"
            )
        if header.get("question_file"):
            notes.append("questions came from --question-file, not FastChat's mt_bench set")
    else:
        raise MoAError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path, notes
