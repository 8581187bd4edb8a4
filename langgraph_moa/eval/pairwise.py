"""AlpacaEval-style pairwise preference of a MoA spec over a baseline (another spec, or an
AlpacaEval-format outputs file), judged with FastChat's ``pair-v2`` prompt in both orders
to cancel position bias:

- game 1 shows (A = model, B = baseline), game 2 (A = baseline, B = model);
- the model wins only if both games pick it, loses only if both pick the baseline; any
  disagreement or a tie is a tie (preference 0.5); a verdict the judge did not give in
  FastChat's ``[[A]]``/``[[B]]``/``[[C]]`` form makes the item an ``error`` (reported,
  excluded).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph_moa.eval.judge import Judge, parse_verdict

PREFERENCE = {"model": 1.0, "tie": 0.5, "baseline": 0.0}


def combine(g1: str, g2: str) -> str:
    """Verdicts of game 1 (model is A) and game 2 (model is B) -> model/baseline/tie/error."""
    if "error" in (g1, g2):
        return "error"
    one = {"A": "model", "B": "baseline", "tie": "tie"}[g1]
    two = {"A": "baseline", "B": "model", "tie": "tie"}[g2]
    return one if one == two else "tie"


def win_rate(outcomes: list[str]) -> dict[str, float]:
    """Win rate (ties count half) in percent with a normal-approximation 95% interval
    (± 1.96 standard errors of the mean preference, as AlpacaEval's ``standard_error``)."""
    prefs = [PREFERENCE[o] for o in outcomes if o in PREFERENCE]
    n = len(prefs)
    if n == 0:
        return {
            "win_rate": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "standard_error": float("nan"),
            "n": 0,
        }
    mean = sum(prefs) / n
    var = sum((p - mean) ** 2 for p in prefs) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n)
    return {
        "win_rate": 100 * mean,
        "standard_error": 100 * se,
        "ci_low": 100 * max(0.0, mean - 1.96 * se),
        "ci_high": 100 * min(1.0, mean + 1.96 * se),
        "n": n,
    }


async def run_prompt(
    instruction: str,
    answer: Callable[[str], Awaitable[dict[str, Any]]],
    baseline: Callable[[str], Awaitable[dict[str, Any]]],
    judge: Judge,
    template: dict[str, Any],
    previous: dict[str, Any] | None = None,
    journal: Any = None,
) -> dict[str, Any]:
    """Both answers (concurrently), both judge games; the record written to the result file.

    ``previous``: this prompt's record from an interrupted run; if both answers are in it
    (only the judge failed) they are reused, not paid for again."""
    if previous and previous.get("output") is not None and previous.get("baseline_output"):
        mine = {
            "answer": previous["output"],
            "calls": previous["calls"],
            "latency_s": previous["latency_s"],
            "error": None,
        }
        base = {
            "answer": previous["baseline_output"],
            "calls": previous["baseline_calls"],
            "latency_s": None,
            "error": None,
        }
    else:
        mine, base = await asyncio.gather(answer(instruction), baseline(instruction))
    record: dict[str, Any] = {
        "instruction": instruction,
        "output": mine["answer"],
        "baseline_output": base["answer"],
        "calls": mine["calls"],
        "baseline_calls": base["calls"],
        "latency_s": mine["latency_s"],
        "judgments": [],
        "judge_calls": [],
        "winner": None,
        "error": mine["error"] or base["error"],
    }
    if record["error"]:
        return record
    verdicts = []
    for game, (a, b) in enumerate([(mine, base), (base, mine)], 1):
        user = str(template["prompt_template"]).format(
            question=instruction, answer_a=a["answer"], answer_b=b["answer"]
        )
        judgment, call = await judge(str(template["system_prompt"]), user)
        if journal is not None:
            journal([call])
        verdict = parse_verdict(judgment)
        verdicts.append(verdict)
        record["judge_calls"].append(call)
        record["judgments"].append(
            {
                "game": game,
                "judge": [judge.name, template["name"]],
                "user_prompt": user,
                "judgment": judgment,
                "verdict": verdict,
                "error": call.get("error"),
            }
        )
    record["winner"] = combine(*verdicts)
    if errors := [j["error"] for j in record["judgments"] if j["error"]]:
        record["error"] = f"judge: {errors[0]}"
    return record
