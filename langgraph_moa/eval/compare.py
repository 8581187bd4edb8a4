"""``moa eval compare``: one table across result files and a PNG of score against cost per
spec, like the paper's cost figure (Figure 5: LC win rate vs cost). Where a file has no
price for some call its cost is unknown, so the plot falls back to tokens per item and
says so on its axis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from langgraph_moa.eval.store import read_all
from langgraph_moa.eval.summary import _fmt, summarize

SCORE_LABEL = {
    "mt-bench": "MT-Bench score (1-10)",
    "pairwise": "LC win rate (%)",
    "gsm8k": "GSM8K flexible accuracy (%)",
}


def load(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        header, records, journal = read_all(path)
        summary = summarize(header, records, journal)
        summary["file"] = str(path)
        out.append(summary)
    return out


def plotted_score(s: dict[str, Any]) -> float | None:
    return s.get("lc_win_rate") if s["eval"] == "pairwise" else s.get("score")


def per_item(s: dict[str, Any]) -> tuple[float | None, float]:
    """(USD per item or None, tokens per item) of the answering model (judge excluded)."""
    n = max(1, s["completed"])
    u = s["moa"]
    cost = u["cost_usd"] / n if u["cost_usd"] is not None else None
    return cost, (u["input_tokens"] + u["output_tokens"]) / n


def render(summaries: list[dict[str, Any]]) -> str:
    head = [
        "spec",
        "eval",
        "judge",
        "items",
        "score",
        "LC",
        "calls",
        "tok in",
        "tok out",
        "cost $",
        "$/item",
        "p50 s",
        "p95 s",
    ]
    rows = [head]
    for s in summaries:
        cost, _ = per_item(s)
        rows.append(
            [
                str(s["spec_name"]),
                s["eval"],
                str(s["judge"] or "-"),
                str(s["completed"]),
                _fmt(s["score"]),
                _fmt(s.get("lc_win_rate")),
                str(s["moa"]["calls"]),
                str(s["moa"]["input_tokens"]),
                str(s["moa"]["output_tokens"]),
                _fmt(s["moa"]["cost_usd"], 4),
                _fmt(cost, 5),
                _fmt(s["latency_p50_s"]),
                _fmt(s["latency_p95_s"]),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, score) points no other point beats on both (cheaper and at least as good),
    by increasing cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def plot(summaries: list[dict[str, Any]], out: str | Path) -> Path:
    """Score vs cost per spec (one point each), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: list[tuple[dict[str, Any], float | None, float, float]] = []
    for s in summaries:
        score = plotted_score(s)
        if score is not None and not math.isnan(score):
            points.append((s, *per_item(s), score))
    use_cost = bool(points) and all(cost is not None for _, cost, _, _ in points)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)

    def x_of(cost: float | None, tokens: float) -> float:
        return float(cost) if use_cost and cost is not None else float(tokens)

    for s, cost, tokens, score in points:
        x = x_of(cost, tokens)
        ax.scatter([x], [score], s=50)
        ax.annotate(str(s["spec_name"]), (x, score), textcoords="offset points", xytext=(5, 5))
    front = pareto_front([(x_of(c, t), score) for _, c, t, score in points])
    if len(front) > 1:  # the paper's figure connects the cost-quality frontier
        ax.plot(*zip(*front, strict=True), "--", color="gray", linewidth=1, zorder=0)
    ax.set_xlabel("cost per item (USD)" if use_cost else "tokens per item (no prices known)")
    evals = sorted({s["eval"] for s in summaries})
    ax.set_ylabel(SCORE_LABEL[evals[0]] if len(evals) == 1 else "score")
    judges = sorted({str(s["judge"]) for s in summaries if s["judge"]})
    ax.set_title(f"{', '.join(evals)}; judge: {', '.join(judges) or '-'}", fontsize=9)
    ax.margins(x=0.25, y=0.15)  # room for the labels
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
