"""Summaries of a result file: the score(s) of its eval, and what it cost to get them
(calls, tokens in/out, USD where every call has a price, p50/p95 latency per item).

Everything is derived from the records, so a resumed or partial file summarises the same
way, and ``moa eval compare`` reads any result file without re-running anything.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from typing import Any

from langgraph_moa.eval.pairwise import win_rate


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def usage(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls, tokens and cost of a list of call records (cost None unless all are priced)."""
    return {
        "calls": len(calls),
        "input_tokens": sum(int(c.get("input_tokens") or 0) for c in calls),
        "output_tokens": sum(int(c.get("output_tokens") or 0) for c in calls),
        "cost_usd": sum(c["cost_usd"] for c in calls)
        if calls and all(c.get("cost_usd") is not None for c in calls)
        else None,
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def answered(rec: dict[str, Any]) -> bool:
    """An MT-Bench record whose answers are complete: it is scored (and exported) even when
    a judge call failed, as FastChat keeps the turn that was judged."""
    return bool(rec.get("turns")) and len(rec["turns"]) == len(rec.get("prompt_turns") or [])


def mt_bench(header: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """FastChat ``show_result --mode single``: mean score per turn, per category (both
    turns) and overall, over the ratings that parsed (score -1 excluded and counted: an
    unparsable rating, or a judge call that failed)."""
    by_turn: dict[int, list[float]] = defaultdict(list)
    by_cat: dict[str, list[float]] = defaultdict(list)
    unparsable = judge_failures = 0
    for rec in records:
        for j in rec.get("judgments", []):
            if j.get("error"):
                judge_failures += 1
                continue
            if j["score"] < 0:
                unparsable += 1
                continue
            by_turn[j["turn"]].append(j["score"])
            by_cat[rec["category"]].append(j["score"])
    every = [s for scores in by_turn.values() for s in scores]
    return {
        "score": _mean(every),
        "turn_1": _mean(by_turn[1]),
        "turn_2": _mean(by_turn[2]),
        "categories": {c: _mean(s) for c, s in sorted(by_cat.items())},
        "judgments": len(every) + unparsable + judge_failures,
        "unparsable": unparsable,
        "judge_failures": judge_failures,
        "questions": len(records),
    }


LEADERBOARD_JUDGES = ("gpt-4", "gpt-4-0613")
"""The MT-Bench leaderboard's judge: FastChat's default ``--judge-model gpt-4``."""


def mt_bench_comparable(header: dict[str, Any], scored: dict[str, Any]) -> list[str]:
    """Why these MT-Bench numbers are not comparable with the leaderboard (empty: they are):
    GPT-4 judge, FastChat's generation protocol, all 80 shipped questions answered and every
    turn judged."""
    from langgraph_moa.eval.judge import fastchat_name

    why = []
    judge = str(header.get("judge") or "")
    if fastchat_name(judge) not in LEADERBOARD_JUDGES or not judge.startswith("openai:"):
        why.append(f"judge {judge} is not GPT-4 (openai:gpt-4)")
    if header.get("generation", "spec") != "fastchat":
        why.append("generation protocol is the spec's own, not FastChat's (--generation spec)")
    if header.get("question_file"):
        why.append("questions are not the shipped MT-Bench 80 (--question-file)")
    if scored.get("questions", 0) < 80:
        why.append(f"{scored.get('questions', 0)} of 80 questions answered")
    if scored.get("judge_failures"):
        why.append(f"{scored['judge_failures']} judge call(s) failed (rerun to retry them)")
    return why


PREFERENCE = {"model": 2.0, "tie": 1.5, "baseline": 1.0}
"""Our pairwise outcome as AlpacaEval's ``preference`` (2: output_2, ours, is preferred)."""


def alpaca_annotations(
    header: dict[str, Any], records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The judged prompts as AlpacaEval's ``annotations.json`` rows: ``output_1`` is the
    baseline's, ``output_2`` ours, ``preference`` 1/2/1.5, ``index`` the prompt's position."""
    from langgraph_moa.eval.judge import fastchat_name

    annotator = f"{fastchat_name(str(header.get('judge') or 'judge'))}_pair-v2_both_orders"
    rows = []
    for pos, r in enumerate(records):
        if r.get("winner") not in PREFERENCE:
            continue
        rows.append(
            {
                "instruction": r["instruction"],
                "output_1": r["baseline_output"],
                "generator_1": str(header.get("baseline")),
                "output_2": r["output"],
                "generator_2": str(header.get("spec_name")),
                "annotator": annotator,
                "preference": PREFERENCE[r["winner"]],
                "index": r.get("index", pos),
            }
        )
    return rows


def pairwise(header: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    from langgraph_moa.eval import length_control  # scikit-learn: the `eval` extra

    outcomes = [r["winner"] for r in records if r.get("winner")]
    judged = [r for r in records if r.get("winner") in ("model", "baseline", "tie")]
    rate = win_rate(outcomes)
    gamed = header.get("alpaca_eval_gamed")
    lc = length_control.lc_win_rate(alpaca_annotations(header, records), gamed)
    return {
        "score": rate["win_rate"],
        **rate,
        "lc_win_rate": lc["lc_win_rate"],
        "lc_standard_error": lc["lc_standard_error"],
        "lc_variant": lc["variant"],
        "wins": outcomes.count("model"),
        "losses": outcomes.count("baseline"),
        "ties": outcomes.count("tie"),
        "unparsable": outcomes.count("error"),
        "avg_length": _mean([len(r["output"]) for r in judged]),
        "baseline_avg_length": _mean([len(r["baseline_output"]) for r in judged]),
    }


def gsm8k(header: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    graded = [r for r in records if "strict_correct" in r]
    n = len(graded)
    strict = 100 * sum(r["strict_correct"] for r in graded) / n if n else None
    flexible = 100 * sum(r["flexible_correct"] for r in graded) / n if n else None
    return {
        "score": flexible,
        "strict_accuracy": strict,
        "flexible_accuracy": flexible,
        "n": n,
        "task": header.get("task", "gsm8k"),
        "fewshot": "one user message" if header.get("fewshot_single_turn") else "multi-turn",
    }


SCORERS = {"mt-bench": mt_bench, "pairwise": pairwise, "gsm8k": gsm8k}


CALL_LISTS = ("calls", "baseline_calls", "judge_calls")


def repeated_calls(
    rows: list[dict[str, Any]], journal: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The journaled calls that no final record holds: paid for by an attempt that a resume
    replaced (an item killed in flight, an answer or a judge call that failed and was made
    again). Matched per item as a multiset of identical call records."""
    kept: Counter[str] = Counter(
        _key(str(r.get("id")), c) for r in rows for k in CALL_LISTS for c in r.get(k) or []
    )
    extra = []
    for call in journal:
        key = _key(str(call.get("id")), {k: v for k, v in call.items() if k != "id"})
        if kept[key] > 0:
            kept[key] -= 1
        else:
            extra.append(call)
    return extra


def _key(item: str, call: dict[str, Any]) -> str:
    return item + "\0" + json.dumps(call, sort_keys=True, default=str)


def summarize(
    header: dict[str, Any],
    records: dict[str, dict[str, Any]],
    journal: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole summary of a result file (header, records, and its call journal)."""
    rows = list(records.values())
    ok = [r for r in rows if not r.get("error")]
    scored = [r for r in rows if answered(r)] if header["eval"] == "mt-bench" else ok
    moa_calls = [c for r in rows for c in r.get("calls", []) + r.get("baseline_calls", [])]
    judge_calls = [c for r in rows for c in r.get("judge_calls", [])]
    latencies = [float(r["latency_s"]) for r in ok if r.get("latency_s") is not None]
    out: dict[str, Any] = {
        "eval": header["eval"],
        "spec_name": header.get("spec_name"),
        "judge": header.get("judge"),
        "baseline_name": header.get("baseline"),
        "items": len(rows),
        "completed": len(ok),
        "failed": len(rows) - len(ok),
        **SCORERS[header["eval"]](header, scored),
        "moa": usage([c for r in rows for c in r.get("calls", [])]),
        "baseline": usage([c for r in rows for c in r.get("baseline_calls", [])]),
        "judge_usage": usage(judge_calls),
        "all_calls": usage(moa_calls + judge_calls),
        "repeated": usage([]),
        "errors": dict(Counter(str(r["error"]) for r in rows if r.get("error")).most_common(5)),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
    }
    if journal:
        extra = repeated_calls(rows, journal)
        out["repeated"] = usage(extra)
        out["all_calls"] = usage(moa_calls + judge_calls + extra)
    if header["eval"] == "mt-bench":
        out["generation"] = header.get("generation", "spec")
        out["not_comparable"] = mt_bench_comparable(header, out)
        out["leaderboard_comparable"] = not out["not_comparable"]
    return out


GENERATION_LABEL = {
    "fastchat": "FastChat protocol: per-category temperature, 1024 new tokens, every model",
    "spec": "the spec's own temperature and max_tokens (--generation spec)",
}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def render(summary: dict[str, Any]) -> str:
    """The summary as a plain two-column table (printed and saved next to the results)."""
    s = summary
    rows: list[tuple[str, str]] = [
        ("eval", s["eval"]),
        ("spec", str(s["spec_name"])),
        ("judge", str(s["judge"] or "-")),
        ("items", f"{s['completed']} completed, {s['failed']} failed of {s['items']}"),
    ]
    if s["eval"] == "mt-bench":
        comparable = (
            "yes, with the MT-Bench leaderboard (GPT-4 judge, FastChat protocol, 80 questions)"
            if s["leaderboard_comparable"]
            else "not with the MT-Bench leaderboard: " + "; ".join(s["not_comparable"])
        )
        rows += [
            ("generation", GENERATION_LABEL.get(s["generation"], s["generation"])),
            ("comparable", comparable),
            ("score (1-10)", _fmt(s["score"])),
            ("turn 1", _fmt(s["turn_1"])),
            ("turn 2", _fmt(s["turn_2"])),
        ]
        rows += [(f"  {cat}", _fmt(v)) for cat, v in s["categories"].items()]
        rows += [("unparsable judgments", f"{s['unparsable']} of {s['judgments']}")]
        rows += [("failed judge calls", f"{s['judge_failures']} of {s['judgments']} (score -1)")]
    elif s["eval"] == "pairwise":
        rows += [
            ("baseline", str(s.get("baseline_name"))),
            (
                "win rate %",
                f"{_fmt(s['win_rate'], 1)} (95% CI {_fmt(s['ci_low'], 1)}"
                f"-{_fmt(s['ci_high'], 1)}, n={s['n']})",
            ),
            (
                "LC win rate %",
                f"{_fmt(s['lc_win_rate'], 1)} (SE {_fmt(s['lc_standard_error'], 1)};"
                f" {s['lc_variant']})",
            ),
            ("wins/ties/losses", f"{s['wins']}/{s['ties']}/{s['losses']}"),
            ("unparsable verdicts", str(s["unparsable"])),
            (
                "avg length (chars)",
                f"{_fmt(s['avg_length'], 0)} vs baseline {_fmt(s['baseline_avg_length'], 0)}",
            ),
        ]
    else:
        rows += [
            ("task", f"lm-evaluation-harness {s['task']}, few-shot {s['fewshot']}"),
            ("strict accuracy %", _fmt(s["strict_accuracy"], 1)),
            ("flexible accuracy %", _fmt(s["flexible_accuracy"], 1)),
        ]
    for label, key in (("MoA", "moa"), ("baseline", "baseline"), ("judge", "judge_usage")):
        u = s[key]
        if u["calls"]:
            rows.append(
                (
                    f"{label} calls",
                    f"{u['calls']} calls, {u['input_tokens']} in /"
                    f" {u['output_tokens']} out tokens, cost "
                    + (
                        f"${u['cost_usd']:.4f}"
                        if u["cost_usd"] is not None
                        else "unknown (no price)"
                    ),
                )
            )
    rep = s.get("repeated") or {}
    if rep.get("calls"):
        cost = f"${rep['cost_usd']:.4f}" if rep["cost_usd"] is not None else "unknown (no price)"
        rows.append(
            (
                "repeated by resume",
                f"{rep['calls']} calls, {rep['input_tokens']} in / {rep['output_tokens']} out"
                f" tokens, cost {cost} (in the total below)",
            )
        )
    total = s["all_calls"]
    if total["calls"]:
        cost = (
            f"${total['cost_usd']:.4f}" if total["cost_usd"] is not None else "unknown (no price)"
        )
        rows.append(("total calls", f"{total['calls']} calls, cost {cost}"))
    for reason, count in s.get("errors", {}).items():
        rows.append(("failed", f"{count} x {reason[:120]}"))
    rows.append(
        ("latency/item p50/p95", f"{_fmt(s['latency_p50_s'])} s / {_fmt(s['latency_p95_s'])} s")
    )
    return table(rows)
