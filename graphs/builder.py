"""Compile a ``MoASpec`` into a LangGraph ``StateGraph``: wiring and node policies only.

    START -> layer_1 -> layer_1/<proposer> x N (one super-step, in parallel)
          -> layer_1/aggregate -> layer_2 -> ... -> [review] -> aggregator -> END

``build_graph`` returns the *uncompiled* graph so callers choose the checkpointer, store and
cache, or add it to a bigger graph; ``create_moa`` compiles it for the common case.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import CachePolicy

from langgraph_moa.graphs import names
from langgraph_moa.graphs.names import AGGREGATOR, FALLBACK, REVIEW
from langgraph_moa.graphs.spec import MoASpec, ModelSpec, resolve_spec
from langgraph_moa.graphs.state import Context, InputState, MoAState, OutputState
from langgraph_moa.nodes.failures import retry_policy
from langgraph_moa.nodes.layer import layer_entry, layer_reducer, review, route_after_layer
from langgraph_moa.nodes.messages import cache_key
from langgraph_moa.nodes.model import failure_handler, model_node
from langgraph_moa.nodes.seat import Seat
from langgraph_moa.nodes.sync import with_sync

MoAGraph = StateGraph[MoAState, Context, InputState, OutputState]
"""The uncompiled MoA graph (``build_graph``)."""
CompiledMoA = CompiledStateGraph[MoAState, Context, InputState, OutputState]
"""The compiled MoA graph (``create_moa``)."""


def _add_model(
    graph: MoAGraph,
    model: ModelSpec,
    spec: MoASpec,
    seat: Seat,
    goto: str,
    chat_models: Mapping[str, BaseChatModel],
) -> None:
    graph.add_node(
        seat.node,
        with_sync(model_node(model, spec, seat, chat_models), seat.node),
        retry_policy=retry_policy(model),
        cache_policy=CachePolicy(key_func=cache_key(model, spec, seat), ttl=spec.cache_ttl)
        if spec.cache
        else None,
        error_handler=with_sync(
            failure_handler(model, spec, seat, goto, chat_models), f"{seat.node} failed"
        ),
        metadata={
            "moa_role": seat.role,
            "moa_layer": seat.layer,
            "moa_model": model.name,
            "moa_model_id": model.model,
        },
    )


def build_graph(
    spec: MoASpec | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    preset: str | None = None,
    chat_models: Mapping[str, BaseChatModel] | None = None,
    context_schema: type[Context] = Context,
) -> MoAGraph:
    """The MoA graph for ``spec`` (a ``MoASpec``, dict, YAML/JSON path) or ``preset``.

    ``chat_models`` maps model names to ready chat model instances (your own client, or a
    fake in tests); every other model is created from its spec on first use.
    ``context_schema``: ``Context`` or a subclass with other defaults (the LangGraph server's
    graphs stream proposers by default).
    """
    spec = resolve_spec(spec, preset=preset)
    chat_models = dict(chat_models or {})
    graph = StateGraph(
        MoAState, context_schema=context_schema, input_schema=InputState, output_schema=OutputState
    )
    final_layer = len(spec.layers) + 1
    after_last = REVIEW if spec.review else AGGREGATOR
    for k, models in enumerate(spec.layers, 1):
        entry, reducer = names.layer(k), names.aggregate(k)
        graph.add_node(
            entry, with_sync(layer_entry(k, spec, chat_models), entry), metadata={"moa_layer": k}
        )
        if k == 1:
            graph.add_edge(START, entry)
        for model in models:
            seat = Seat(
                node=names.proposer(k, str(model.name)),
                layer=k,
                role="proposer",
                references=k > 1,
                layer_size=len(models),
            )
            _add_model(graph, model, spec, seat, reducer, chat_models)
            graph.add_edge(entry, seat.node)
            graph.add_edge(seat.node, reducer)
        graph.add_node(
            reducer, with_sync(layer_reducer(k, spec), reducer), metadata={"moa_layer": k}
        )
        nxt = names.layer(k + 1) if k < len(spec.layers) else after_last
        if spec.aggregator.fallback is None:
            graph.add_edge(reducer, nxt)
        else:  # a layer below its quorum goes to the fallback instead
            graph.add_conditional_edges(reducer, route_after_layer(nxt), [nxt, FALLBACK])
    if spec.aggregator.fallback is not None:
        # A whole layer failed: the aggregator's fallback answers the user directly.
        seat = Seat(node=FALLBACK, layer=final_layer, role="aggregator", references=False)
        _add_model(graph, spec.aggregator.fallback, spec, seat, END, chat_models)
        graph.add_edge(FALLBACK, END)
    if spec.review:
        graph.add_node(REVIEW, with_sync(review, REVIEW))
        graph.add_edge(REVIEW, AGGREGATOR)
    seat = Seat(node=AGGREGATOR, layer=final_layer, role="aggregator", references=True)
    _add_model(graph, spec.aggregator, spec, seat, END, chat_models)
    graph.add_edge(AGGREGATOR, END)
    return graph


def create_moa(
    spec: MoASpec | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    preset: str | None = None,
    chat_models: Mapping[str, BaseChatModel] | None = None,
    **compile_kwargs: Any,
) -> CompiledMoA:
    """``build_graph(...).compile(**compile_kwargs)`` with the spec's name."""
    resolved = resolve_spec(spec, preset=preset)
    graph = build_graph(resolved, chat_models=chat_models)
    return graph.compile(name=resolved.name, **compile_kwargs)
