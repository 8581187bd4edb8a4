"""Compile a ``MoASpec`` into a LangGraph ``StateGraph``: wiring and node policies only.

    START -> layer_1 -> layer_1/<proposer> x N (one super-step, in parallel)
          -> layer_1/aggregate -> layer_2 -> ... -> [review] -> aggregator -> END

Optional steps (issue 15) are more nodes of the same graph, each model call a model node like
a proposer's (same retries, timeouts, fallbacks, cache and call records):

    layer_k/aggregate -> layer_k/rank/<ranker> x R -> layer_k/rank         (``rank``)
                      -> [layer_k/stop/<judge>] -> layer_k/stop -?-> layer_k+1 | final
                                                                          (``early_stop``)
    final: [review] -?-> aggregator/window (loops) -> aggregator          (``aggregate_window``)

``build_graph`` returns the *uncompiled* graph so callers choose the checkpointer, store and
cache, or add it to a bigger graph; ``create_moa`` compiles it for the common case.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.graph import Graph
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import CachePolicy

from langgraph_moa.graphs import names
from langgraph_moa.graphs.names import AGGREGATOR, FALLBACK, REVIEW, WINDOW
from langgraph_moa.graphs.spec import MoASpec, ModelSpec, resolve_spec
from langgraph_moa.graphs.state import Context, InputState, MoAState, OutputState
from langgraph_moa.nodes.failures import retry_policy
from langgraph_moa.nodes.layer import layer_entry, layer_reducer, route_after_layer
from langgraph_moa.nodes.messages import cache_key
from langgraph_moa.nodes.model import failure_handler, gated, model_node
from langgraph_moa.nodes.rank import rank_combiner, should_rank
from langgraph_moa.nodes.review import review_node, route_after_review
from langgraph_moa.nodes.seat import Seat
from langgraph_moa.nodes.stop import judge_seat, route_after_stop, should_judge, stop_decider
from langgraph_moa.nodes.sync import with_sync
from langgraph_moa.nodes.window import windows_route

MoAGraph = StateGraph[MoAState, Context, InputState, OutputState]
"""The uncompiled MoA graph (``build_graph``)."""
CompiledMoA = CompiledStateGraph[MoAState, Context, InputState, OutputState]
"""The compiled MoA graph (``create_moa``)."""

_HANDLER_PREFIX = "__error_handler__"
"""How LangGraph names the node of a node's ``error_handler`` (one per model node)."""


class _Drawn(CompiledStateGraph[MoAState, Context, InputState, OutputState]):
    """A compiled MoA graph whose drawing leaves out the error-handler nodes.

    LangGraph registers each node's ``error_handler`` as a node of its own, which
    ``get_graph`` draws unconnected (Studio showed a dozen loose ``__error_handler__*``
    boxes); a handler is part of its model node, as retries are."""

    def get_graph(self, config: RunnableConfig | None = None, *, xray: int | bool = False) -> Graph:
        return _without_handlers(super().get_graph(config, xray=xray))

    async def aget_graph(
        self, config: RunnableConfig | None = None, *, xray: int | bool = False
    ) -> Graph:
        return _without_handlers(await super().aget_graph(config, xray=xray))


def _without_handlers(drawing: Graph) -> Graph:
    for node_id in [n for n in drawing.nodes if n.split(":")[-1].startswith(_HANDLER_PREFIX)]:
        drawing.remove_node(drawing.nodes[node_id])
    return drawing


def compile_moa(graph: MoAGraph, **compile_kwargs: Any) -> CompiledMoA:
    """``graph.compile(**compile_kwargs)``, drawn without LangGraph's error-handler nodes."""
    compiled = graph.compile(**compile_kwargs)
    compiled.__class__ = _Drawn  # same object layout; only the drawing methods differ
    return compiled


Step = list[str] | Callable[[Any], str]
"""Where a node hands on: fixed nodes (several = a fan-out), or a route deciding at run time."""


