"""MoA latency benchmarks: our graph vs a hand-written asyncio MoA against a latency server.

    python -m benchmarks.run            # full: < 10 min on 2 cores
    python -m benchmarks.run --quick    # smoke: < 90 s

Prints markdown tables and writes ``benchmarks/results/<timestamp>.json`` (+ ``latest.json``
and ``latest.md``). See ``benchmarks/README.md`` for what each number means.

"Layers" is the paper's count, the aggregator included: 3 layers = two proposer layers plus
the aggregator (the paper's "3-layer MoA"), 2 layers = MoA-Lite's shape.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "raw-nostream"
"""The seed snippet's shape: asyncio.gather over one shared AsyncOpenAI client (aiohttp), no
streaming. What a user would otherwise write, so every non-streamed case is measured by it."""
STREAMING = "raw-aiohttp"
"""The same script with every call streamed: the baseline for a streamed final answer."""
SYSTEMS = ("ours", BASELINE, STREAMING, "raw-httpx")
COMPARED = "ours@base"
"""``--compare DIR``: ``ours`` run from another checkout (e.g. ``git archive main``), so a
change is measured against its parent in the same run, against the same server."""


# --------------------------------------------------------------------------- helpers


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x * 1000:.0f}"


def ratio(a: float, b: float) -> str:
    return "-" if not a or not b or math.isnan(a) or math.isnan(b) else f"{a / b:.3f}"


def per_run_mb(lv: dict[str, Any], single: dict[str, Any] | None) -> float:
    """Peak RSS growth per extra run in flight, against the same process at concurrency 1."""
    if single is None or lv["concurrency"] <= 1:
        return math.nan
    return (lv["rss_kb"] - single["rss_kb"]) / 1024 / (lv["concurrency"] - 1)


def merge_passes(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's passes as one result: runs pooled per level (p50 over all of them), CPU
    and wall time summed, peak RSS the highest. A failed pass fails the whole result."""
    failed = next((o for o in outs if "error" in o), None)
    if failed is not None or len(outs) == 1:
        return failed or outs[0]
    merged = {**outs[0], "passes": len(outs), "levels": []}
    for levels in zip(*(o["levels"] for o in outs), strict=True):
        lv = {**levels[0]}
        for key in ("latencies", "ttfts", "floor"):
            if key in lv:
                lv[key] = [x for one in levels for x in one[key]]
        for key in ("runs", "errors", "failed_runs", "wall_s", "cpu_s"):
            lv[key] = sum(one[key] for one in levels)
        lv["rss_kb"] = max(one["rss_kb"] for one in levels)
        merged["levels"].append(lv)
    return merged


