"""What the "beyond the paper" options (issue 15) save, measured on the project's test server.

    python -m benchmarks.variants

Shape: the paper's MoA (2 proposer layers of 6 + the aggregator = 13 calls) on the in-process
``OpenAIServer``; every model answers 300 words after ``--latency`` seconds. Prints a
markdown table:

* cache: a first run vs an identical re-run with the persistent ``SqliteCache`` (calls, wall);
* reference caps: the tokens every layer-2 proposer and the aggregator read, with and without
  ``reference_max_tokens`` (tokens as the server counts them: words);
* estimate: ``moa estimate``'s worst case for the same spec next to what the run used;
* rank-then-fuse: what layer 2 and the aggregator read when a judge keeps the top 3 of 6;
* Self-MoA-Seq: references cut vs read whole by an aggregator with a small context window;
* early stopping: calls and wall time of 3 layers whose answers stop changing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from langgraph_moa.cache import persistent_cache
from langgraph_moa.costs import estimate
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.models.factory import aclose_clients
from langgraph_moa.testing import Behavior, OpenAIServer

PRICE = {"input": 1.0, "output": 2.0}


def paper_spec(base_url: str, **extra: Any) -> dict[str, Any]:
    def m(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": f"openai:{name}",
            "base_url": base_url,
            "temperature": 0,
            "max_tokens": 512,
            "price": PRICE,
        }

    layer = [m(f"p{i}") for i in range(1, 7)]
    return {"layers": [layer, layer], "aggregator": m("agg"), **extra}


async def timed_run(graph: Any, question: str) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    out = await graph.ainvoke({"messages": [("user", question)]})
    return out, time.perf_counter() - start


async def main(latency: float) -> None:
    rows: list[tuple[str, str, str, str]] = []
    async with OpenAIServer(default=Behavior(latency=latency, tokens=300)) as server:
        question = "Explain the CAP theorem."
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "cache.sqlite"
            spec = paper_spec(server.base_url, cache=True)
            _, cold = await timed_run(create_moa(spec, cache=persistent_cache(db)), question)
            cold_calls = len(server.log())
            server.reset()
            _, warm = await timed_run(create_moa(spec, cache=persistent_cache(db)), question)
            rows.append(
                (
                    "persistent cache, identical re-run",
                    f"{cold_calls} calls, {cold:.2f} s",
                    f"{len(server.log())} calls, {warm:.2f} s",
                    f"{cold_calls - len(server.log())} calls, {cold - warm:.2f} s",
                )
            )
        for cap in (100, 50):
            reads: list[int] = []
            for extra in ({}, {"reference_max_tokens": cap}):
                server.reset()
                await timed_run(create_moa(paper_spec(server.base_url, **extra)), question)
                reads.append(
                    sum(r["prompt_tokens"] for r in server.log() if r["call_index"] and _reads(r))
                )
            rows.append(
                (
                    f"reference_max_tokens={cap}: tokens read by layer 2 + aggregator",
                    f"{reads[0]}",
                    f"{reads[1]}",
                    f"{reads[0] - reads[1]} ({1 - reads[1] / reads[0]:.0%})",
                )
            )
        server.reset()
        out, _ = await timed_run(create_moa(paper_spec(server.base_url)), question)
        real = sum(c["cost_usd"] for c in out["calls"])
        worst = estimate(parse_spec(paper_spec(server.base_url)), question).totals()
        rows.append(
            (
                "moa estimate vs the run (USD at $1/$2 per 1M)",
                f"worst ${worst['cost_usd']:.5f} ({worst['calls']} calls)",
                f"run ${real:.5f} ({len(out['calls'])} calls)",
                f"estimate/run = {worst['cost_usd'] / real:.2f}x (an upper bound)",
            )
        )
        rows += await rank_rows(server, question)
        rows += await window_rows(server, question)
        rows += await early_stop_rows(server, question)
    await aclose_clients()
    print(f"paper MoA shape (6+6 proposers + aggregator), {latency:g} s per call, 300-word answers")
    print("| variant | without | with | saved |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


async def _measure(server: OpenAIServer, spec: dict[str, Any], question: str) -> dict[str, Any]:
    server.reset()
    out, wall = await timed_run(create_moa(spec), question)
    return {"out": out, "wall": wall, "log": server.log(), "calls": len(server.log())}


async def rank_rows(server: OpenAIServer, question: str) -> list[tuple[str, str, str, str]]:
    """Rank-then-fuse with one judge keeping the top 3 of 6 after each layer: what layer 2
    and the aggregator read, for one extra call per layer."""
    judge = {**paper_spec(server.base_url)["aggregator"], "name": "judge", "model": "openai:judge"}
    latency = server.behavior_for("p1").latency  # the judge takes as long as anyone
    server.set_behavior(
        "judge", Behavior(latency=latency, content="RANKING: A > B > C > D > E > F")
    )
    base = await _measure(server, paper_spec(server.base_url), question)
    ranked = await _measure(
        server, paper_spec(server.base_url, rank={"judge": judge, "top_k": 3}), question
    )
    server.set_behavior("judge", None)
    reads = [
        sum(r["prompt_tokens"] for r in m["log"] if r["model"] != "judge" and _reads(r))
        for m in (base, ranked)
    ]
    return [
        (
            "rank-then-fuse (judge, top_k 3 of 6): tokens read by layer 2 + aggregator",
            f"{reads[0]} ({base['calls']} calls)",
            f"{reads[1]} ({ranked['calls']} calls)",
            f"{reads[0] - reads[1]} ({1 - reads[1] / reads[0]:.0%}) for 2 judge calls",
        )
    ]


async def window_rows(server: OpenAIServer, question: str) -> list[tuple[str, str, str, str]]:
    """Self-MoA-Seq with an aggregator of 2500 tokens: how much of the references it reads."""

    def spec(**extra: Any) -> dict[str, Any]:
        out = paper_spec(server.base_url, **extra)
        out["layers"] = out["layers"][:1]
        out["aggregator"] = {**out["aggregator"], "context_window": 2500}
        return out

    base = await _measure(server, spec(), question)
    seq = await _measure(server, spec(aggregate_window=3), question)

    def truncated(m: dict[str, Any]) -> int:
        return sum(c["truncated"] for c in m["out"]["calls"] if c["role"] == "aggregator")

    def aggregator_calls(m: dict[str, Any]) -> int:
        return sum(r["model"] == "agg" for r in m["log"])

    return [
        (
            "Self-MoA-Seq (aggregate_window 3, 2500-token aggregator, 6 answers):"
            " references cut / aggregator calls / wall",
            f"{truncated(base)} cut / {aggregator_calls(base)} / {base['wall']:.2f} s",
            f"{truncated(seq)} cut / {aggregator_calls(seq)} / {seq['wall']:.2f} s",
            "every answer read whole, for the extra sequential calls",
        )
    ]


async def early_stop_rows(server: OpenAIServer, question: str) -> list[tuple[str, str, str, str]]:
    """Early stopping on 3 proposer layers of 6 whose answers stop changing after layer 1
    (the test server answers every layer alike)."""

    def spec(**extra: Any) -> dict[str, Any]:
        out = paper_spec(server.base_url, **extra)
        out["layers"] = [out["layers"][0]] * 3
        return out

    judge = {**paper_spec(server.base_url)["aggregator"], "name": "judge", "model": "openai:judge"}
    latency = server.behavior_for("p1").latency
    verdict = "Consistent and complete.\nVERDICT: FINAL"
    server.set_behavior("judge", Behavior(latency=latency, content=verdict))
    base = await _measure(server, spec(), question)
    rows = []
    for label, extra in (
        ("similarity 0.9", {"similarity": 0.9}),
        ("judge says FINAL", {"judge": judge}),
    ):
        stopped = await _measure(server, spec(early_stop=extra), question)
        saved = stopped["out"]["early_stop"]
        rows.append(
            (
                f"early stop ({label}), 3 layers of 6: calls, wall",
                f"{base['calls']} calls, {base['wall']:.2f} s",
                f"{stopped['calls']} calls, {stopped['wall']:.2f} s",
                f"{base['calls'] - stopped['calls']} calls, {base['wall'] - stopped['wall']:.2f} s"
                f" (stopped after layer {saved['layer']}, {saved['layers_saved']} layers)",
            )
        )
    server.set_behavior("judge", None)
    return rows


def _reads(record: dict[str, Any]) -> bool:
    """Calls that read references: the second proposer layer and the aggregator."""
    return record["model"] == "agg" or record["call_index"] == 2


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per model call")
    asyncio.run(main(parser.parse_args().latency))
