"""Benchmark data: the MT-Bench copy shipped in this package, and user files (GSM8K JSONL,
pairwise prompts, AlpacaEval-format reference outputs).

Every loader raises ``MoAError`` naming the file and line, so a bad file never ends in a
traceback and never after models were already paid for.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from langgraph_moa.errors import MoAError

MT_BENCH = files("langgraph_moa.eval").joinpath("data", "mt_bench")
"""The MT-Bench questions, GPT-4 reference answers and judge prompts (FastChat, Apache-2.0)."""

NEED_REF_CATS = ("math", "reasoning", "coding")
"""Categories graded against a reference answer (FastChat ``common.NEED_REF_CATS``)."""


def _read_jsonl(text: str, source: str) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MoAError(f"{source}:{i}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise MoAError(f"{source}:{i}: expected a JSON object")
        rows.append(row)
    return rows


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MoAError(f"cannot read {str(path)!r}: {exc.strerror}") from None


def mt_bench_questions(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The 80 questions (``question_id``, ``category``, ``turns``), or those of ``path``."""
    if path is None:
        text, source = MT_BENCH.joinpath("question.jsonl").read_text("utf-8"), "question.jsonl"
    else:
        text, source = _read(path), str(path)
    rows = _read_jsonl(text, source)
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("turns"), list) or "question_id" not in row:
            raise MoAError(f"{source}: question {i} needs 'question_id' and 'turns'")
        row.setdefault("category", "general")
    return rows


def mt_bench_references(path: str | Path | None = None) -> dict[int, list[str]]:
    """GPT-4 reference answers by question id (FastChat ``model_answer`` format)."""
    if path is None:
        ref = MT_BENCH.joinpath("reference_answer", "gpt-4.jsonl")
        text, source = ref.read_text("utf-8"), "reference_answer/gpt-4.jsonl"
    else:
        text, source = _read(path), str(path)
    return {r["question_id"]: r["choices"][0]["turns"] for r in _read_jsonl(text, source)}


def judge_prompts() -> dict[str, dict[str, Any]]:
    """FastChat's judge prompts by name (``single-v1``, ``single-math-v1-multi-turn``...)."""
    text = MT_BENCH.joinpath("judge_prompts.jsonl").read_text("utf-8")
    return {p["name"]: p for p in _read_jsonl(text, "judge_prompts.jsonl")}


def gsm8k(path: str | Path) -> list[dict[str, Any]]:
    """GSM8K-format JSONL: ``question`` and ``answer`` (ending in ``#### N``)."""
    rows = _read_jsonl(_read(path), str(path))
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise MoAError(f"{path}: row {i} needs string fields 'question' and 'answer'")
        if "####" not in row["answer"]:
            raise MoAError(f"{path}: row {i}: 'answer' has no '#### N' final answer")
    return rows


def instructions(path: str | Path) -> list[str]:
    """Pairwise prompts: a JSON list (AlpacaEval's ``instruction`` objects or strings), JSONL
    with ``instruction`` (or ``prompt``/``question``), or plain text with one prompt a line."""
    text = _read(path)
    rows: list[Any]
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MoAError(f"{path}: not valid JSON ({exc.msg})") from None
    elif stripped.startswith("{"):
        rows = _read_jsonl(text, str(path))
    else:
        rows = [line for line in text.splitlines() if line.strip()]
    out = []
    for i, row in enumerate(rows, 1):
        if isinstance(row, dict):
            row = next((row[k] for k in ("instruction", "prompt", "question") if k in row), None)
        if not isinstance(row, str) or not row.strip():
            raise MoAError(f"{path}: prompt {i} is empty or has no 'instruction'")
        out.append(row)
    if not out:
        raise MoAError(f"{path}: no prompts")
    return out


def alpaca_outputs(path: str | Path) -> tuple[dict[str, str], str]:
    """AlpacaEval-format outputs (a JSON list of ``instruction``/``output``/``generator``) as
    instruction -> output, and the generator's name (the pairwise baseline)."""
    try:
        rows = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise MoAError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(rows, list):
        raise MoAError(f"{path}: expected a JSON list of AlpacaEval outputs")
    out: dict[str, str] = {}
    generators = set()
    for i, row in enumerate(rows, 1):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("instruction"), str)
            or not (isinstance(row.get("output"), str))
        ):
            raise MoAError(f"{path}: entry {i} needs string 'instruction' and 'output'")
        out[row["instruction"]] = row["output"]
        generators.add(str(row.get("generator", Path(path).stem)))
    return out, "+".join(sorted(generators)) or Path(path).stem


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (what a result file was made with)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