def table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: Any = None
        self.results: dict[str, Any] = {"config": vars(args).copy(), "sections": {}}
        self.md: list[str] = []

    # ------------------------------------------------------------------ plumbing

    @property
    def full(self) -> float:
        """Server time of one streamed call: TTFT, then tokens-1 gaps."""
        a = self.args
        return a.ttft + (a.tokens - 1) * a.token_delay

    def behaviors(self, ttft: float | None = None, straggler: float | None = None) -> None:
        """Every model: fixed TTFT / token delay / tokens; ``straggler`` slows ``L1-p1``."""
        a = self.args
        default = {
            "latency": a.ttft if ttft is None else ttft,
            "token_delay": a.token_delay if ttft is None else 0.0,
            "tokens": a.tokens,
        }
        models = {}
        if straggler is not None:
            models["L1-p1"] = {**default, "latency": straggler}
        self.server.set_behaviors(models, default)
        self.server.reset()

    def worker(self, system: str, layers: int, proposers: int, levels: list[dict], **kw: Any):
        self.server.reset()  # the server's request log would otherwise grow all run long
        cwd, label = ROOT, system
        if system == COMPARED:
            system, cwd = "ours", self.args.compare
        job = {
            "system": system,
            "base_url": self.server.base_url,
            "layers": layers,
            "proposers": proposers,
            "mode": kw.pop("mode", "e2e"),
            "levels": levels,
            "uvloop": self.args.uvloop,
            "tune_gc": self.args.tune_gc,
            **kw,
        }
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(job)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()[-1:] or ["?"]
            print(f"  ! {label} L{layers} P{proposers} failed: {err[0]}", file=sys.stderr)
            return {"error": proc.stderr[-4000:], "job": job}
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["process_s"] = took
        print(
            f"  {label:13s} L{layers} P{proposers} {job['mode']:5s} "
            f"levels={[lv['concurrency'] for lv in levels]} {took:5.1f}s",
            file=sys.stderr,
            flush=True,
        )
        return out

    def emit(self, text: str) -> None:
        self.md.append(text)
        print(text, flush=True)

    def warm_server(self) -> None:
        """One untimed run of the baseline at the largest case before anything is measured, so
        no system meets a cold server process. The order of the systems still matters on a
        shared machine (the earlier of two runs of one system measured up to 10 % slower at
        c=64): ``--passes 2`` runs them a second time in reverse order and pools the runs."""
        a = self.args
        self.behaviors()
        level = {"concurrency": max(a.concurrency), "rounds": 1, "warmup": 0}
        self.worker(BASELINE, max(a.layers), max(a.proposers), [level], mode="e2e")

    # ------------------------------------------------------------------ sections

    def e2e(self) -> None:
        a = self.args
        self.behaviors()
        section: list[dict[str, Any]] = []
        for layers in a.layers:
            for proposers in a.proposers:
                levels = [self.level(c) for c in a.concurrency]
                outs: dict[str, list[dict[str, Any]]] = {s: [] for s in a.systems}
                for n in range(a.passes):  # odd passes run the systems in reverse order
                    for system in a.systems[:: -1 if n % 2 else 1]:
                        outs[system].append(self.worker(system, layers, proposers, levels))
                for system in a.systems:
                    section.append(
                        {
                            "system": system,
                            "layers": layers,
                            "proposers": proposers,
                            **merge_passes(outs[system]),
                        }
                    )
        self.results["sections"]["e2e"] = section
        rows = []
        for r in section:
            if "error" in r:
                rows.append([r["layers"], r["proposers"], "-", r["system"], "worker FAILED"])
                continue
            base = next(
                (
                    x
                    for x in section
                    if x["system"] == BASELINE
                    and x["layers"] == r["layers"]
                    and x["proposers"] == r["proposers"]
                    and "error" not in x
                ),
                None,
            )
            bound = r["layers"] * self.full
            single = next((lv for lv in r["levels"] if lv["concurrency"] == 1), None)
            base_single = (
                next((lv for lv in base["levels"] if lv["concurrency"] == 1), None)
                if base
                else None
            )
            for i, lv in enumerate(r["levels"]):
                per_run = per_run_mb(lv, single)
                base_per_run = per_run_mb(base["levels"][i], base_single) if base else math.nan
                p50, p95 = pct(lv["latencies"], 50), pct(lv["latencies"], 95)
                b50 = pct(base["levels"][i]["latencies"], 50) if base else math.nan
                floor = pct(lv.get("floor", []), 50)
                rows.append(
                    [
                        r["layers"],
                        r["proposers"],
                        lv["concurrency"],
                        r["system"],
                        ms(p50),
                        ms(p95),
                        ratio(p50, bound),
                        ratio(p50, floor) if lv.get("floor") else "",
                        ratio(p50, b50),
                        f"{lv['runs'] / lv['wall_s']:.1f}",
                        f"{lv['cpu_s'] / lv['runs'] * 1000:.0f}",
                        f"{lv['rss_kb'] / 1024:.0f}",
                        "" if math.isnan(per_run) else f"{per_run:.2f}",
                        ""
                        if math.isnan(per_run) or math.isnan(base_per_run)
                        else f"{per_run - base_per_run:+.2f}",
                        f"{lv['failed_runs']}/{lv['errors']}",
                    ]
                )
        self.emit(
            f"\n### End-to-end latency (server: TTFT {a.ttft * 1000:.0f} ms, "
            f"{a.tokens} tokens x {a.token_delay * 1000:g} ms; one call = "
            f"{self.full * 1000:.0f} ms; bound = layers x one call)\n"
        )
        self.emit(
            table(
                [
                    "layers",
                    "proposers",
                    "conc",
                    "system",
                    "p50 ms",
                    "p95 ms",
                    "x bound",
                    "x floor",
                    f"x {BASELINE}",
                    "runs/s",
                    "CPU ms/run",
                    "peak RSS MB",
                    "MB per in-flight run",
                    f"vs {BASELINE} MB/run",
                    "failed runs/calls",
                ],
                rows,
            )
        )

    def level(self, c: int) -> dict[str, Any]:
        """c closed-loop workers x rounds runs, after an untimed warm-up (pool, imports)."""
        q = self.args.quick
        if c == 1:
            return {"concurrency": 1, "rounds": 3 if q else 5, "warmup": 1, "floor": True}
        if c <= 16:
            return {"concurrency": c, "rounds": 2, "warmup": c}
        return {"concurrency": c, "rounds": 1, "warmup": 16}

    def ttft(self) -> None:
        a = self.args
        self.behaviors()
        layers, proposers = a.layers[-1], a.proposers[0]
        rounds = 2 if a.quick else 3
        levels = [{"concurrency": c, "rounds": rounds, "warmup": 1} for c in a.ttft_concurrency]
        bound = (layers - 1) * self.full + a.ttft
        rows, section = [], []
        totals: dict[tuple[str, int], float] = {}
        for system in ("ours", STREAMING):
            out = self.worker(system, layers, proposers, levels, mode="ttft")
            section.append({"system": system, **out})
            for lv in out.get("levels", []):
                t50, t95 = pct(lv["ttfts"], 50), pct(lv["ttfts"], 95)
                totals[(system, lv["concurrency"])] = pct(lv["latencies"], 50)
                rows.append(
                    [
                        system,
                        lv["concurrency"],
                        ms(t50),
                        ms(t95),
                        ms(bound),
                        f"{(t50 - bound) * 1000:+.0f}",
                        ms(pct(lv["latencies"], 50)),
                        ratio(
                            totals[(system, lv["concurrency"])],
                            totals.get((STREAMING, lv["concurrency"]), math.nan),
                        )
                        if system == STREAMING
                        else "",
                    ]
                )
        # ours runs first: fill its e2e ratio once the streaming baseline is in
        for row in rows:
            if row[0] == "ours":
                row[-1] = ratio(totals[("ours", row[1])], totals.get((STREAMING, row[1]), math.nan))
        self.results["sections"]["ttft"] = {"bound_s": bound, "runs": section}
        self.emit(
            f"\n### TTFT of the final answer ({layers} layers, {proposers} proposers; "
            f'ours: astream(stream_mode="messages"); baseline: the seed script with every call '
            f"streamed; bound = {layers - 1} x slowest proposer + aggregator TTFT)\n"
        )
        self.emit(
            table(
                [
                    "system",
                    "conc",
                    "TTFT p50 ms",
                    "p95 ms",
                    "bound ms",
                    "p50 - bound ms",
                    "e2e ms",
                    f"e2e x {STREAMING}",
                ],
                rows,
            )
        )

    def straggler(self) -> None:
        a = self.args
        layers, proposers = a.layers[-1], a.proposers[0]
        slow = a.straggler_factor * self.full - (a.tokens - 1) * a.token_delay
        levels = [{"concurrency": 1, "rounds": 2 if a.quick else 3, "warmup": 0}]
        slow_levels = [{"concurrency": 1, "rounds": 2, "warmup": 0}]
        variants = [
            ("no straggler", "ours", None, {}),
            ("straggler, no policy", "ours", slow, {}),
            (
                f"straggler, layer_deadline={a.deadline:g}s",
                "ours",
                slow,
                {"layer_deadline": a.deadline},
            ),
            (
                f"straggler, layer_deadline_factor={a.deadline_factor:g}",
                "ours",
                slow,
                {"layer_deadline_factor": a.deadline_factor},
            ),
            ("straggler, raw gather (no policy)", BASELINE, slow, {}),
        ]
        if a.quick:
            variants = [variants[0], variants[2]]
        rows, section, ref = [], [], None
        for label, system, straggler, spec in variants:
            self.behaviors(straggler=straggler)
            lv = levels if straggler is None or spec else slow_levels
            out = self.worker(system, layers, proposers, lv, spec=spec)
            section.append({"variant": label, "system": system, "spec": spec, **out})
            if "error" in out:
                rows.append([label, system, "FAILED", "", ""])
                continue
            p50 = pct(out["levels"][0]["latencies"], 50)
            ref = p50 if ref is None else ref
            rows.append([label, system, ms(p50), ratio(p50, ref), out["levels"][0]["errors"]])
        self.behaviors()
        self.results["sections"]["straggler"] = section
        self.emit(
            f"\n### Straggler: L1-p1 {a.straggler_factor:g}x slower ({layers} layers, "
            f"{proposers} proposers, concurrency 1; calls cut count as errors)\n"
        )
        self.emit(table(["variant", "system", "p50 ms", "x no straggler", "cut calls"], rows))

    def overhead(self) -> None:
        a = self.args
        self.behaviors(ttft=0.0)
        rounds = 15 if a.quick else 40
        levels = [{"concurrency": 1, "rounds": rounds, "warmup": 5}]
        systems = ["ours", *([COMPARED] if COMPARED in a.systems else []), BASELINE, STREAMING]
        if not a.quick:
            systems += ["raw-dicts", "raw-httpx"]
        rows, section = [], []
        for layers in [a.layers[-1]] if a.quick else sorted({2, a.layers[-1]}):
            proposers = a.proposers[0]
            done: dict[str, tuple[float, dict[str, Any], int]] = {}
            for system in systems:
                out = self.worker(system, layers, proposers, levels)
                section.append({"system": system, "layers": layers, "proposers": proposers, **out})
                if "error" not in out:
                    lv = out["levels"][0]
                    done[system] = (lv["cpu_s"] / lv["runs"], lv, out["calls"])
            base = done.get(BASELINE, (math.nan,))[0]
            like = done.get(STREAMING, (math.nan,))[0]
            for system, (cpu, lv, calls) in done.items():
                rows.append(
                    [
                        layers,
                        proposers,
                        system,
                        f"{cpu * 1000:.1f}",
                        f"{cpu / calls * 1000:.2f}",
                        ms(pct(lv["latencies"], 50)),
                        f"{(cpu - base) * 1000:+.1f}",
                        f"{(cpu - like) * 1000:+.1f}",
                    ]
                )
        self.behaviors()
        self.results["sections"]["overhead"] = section
        self.emit(
            f"\n### Client CPU (zero-latency server, {a.tokens} tokens per answer, sequential "
            f"runs; ours and {BASELINE} make non-streaming calls, {STREAMING} streams every "
            f"call; CPU = time.process_time of the client process)\n"
        )
        self.emit(
            table(
                [
                    "layers",
                    "proposers",
                    "system",
                    "CPU ms/run",
                    "CPU ms/model call",
                    "wall p50 ms",
                    f"vs {BASELINE} ms/run",
                    f"vs {STREAMING} ms/run",
                ],
                rows,
            )
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run (< 90 s)")
    p.add_argument("--ttft", type=float, default=0.2, help="server time to first token, s")
    p.add_argument("--token-delay", type=float, default=0.005, help="s between tokens")
    p.add_argument("--tokens", type=int, default=40, help="tokens per answer")
    p.add_argument("--layers", type=int, nargs="+", help="paper layers (incl. aggregator)")
    p.add_argument("--proposers", type=int, nargs="+")
    p.add_argument("--concurrency", type=int, nargs="+")
    p.add_argument("--ttft-concurrency", type=int, nargs="+")
    p.add_argument("--systems", nargs="+", choices=[*SYSTEMS, "raw-dicts", COMPARED])
    p.add_argument(
        "--sections",
        nargs="+",
        default=["e2e", "ttft", "straggler", "overhead"],
        choices=["e2e", "ttft", "straggler", "overhead"],
    )
    p.add_argument("--straggler-factor", type=float, default=10.0)
    p.add_argument("--deadline", type=float, default=0.1, help="layer_deadline, s")
    p.add_argument("--deadline-factor", type=float, default=0.25, help="layer_deadline_factor")
    p.add_argument("--uvloop", action="store_true", help="run the clients on uvloop")
    p.add_argument(
        "--tune-gc",
        action="store_true",
        help="every system calls langgraph_moa.tuning.tune_gc() once set up (as moa serve does)",
    )
    p.add_argument(
        "--passes",
        type=int,
        default=1,
        help="e2e: run every case's systems N times, every other pass in reverse order, and "
        "pool the runs (the order of systems on a shared machine is worth up to 10%%)",
    )
    p.add_argument(
        "--compare",
        type=Path,
        help=f"another checkout (e.g. `git archive main | tar -x -C DIR`): its graph runs as "
        f"{COMPARED!r} next to ours",
    )
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/<time>.json)")
    args = p.parse_args(argv)
    q = args.quick
    args.layers = args.layers or [3]
    args.proposers = args.proposers or ([4] if q else [4, 6])
    args.concurrency = args.concurrency or ([1, 64] if q else [1, 64, 256])
    args.ttft_concurrency = args.ttft_concurrency or ([1] if q else [1, 64])
    args.systems = args.systems or (["ours", BASELINE] if q else ["ours", BASELINE, STREAMING])
    if BASELINE not in args.systems:
        args.systems.append(BASELINE)
    if args.compare and COMPARED not in args.systems:
        args.systems.insert(1, COMPARED)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from langgraph_moa.testing import ServerProcess

    bench = Bench(args)
    t0 = time.perf_counter()
    with ServerProcess() as server:
        bench.server = server
        bench.emit(
            f"## MoA benchmarks ({'quick' if args.quick else 'full'}; "
            f"layers = the paper's count incl. the aggregator)"
        )
        bench.warm_server()
        for name in args.sections:
            getattr(bench, name)()
    took = time.perf_counter() - t0
    bench.emit(f"\n_total {took:.0f} s_")
    bench.results["total_s"] = took
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S.json")
    bench.results["config"]["out"] = str(out)
    text = json.dumps(bench.results, indent=1, default=str)
    out.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / "latest.md").write_text("\n".join(bench.md) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
