"""One system under test, in its own process: ``python -m benchmarks.worker '<job json>'``.

A fresh process per (system, case group) keeps ``ru_maxrss`` per system and keeps the
systems from sharing an event loop, a pool or imported modules. Prints one JSON line.

Job keys: ``system`` (ours | raw-aiohttp | raw-httpx | raw-nostream | raw-dicts), ``base_url``,
``layers`` (the paper's count: proposer layers + the aggregator), ``proposers``, ``mode``
(e2e: ``ainvoke``; ttft: ``astream(stream_mode="messages")``), ``levels`` (a list of
``{"concurrency", "rounds", "warmup", "floor"}``), ``spec`` (extra MoASpec keys, e.g.
``layer_deadline``), ``uvloop``, ``tune_gc`` (``langgraph_moa.tuning.tune_gc()`` once the
system is set up).

A level runs ``concurrency`` closed-loop workers, each doing ``rounds`` runs back to back,
after ``warmup`` untimed concurrent runs. ``floor``: read the server's request log and
compute, per run, the critical path the server actually delivered (sum over layers of the
slowest call's server-side duration).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

RunOnce = Callable[[str], Awaitable[tuple[float | None, int]]]
"""A run: question -> (seconds to the answer's first token or None, calls not ok)."""


def model_names(layers: int, proposers: int) -> tuple[list[list[str]], str]:
    """Server model ids: ``L{k}-p{i}`` for proposer ``i`` of proposer layer ``k``; ``agg``."""
    return [[f"L{k}-p{i}" for i in range(1, proposers + 1)] for k in range(1, layers)], "agg"


def rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _ours(job: dict[str, Any]) -> tuple[RunOnce, Callable[[], Awaitable[None]], int]:
    from langgraph_moa.graphs.builder import create_moa
    from langgraph_moa.models.factory import aclose_clients

    layers, agg = model_names(job["layers"], job["proposers"])

    def m(model_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": f"openai:{model_id}",
            "base_url": job["base_url"],
            "retry": {"jitter": False},
        }

    spec = {
        "layers": [[m(mid, mid.split("-")[1]) for mid in layer] for layer in layers],
        "aggregator": m(agg, "agg"),
        **job.get("spec", {}),
    }
    graph = create_moa(spec)
    calls = sum(len(x) for x in layers) + 1

    if job["mode"] == "ttft":

        async def run_once(question: str) -> tuple[float | None, int]:
            start = time.perf_counter()
            ttft = None
            async for msg, meta in graph.astream(
                {"messages": [("user", question)]}, stream_mode="messages"
            ):
                if ttft is None and meta.get("langgraph_node") == "aggregator" and msg.text:
                    ttft = time.perf_counter() - start
            if ttft is None:
                raise RuntimeError("no answer token streamed")
            return ttft, 0

    else:

        async def run_once(question: str) -> tuple[float | None, int]:
            out = await graph.ainvoke({"messages": [("user", question)]})
            if not out["answer"]:
                raise RuntimeError("empty answer")
            return None, sum(c["status"] != "ok" for c in out["calls"])

    return run_once, aclose_clients, calls


def _raw(job: dict[str, Any]) -> tuple[RunOnce, Callable[[], Awaitable[None]], int]:
    from benchmarks.raw_asyncio import RawMoA, make_client

    system = job["system"]
    transport = "httpx" if system == "raw-httpx" else "aiohttp"
    client = make_client(job["base_url"], transport, dict_chunks=system == "raw-dicts")
    layers, agg = model_names(job["layers"], job["proposers"])
    moa = RawMoA(client, layers, agg, stream=system != "raw-nostream")

    async def run_once(question: str) -> tuple[float | None, int]:
        answer, ttft = await moa.run(question)
        if not answer:
            raise RuntimeError("empty answer")
        return ttft, 0

    return run_once, client.close, sum(len(x) for x in layers) + 1


def _floor(base_url: str, tags: set[str]) -> list[float]:
    """Per run: sum over layers of the slowest call's server-side duration (seconds)."""
    from langgraph_moa.testing import ControlClient

    runs: dict[str, dict[str, float]] = defaultdict(dict)
    for rec in ControlClient(base_url, timeout=60).log():
        users = [m for m in rec["messages"] if m.get("role") == "user"]
        tag = str(users[-1]["content"]).split(":", 1)[0] if users else ""
        if tag not in tags or rec["end"] is None:
            continue
        layer = rec["model"].split("-", 1)[0]
        dur = rec["end"] - rec["start"]
        runs[tag][layer] = max(runs[tag].get(layer, 0.0), dur)
    return [sum(v.values()) for v in runs.values()]


async def level(run_once: RunOnce, spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    c, rounds, warmup = spec["concurrency"], spec["rounds"], spec.get("warmup", 0)
    if warmup:
        await asyncio.gather(*(run_once(f"warm{i}: what is 2+2?") for i in range(warmup)))
    if spec.get("floor"):
        from langgraph_moa.testing import ControlClient

        ControlClient(base_url).reset()
    latencies: list[float] = []
    ttfts: list[float] = []
    errors = 0
    failed: list[str] = []
    tags: set[str] = set()

    async def worker(w: int) -> None:
        nonlocal errors
        for r in range(rounds):
            tag = f"q{w}-{r}"
            tags.add(tag)
            t0 = time.perf_counter()
            try:
                ttft, bad = await run_once(f"{tag}: what is 2+2?")
            except Exception as exc:  # a failed run: counted, kept out of the latencies
                failed.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            latencies.append(time.perf_counter() - t0)
            errors += bad
            if ttft is not None:
                ttfts.append(ttft)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(c)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {
        "concurrency": c,
        "runs": len(latencies),
        "latencies": latencies,
        "ttfts": ttfts,
        "errors": errors,
        "failed_runs": len(failed),
        "failures": sorted(set(failed))[:5],
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_kb": rss_kb(),
    }
    if spec.get("floor"):
        out["floor"] = _floor(base_url, tags)
    return out


async def main_async(job: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    make = _ours if job["system"] == "ours" else _raw
    run_once, close, calls = make(job)
    if job.get("tune_gc"):  # the same for every system; the import loads nothing else
        from langgraph_moa.tuning import tune_gc

        tune_gc()
    setup = {"setup_s": time.perf_counter() - t0, "setup_rss_kb": rss_kb(), "calls": calls}
    try:
        levels = [await level(run_once, spec, job["base_url"]) for spec in job["levels"]]
    finally:
        await close()
    return {**setup, "levels": levels}


def main(argv: list[str] | None = None) -> int:
    job = json.loads((argv or sys.argv[1:])[0])
    if job.get("uvloop"):
        import uvloop

        result = uvloop.run(main_async(job))
    else:
        result = asyncio.run(main_async(job))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
