"""GSM8K: the MoA graph answers each question; the final number is extracted two ways and
compared exactly (as numbers) with the reference after ``####``:

- strict: the number after ``#### `` in the answer (the format the prompt asks for);
- flexible: the last number anywhere in the answer.

Commas, ``$`` and a trailing period are ignored ("$1,234." == 1234); "18.00" == "18".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_moa.eval.answer import moa_answer

PROMPT_SUFFIX = (
    "\n\nSolve the problem step by step. End with the final answer on its own line in the"
    " form '#### <number>'."
)
"""Appended to every question so the strict '#### N' extraction has a format to find."""

STRICT = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")


def normalize(text: str | None) -> Decimal | None:
    """A number as ``Decimal`` with commas, ``$`` and a trailing period removed; None if it
    is not a number."""
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def extract_strict(answer: str) -> str | None:
    match = STRICT.search(answer)
    return match.group(1) if match else None


def extract_flexible(answer: str) -> str | None:
    numbers = NUMBER.findall(answer)
    return numbers[-1] if numbers else None


def reference_number(answer: str) -> Decimal | None:
    return normalize(answer.rsplit("####", 1)[-1])


def grade(answer: str, reference: str) -> dict[str, Any]:
    target = reference_number(reference)
    strict, flexible = extract_strict(answer), extract_flexible(answer)
    return {
        "target": str(target),
        "strict": strict,
        "flexible": flexible,
        "strict_correct": target is not None and normalize(strict) == target,
        "flexible_correct": target is not None and normalize(flexible) == target,
    }


async def run_problem(graph: CompiledStateGraph, row: dict[str, Any]) -> dict[str, Any]:
    result = await moa_answer(graph, [("user", row["question"] + PROMPT_SUFFIX)])
    record: dict[str, Any] = {
        "question": row["question"],
        "reference": row["answer"],
        "output": result["answer"],
        "calls": result["calls"],
        "latency_s": result["latency_s"],
        "error": result["error"],
    }
    if result["answer"] is not None:
        record.update(grade(result["answer"], row["answer"]))
    return record
