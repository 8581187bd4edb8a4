"""One MoA answer for an eval item: the compiled graph's run with its per-call records and
wall time. A failed run returns its error and whatever calls it made; it never raises.

The run is read with ``stream_mode=["updates", "values"]`` (no messages stream, so the
engine still makes non-streaming calls): each node's new call records reach ``journal`` as
that node finishes, so a run killed half-way has already written what it paid for, and a
resume counts those calls as repeated instead of losing them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_moa.errors import MoAError

Journal = Callable[[list[dict[str, Any]]], None]


def _new_calls(update: Any) -> list[dict[str, Any]]:
    """The call records in one ``updates`` chunk (``{node: {"calls": [...]}}``)."""
    found: list[dict[str, Any]] = []
    for node_update in update.values() if isinstance(update, dict) else []:
        calls = node_update.get("calls") if isinstance(node_update, dict) else None
        if isinstance(calls, list):  # an Overwrite([]) reset carries no new call
            found += [c for c in calls if isinstance(c, dict)]
    return found


async def moa_answer(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    messages: list[tuple[str, str]],
    temperature: float | None = None,
    max_tokens: int | None = None,
    journal: Journal | None = None,
    stop: list[str] | None = None,
) -> dict[str, Any]:
    """``{"answer", "calls", "latency_s", "error"}`` for one conversation; ``temperature``
    and ``max_tokens`` override every model's for this run (``Context``), ``stop`` the
    answer's stop sequences."""
    from langgraph_moa.graphs.state import Context

    start = time.perf_counter()
    journaled: list[str] = []

    def note(calls: list[dict[str, Any]]) -> None:
        if journal is not None and calls:
            journal(calls)
        journaled.extend(json.dumps(c, sort_keys=True, default=str) for c in calls)

    final: dict[str, Any] = {}
    try:
        context = Context(temperature=temperature, max_tokens=max_tokens, stop=stop)
        async for mode, chunk in graph.astream(
            {"messages": messages}, context=context, stream_mode=["updates", "values"]
        ):
            if mode == "updates":
                note(_new_calls(chunk))
            elif isinstance(chunk, dict):
                final = chunk
        answer, calls, error = final.get("answer") or None, final.get("calls", []), None
        if answer is None:
            error = "the run ended without an answer"
    except MoAError as exc:
        answer, error = None, str(exc)
        calls = (exc.partial or {}).get("calls") or final.get("calls") or []
    except Exception as exc:  # an eval keeps going; the item is retried on resume
        answer, calls, error = None, final.get("calls") or [], f"{type(exc).__name__}: {exc}"
    # calls the updates did not show (a failure path's partial state): journal them too
    seen = list(journaled)
    missing = []
    for c in calls:
        key = json.dumps(c, sort_keys=True, default=str)
        if key in seen:
            seen.remove(key)
        else:
            missing.append(c)
    note(missing)
    return {
        "answer": answer,
        "calls": list(calls),
        "latency_s": round(time.perf_counter() - start, 4),
        "error": error,
    }
