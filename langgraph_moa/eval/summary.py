"""Summaries of a result file: the score(s) of its eval, and what it cost to get them
(calls, tokens in/out, USD where every call has a price, p50/p95 latency per item).

Everything is derived from the records, so a resumed or partial file summarises the same
way, and ``moa eval compare`` reads any result file without re-running anything.
"""

from __future__ import annotations

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


def mt_bench(records: list[dict[str, Any]]) -> dict[str, Any]:
    """FastChat ``show_result --mode single``: mean score per turn, per category (both
    turns) and overall, over the ratings that parsed (score -1 excluded and counted)."""
    by_turn: dict[int, list[float]] = defaultdict(list)
    by_cat: dict[str, list[float]] = defaultdict(list)
    unparsable = 0
    for rec in records:
        for j in rec.get("judgments", []):
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
        "judgments": len(every) + unparsable,
        "unparsable": unparsable,
    }


def pairwise(records: list[dict[str, Any]]) -> dict[str, Any]:
    from langgraph_moa.eval import length_control  # numpy: the `eval` extra, only when used

    outcomes = [r["winner"] for r in records if r.get("winner")]
    judged = [r for r in records if r.get("winner") in ("model", "baseline", "tie")]
    rate = win_rate(outcomes)
    lc = length_control.fit(
        [{"model": 1.0, "tie": 0.5, "baseline": 0.0}[r["winner"]] for r in judged],
        [len(r["output"]) - len(r["baseline_output"]) for r in judged],
    )
    return {
        "score": rate["win_rate"],
        **rate,
        "lc_win_rate": lc["lc_win_rate"],
        "lc_model": lc,
        "wins": outcomes.count("model"),
        "losses": outcomes.count("baseline"),
        "ties": outcomes.count("tie"),
        "unparsable": outcomes.count("error"),
        "avg_length": _mean([len(r["output"]) for r in judged]),
        "baseline_avg_length": _mean([len(r["baseline_output"]) for r in judged]),
    }


def gsm8k(records: list[dict[str, Any]]) -> dict[str, Any]:
    graded = [r for r in records if "strict_correct" in r]
    n = len(graded)
    strict = 100 * sum(r["strict_correct"] for r in graded) / n if n else None
    flexible = 100 * sum(r["flexible_correct"] for r in graded) / n if n else None
    return {"score": flexible, "strict_accuracy": strict, "flexible_accuracy": flexible, "n": n}


SCORERS = {"mt-bench": mt_bench, "pairwise": pairwise, "gsm8k": gsm8k}


def summarize(header: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole summary of a result file (header + records)."""
    rows = list(records.values())
    ok = [r for r in rows if not r.get("error")]
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
        **SCORERS[header["eval"]](ok),
        "moa": usage([c for r in rows for c in r.get("calls", [])]),
        "baseline": usage([c for r in rows for c in r.get("baseline_calls", [])]),
        "judge_usage": usage(judge_calls),
        "all_calls": usage(moa_calls + judge_calls),
        "errors": dict(Counter(str(r["error"]) for r in rows if r.get("error")).most_common(5)),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
    }
    return out


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
        rows += [
            ("score (1-10)", _fmt(s["score"])),
            ("turn 1", _fmt(s["turn_1"])),
            ("turn 2", _fmt(s["turn_2"])),
        ]
        rows += [(f"  {cat}", _fmt(v)) for cat, v in s["categories"].items()]
        rows += [("unparsable judgments", f"{s['unparsable']} of {s['judgments']}")]
    elif s["eval"] == "pairwise":
        rows += [
            ("baseline", str(s.get("baseline_name"))),
            (
                "win rate %",
                f"{_fmt(s['win_rate'], 1)} (95% CI {_fmt(s['ci_low'], 1)}"
                f"-{_fmt(s['ci_high'], 1)}, n={s['n']})",
            ),
            ("LC win rate %", _fmt(s["lc_win_rate"], 1)),
            ("wins/ties/losses", f"{s['wins']}/{s['ties']}/{s['losses']}"),
            ("unparsable verdicts", str(s["unparsable"])),
            (
                "avg length (chars)",
                f"{_fmt(s['avg_length'], 0)} vs baseline {_fmt(s['baseline_avg_length'], 0)}",
            ),
        ]
    else:
        rows += [
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
    for reason, count in s.get("errors", {}).items():
        rows.append(("failed", f"{count} x {reason[:120]}"))
    rows.append(
        ("latency/item p50/p95", f"{_fmt(s['latency_p50_s'])} s / {_fmt(s['latency_p95_s'])} s")
    )
    return table(rows)
