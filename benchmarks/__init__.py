"""Latency / throughput / CPU benchmarks: the MoA graph vs a hand-written asyncio MoA.

Run ``python -m benchmarks.run`` (or ``--quick``) from the repository root; see README.md.
"""