def _add_model(
    graph: MoAGraph,
    model: ModelSpec,
    spec: MoASpec,
    seat: Seat,
    goto: str,
    chat_models: Mapping[str, BaseChatModel],
    gate: Callable[[MoAState], bool] | None = None,
) -> None:
    node = model_node(model, spec, seat, chat_models)
    if gate is not None:
        node = gated(gate, node)
    graph.add_node(
        seat.node,
        with_sync(node, seat.node),
        retry_policy=retry_policy(model),
        cache_policy=CachePolicy(key_func=cache_key(model, spec, seat, gate), ttl=spec.cache_ttl)
        if spec.cache
        else None,
        error_handler=with_sync(
            failure_handler(model, spec, seat, goto, chat_models, node), f"{seat.node} failed"
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
    topology: Mapping[str, Any] | None = None,
) -> MoAGraph:
    """The MoA graph for ``spec`` (a ``MoASpec``, dict, YAML/JSON path) or ``preset``.

    ``chat_models`` maps model names to ready chat model instances (your own client, or a
    fake in tests); every other model is created from its spec on first use.
    ``context_schema``: ``Context`` or a subclass with other defaults (the LangGraph server's
    graphs stream proposers by default).
    ``topology``: where the spec came from (``{"preset": name}`` / ``{"spec": {...}}``),
    recorded in state by every turn's first layer; the LangGraph server's factory reads it
    back so a thread keeps its graph.
    """
    spec = resolve_spec(spec, preset=preset)
    chat_models = dict(chat_models or {})
    graph = StateGraph(
        MoAState, context_schema=context_schema, input_schema=InputState, output_schema=OutputState
    )
    final_layer = len(spec.layers) + 1
    fallback = spec.aggregator.fallback is not None
    # What comes after the proposer layers (and after an early stop): review, Self-MoA-Seq's
    # window calls, or straight the aggregator.
    to_aggregator = windows_route(spec) if spec.aggregate_window is not None else None
    aggregator_entry = [WINDOW, AGGREGATOR] if to_aggregator else [AGGREGATOR]
    final: Step = [REVIEW] if spec.review else (to_aggregator or [AGGREGATOR])
    final_targets = [REVIEW] if spec.review else aggregator_entry
    for k, models in enumerate(spec.layers, 1):
        entry, reducer = names.layer(k), names.aggregate(k)
        graph.add_node(
            entry,
            with_sync(layer_entry(k, spec, chat_models, topology), entry),
            metadata={"moa_layer": k},
        )
        if k == 1:
            graph.add_edge(START, entry)
        seats = [names.proposer(k, str(model.name)) for model in models]
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
        # The steps after the reducer, in order; each hands on to the head of the rest.
        nxt: Step = [names.layer(k + 1)] if k < len(spec.layers) else final
        nxt_targets = [names.layer(k + 1)] if k < len(spec.layers) else final_targets
        stop_step = spec.early_stop is not None and k < len(spec.layers)
        if stop_step:
            _add_stop(graph, spec, k, chat_models, final, final_targets, nxt_targets[0])
            judge = spec.stop_judge()
            nxt = [names.judge(k, str(judge.name)) if judge else names.stop(k)]
            nxt_targets = list(nxt)
        if spec.rankers(k):
            _add_rank(graph, spec, k, chat_models, nxt, nxt_targets)
            nxt = nxt_targets = [names.ranker(k, str(m.name)) for m in spec.rankers(k)]
        # On, or to the fallback when the layer is below its quorum, or (a resumed run that
        # failed there) back to the proposers whose calls failed.
        graph.add_conditional_edges(
            reducer,
            route_after_layer(_route(nxt)),
            [*nxt_targets, FALLBACK] if fallback else [*nxt_targets, *seats],
        )
    if spec.aggregator.fallback is not None:
        # A whole layer failed: the aggregator's fallback answers the user directly.
        seat = Seat(node=FALLBACK, layer=final_layer, role="aggregator", references=False)
        _add_model(graph, spec.aggregator.fallback, spec, seat, END, chat_models)
        graph.add_edge(FALLBACK, END)
    if spec.review:  # the reviewer's answer or rejection ends the turn there
        graph.add_node(REVIEW, with_sync(review_node(spec), REVIEW))
        graph.add_conditional_edges(
            REVIEW,
            route_after_review(_route(to_aggregator or [AGGREGATOR])),
            [*aggregator_entry, END],
        )
    if to_aggregator is not None:  # Self-MoA-Seq: one call per window but the last
        seat = Seat(node=WINDOW, layer=final_layer, role="aggregator", references=True)
        _add_model(graph, spec.aggregator, spec, seat, AGGREGATOR, chat_models)
        graph.add_conditional_edges(WINDOW, to_aggregator, aggregator_entry)
    seat = Seat(node=AGGREGATOR, layer=final_layer, role="aggregator", references=True)
    _add_model(graph, spec.aggregator, spec, seat, END, chat_models)
    graph.add_edge(AGGREGATOR, END)
    return graph


def _route(step: Step) -> Callable[[Any], str | list[str]]:
    if callable(step):
        return step
    return lambda _state: step if len(step) > 1 else step[0]


def _connect(graph: MoAGraph, source: str, step: Step, targets: list[str]) -> None:
    if callable(step):
        graph.add_conditional_edges(source, step, targets)
    else:
        for target in step:
            graph.add_edge(source, target)


def _add_rank(
    graph: MoAGraph,
    spec: MoASpec,
    k: int,
    chat_models: Mapping[str, BaseChatModel],
    nxt: Step,
    nxt_targets: list[str],
) -> None:
    """Rank-then-fuse after layer ``k``: one node per ranker (a fan-out like the proposers'),
    then ``layer_k/rank`` combining their rankings."""
    combiner = names.rank(k)
    rankers = spec.rankers(k)
    for model in rankers:
        seat = Seat(
            node=names.ranker(k, str(model.name)),
            layer=k,
            role="ranker",
            references=True,
            layer_size=len(rankers),
        )
        _add_model(
            graph,
            model,
            spec,
            seat,
            combiner,
            chat_models,
            gate=functools.partial(should_rank, k, spec, model),
        )
        graph.add_edge(seat.node, combiner)
    graph.add_node(
        combiner,
        with_sync(rank_combiner(k, spec), combiner),
        metadata={"moa_layer": k, "moa_role": "rank"},
    )
    _connect(graph, combiner, nxt, nxt_targets)


def _add_stop(
    graph: MoAGraph,
    spec: MoASpec,
    k: int,
    chat_models: Mapping[str, BaseChatModel],
    final: Step,
    final_targets: list[str],
    next_layer: str,
) -> None:
    """Early stopping after layer ``k``: the judge (if any), then ``layer_k/stop`` deciding
    between the next layer and the final steps (a conditional edge)."""
    decider = names.stop(k)
    judge = spec.stop_judge()
    if judge is not None:
        seat = judge_seat(k, judge)
        _add_model(
            graph,
            judge,
            spec,
            seat,
            decider,
            chat_models,
            gate=functools.partial(should_judge, k, spec),
        )
        graph.add_edge(seat.node, decider)
    graph.add_node(
        decider,
        with_sync(stop_decider(k, spec), decider),
        metadata={"moa_layer": k, "moa_role": "stop"},
    )
    graph.add_conditional_edges(
        decider, route_after_stop(next_layer, _route(final)), [next_layer, *final_targets]
    )


def create_moa(
    spec: MoASpec | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    preset: str | None = None,
    chat_models: Mapping[str, BaseChatModel] | None = None,
    **compile_kwargs: Any,
) -> CompiledMoA:
    """``compile_moa(build_graph(...), **compile_kwargs)`` with the spec's name."""
    resolved = resolve_spec(spec, preset=preset)
    graph = build_graph(resolved, chat_models=chat_models)
    return compile_moa(graph, **{"name": resolved.name, **compile_kwargs})
