"""One graph run as a sequence of UI events: what the page's SSE endpoint sends.

The graph already says everything a viewer needs through LangGraph's stream modes: progress
events (``custom``), tokens tagged with their node's ``moa_*`` metadata (``messages``) and each
node's output (``updates``). This module only renames and flattens those into small JSON
events, so a browser (or any other front end) never has to know LangGraph's chunk shapes:

- ``run``: the turn starts (thread, turn number, spec name, the spec's layout of nodes)
- ``progress``: a ``custom`` progress event, verbatim (``call_started``, ``call_error``...)
- ``token``: a text piece of one node's answer (``node``, ``layer``, ``role``, ``model``,
  ``id``: a new id for the same node means the answer restarted after an error)
- ``answer``: a proposer's whole answer (authoritative; tokens are only a preview)
- ``call``: a finished call's record (``calls[]`` of the state: status, latency, tokens, cost)
- ``references``: what a layer hands on (the last layer's are what the aggregator read), with
  ``sources``: who wrote each (``{"node", "model"}``, or null when it cannot be told)
- ``ranked``: a ranked layer (``rank:`` specs): each ranker's order and the combined table
- ``final``: the final answer (aggregator, or the fallback when a whole layer failed)
- ``review``: the run paused before the aggregator (a spec with ``review: true``): the
  interrupt's payload as the graph gave it, ``references`` (what it would read) always there;
  resuming continues the same turn
- ``done``: the turn's summary (totals, wall time, critical path)
- ``error``: the run failed; ``partial`` carries what it had computed
- ``cancelled``: the run was stopped (``web/runs.py`` emits it; ``partial`` as for ``error``)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StreamMode

from langgraph_moa.errors import MissingAPIKeyError, MoAError
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.graphs.state import Context

FINAL_NODES = ("aggregator", "fallback")

Event = tuple[str, dict[str, Any]]
"""``(event name, JSON-serialisable data)``."""


def stream_context(**overrides: Any) -> Context:
    """A ``Context`` asking proposers to stream their tokens too (the page shows them all).

    Built only with the fields this version of ``Context`` has, so the page also works with a
    graph whose proposers never stream: their text then arrives with ``answer`` events."""
    names = {f.name for f in dataclasses.fields(Context)}
    wanted = {"stream_proposers": True, **overrides}
    return Context(**{k: v for k, v in wanted.items() if k in names})


def layout(spec: MoASpec) -> dict[str, Any]:
    """The nodes a run of ``spec`` will show, in spec order: one card per proposer."""

    def seat(node: str, model: Any, layer: int, role: str) -> dict[str, Any]:
        return {
            "node": node,
            "model": model.name,
            "model_id": model.model,
            "layer": layer,
            "role": role,
            "priced": model.price is not None,
        }

    layers = [
        [seat(f"layer_{k}/{m.name}", m, k, "proposer") for m in models]
        for k, models in enumerate(spec.layers, 1)
    ]
    final = seat("aggregator", spec.aggregator, len(spec.layers) + 1, "aggregator")
    return {"layers": layers, "aggregator": final}


def layout_from_calls(calls: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The layout of a stored turn, read from its call records (its spec may be gone)."""
    layers: dict[int, list[dict[str, Any]]] = {}
    final: dict[str, Any] | None = None
    for c in calls:
        seat = {
            "node": c["node"],
            "model": c["model"],
            "model_id": c["model_id"],
            "layer": c["layer"],
            "role": c["role"],
            "priced": c.get("cost_usd") is not None,
        }
        if c["role"] == "aggregator":
            final = seat
        elif all(s["node"] != c["node"] for s in layers.get(c["layer"], [])):
            layers.setdefault(c["layer"], []).append(seat)
    ordered = [sorted(layers[k], key=lambda s: str(s["node"])) for k in sorted(layers)]
    return {"layers": ordered, "aggregator": final}


