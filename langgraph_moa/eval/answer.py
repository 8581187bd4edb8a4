"""One MoA answer for an eval item: the compiled graph's ``ainvoke`` (no stream is read, so
the engine makes non-streaming calls), with its per-call records and wall time. A failed run
returns its error and whatever calls it made; it never raises."""

from __future__ import annotations

import time
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_moa.errors import MoAError


async def moa_answer(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    messages: list[tuple[str, str]],
    temperature: float | None = None,
) -> dict[str, Any]:
    """``{"answer", "calls", "latency_s", "error"}`` for one conversation; ``temperature``
    overrides every model's for this run (``Context.temperature``)."""
    from langgraph_moa.graphs.state import Context

    start = time.perf_counter()
    try:
        final = await graph.ainvoke(
            {"messages": messages}, context=Context(temperature=temperature)
        )
        answer, calls, error = final.get("answer") or None, final.get("calls", []), None
        if answer is None:
            error = "the run ended without an answer"
    except MoAError as exc:
        answer, error = None, str(exc)
        calls = (exc.partial or {}).get("calls") or []
    except Exception as exc:  # an eval keeps going; the item is retried on resume
        answer, calls, error = None, [], f"{type(exc).__name__}: {exc}"
    return {
        "answer": answer,
        "calls": list(calls),
        "latency_s": round(time.perf_counter() - start, 4),
        "error": error,
    }
