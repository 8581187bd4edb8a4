"""What the "beyond the paper" options (issue 15) save, measured on the project's test server.

    python -m benchmarks.variants

Shape: the paper's MoA (2 proposer layers of 6 + the aggregator = 13 calls) on the in-process
``OpenAIServer``; every model answers 300 words after ``--latency`` seconds. Prints a
markdown table:

* cache: a first run vs an identical re-run with the persistent ``SqliteCache`` (calls, wall);
* reference caps: the tokens every layer-2 proposer and the aggregator read, with and without
  ``reference_max_tokens`` (tokens as the server counts them: words);
* estimate: ``moa estimate``'s worst case for the same spec next to what the run used.
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
    await aclose_clients()
    print(f"paper MoA shape (6+6 proposers + aggregator), {latency:g} s per call, 300-word answers")
    print("| variant | without | with | saved |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _reads(record: dict[str, Any]) -> bool:
    """Calls that read references: the second proposer layer and the aggregator."""
    return record["model"] == "agg" or record["call_index"] == 2


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per model call")
    asyncio.run(main(parser.parse_args().latency))
