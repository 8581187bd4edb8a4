"""Garbage-collector settings for a process that runs many MoA runs at once.

Why: a run allocates thousands of container objects (LangChain run managers, messages,
LangGraph tasks) that stay alive across awaits. With CPython's default thresholds (700, 10,
10) they are promoted to the oldest generation within a few runs, and every full collection
then walks everything alive, including the ~170,000 objects importing LangChain, LangGraph and
pydantic creates. Measured on 3 x 4 runs against the benchmark server (``benchmarks/``):
64 runs at once spent 10 ms of a run's 31 ms client CPU in the collector, 256 runs at once
11 ms of 26; with ``tune_gc()`` 1 ms of 18.5 and 2.4 of 17, at the same peak RSS.

Process-wide settings are the application's to choose, so importing the library never changes
them: the faces that run many runs at once (``moa serve``, ``moa ui``, ``moa eval``) call
``tune_gc()`` once started, and an application serving ``create_moa`` graphs can do the same.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (10_000, 10, 10)
"""A young collection every 10,000 net allocations instead of 700: in-flight runs' objects are
no longer promoted (and walked again by full collections) while they are still in use."""


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Move everything alive now (imports, compiled graphs) out of every later collection
    (``gc.freeze``, after one collection so no garbage is frozen) and set ``thresholds``.
    Call once, after the imports and graphs a process needs."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