def critical_path(calls: Iterable[Mapping[str, Any]]) -> float:
    """Seconds an ideal scheduler would need: each layer's slowest call, summed (the final
    answer counts as a layer). Wall time above it is retries, queuing and overhead."""
    slowest: dict[int, float] = {}
    for c in calls:
        slowest[c["layer"]] = max(slowest.get(c["layer"], 0.0), float(c["latency_s"]))
    return round(sum(slowest.values()), 4)


def summary(calls: list[dict[str, Any]], wall_s: float | None) -> dict[str, Any]:
    """The per-run numbers the page shows under a turn."""
    from langgraph_moa.costs import run_totals

    return {
        **run_totals(calls),
        "wall_s": None if wall_s is None else round(wall_s, 4),
        "critical_path_s": critical_path(calls),
    }


def ranking_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A layer's ranking (``LayerRanking``) as the page shows it: each ranker's order, and the
    combined table (mean rank, kept or dropped) best first."""
    kept = set(record.get("kept") or [])
    mean = record.get("mean_rank") or {}
    return {
        "layer": record.get("layer"),
        "rankers": [
            {
                "ranker": r.get("ranker"),
                "model": r.get("model"),
                "ok": r.get("ok"),
                "order": list(r.get("order") or []),
                "error": r.get("error"),
            }
            for r in record.get("rankers") or []
        ],
        "table": [
            {
                "node": node,
                "model": node.split("/", 1)[-1],
                "score": mean.get(node),
                "kept": node in kept,
            }
            for node in record.get("order") or []
        ],
        "kept": list(record.get("kept") or []),
    }


def reference_sources(
    nodes: list[str],
    references: list[str],
    answers: Mapping[str, str],
    calls: Iterable[Mapping[str, Any]],
    kept: list[str] | None = None,
) -> list[dict[str, Any] | None]:
    """Who wrote each reference: ``{"node", "model"}`` (the model that answered, a fallback's
    name if one did), or None when it cannot be told (e.g. references edited at a review).

    A layer's references are its answers in spec order (``nodes``), or the kept ones after a
    ranking."""
    writers = [n for n in (kept if kept is not None else nodes) if n in answers]
    if len(writers) != len(references):
        return [None] * len(references)
    model = {c["node"]: c["model"] for c in calls if c.get("status") in ("ok", "fallback")}
    return [{"node": n, "model": model.get(n, n.split("/", 1)[-1])} for n in writers]


def _updates(chunk: Mapping[str, Any], seen: dict[str, Any]) -> Iterable[Event]:
    """``answer``/``call``/``references``/``ranked``/``final`` events from one ``updates``
    chunk. ``seen`` collects the run's answers and calls, and holds its ``layout``.

    Error handlers report as ``__error_handler__<node>``: only the values matter here."""
    for node, update in chunk.items():
        if not isinstance(update, Mapping):
            continue
        answers = update.get("answers")
        if isinstance(answers, Mapping):
            for key, text in answers.items():
                seen["answers"][key] = text
                yield "answer", {"node": key, "text": text}
        calls = update.get("calls")
        if isinstance(calls, list):
            for record in calls:
                seen["calls"].append(record)
                yield "call", dict(record)
        kept = None
        rankings = update.get("rankings")
        if isinstance(rankings, list):
            for ranking in rankings:
                view = ranking_view(ranking)
                kept = view["kept"]
                yield "ranked", view
        refs = update.get("references")
        if isinstance(refs, list) and node.endswith(("/aggregate", "/rank")):  # rank: top k
            layer = int(node.split("/")[0].removeprefix("layer_"))
            seats = seen["layout"]["layers"] if seen.get("layout") else []
            nodes = [s["node"] for s in seats[layer - 1]] if layer <= len(seats) else []
            yield (
                "references",
                {
                    "layer": layer,
                    "references": list(refs),
                    "sources": reference_sources(
                        nodes, list(refs), seen["answers"], seen["calls"], kept
                    ),
                    "fallback_reason": update.get("fallback_reason") or None,
                },
            )
        answer = update.get("answer")
        if isinstance(answer, str) and answer:
            yield "final", {"node": node.removeprefix("__error_handler__"), "text": answer}


def _token(chunk: Any) -> Event | None:
    message, meta = chunk
    text = getattr(message, "text", "")
    node = meta.get("langgraph_node", "")
    if not text or not meta.get("moa_role") or node.startswith("__"):
        return None
    return "token", {
        "node": node,
        "layer": meta.get("moa_layer"),
        "role": meta.get("moa_role"),
        "model": meta.get("moa_model"),
        "id": getattr(message, "id", None),
        "text": text,
    }


async def run_events(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    payload: Any,
    config: RunnableConfig,
    *,
    start: dict[str, Any],
    context: Context | None = None,
) -> AsyncGenerator[Event, None]:
    """Run one turn of ``graph`` and yield its UI events, ``start`` first (the ``run`` event).

    ``payload`` is the graph input (``{"messages": [...]}``) or a ``Command(resume=...)``.

    Never raises for a failed run: the failure becomes an ``error`` event carrying
    ``MoAError.partial``, so the page keeps every card it already shows."""
    yield "run", start
    began = time.perf_counter()
    final: dict[str, Any] = {}
    seen: dict[str, Any] = {"answers": {}, "calls": [], "layout": start.get("layout")}
    modes: list[StreamMode] = ["custom", "messages", "updates", "values"]
    stream = cast(  # astream is an async generator; its annotation says only AsyncIterator
        AsyncGenerator[tuple[str, Any], None],
        graph.astream(
            payload,
            config,
            context=context or stream_context(),
            stream_mode=modes,
            # Each step's checkpoint is on disk before the next step runs: a reload, a Stop
            # or a crash finds every finished step (the default writes them in the background).
            # Only with a checkpointer (without one LangGraph 1.2 fails on it).
            durability="sync" if isinstance(graph.checkpointer, BaseCheckpointSaver) else None,
        ),
    )
    try:
        # aclosing: a client that goes away stops the run now, not at garbage collection.
        async with aclosing(stream):
            async for mode, chunk in stream:
                if mode == "custom" and isinstance(chunk, Mapping):
                    yield "progress", dict(chunk)
                elif mode == "messages":
                    if token := _token(chunk):
                        yield token
                elif mode == "updates" and isinstance(chunk, Mapping):
                    for event in _updates(chunk, seen):
                        yield event
                elif mode == "values" and isinstance(chunk, Mapping):
                    final = dict(chunk)
    except Exception as exc:  # shown on the page: one line, plus what had been computed
        message = str(exc) if isinstance(exc, MoAError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MissingAPIKeyError):  # the operator's business: name no variable
            message = "a model of this spec is not configured on the server"
        partial = getattr(exc, "partial", None) or {}
        calls = list(partial.get("calls") or final.get("calls") or seen["calls"])
        shown = {k: partial.get(k) for k in ("answers", "references")}
        yield (
            "error",
            {
                "message": message,
                "partial": {**shown, "calls": calls},
                "summary": summary(calls, time.perf_counter() - began),
            },
        )
        return
    if "__interrupt__" in final:
        pause = final["__interrupt__"][0].value
        payload = dict(pause) if isinstance(pause, Mapping) else {"value": pause}
        yield "review", {**payload, "references": list(payload.get("references") or [])}
        return
    if not final.get("answer"):
        yield (
            "error",
            {"message": "the run ended without an answer", "partial": {}, "summary": None},
        )
        return
    calls = list(final.get("calls") or [])
    yield (
        "done",
        {
            "answer": final["answer"],
            "fallback_reason": final.get("fallback_reason") or None,
            "summary": summary(calls, time.perf_counter() - began),
        },
    )
