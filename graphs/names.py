"""Node names and kinds, built here and read everywhere else (builder, reducers, CLI, web).

    layer_1 -> layer_1/<model> ... -> layer_1/aggregate -> layer_2 -> ... -> aggregator

Names are part of the public surface: they tag tokens in ``stream_mode="messages"``
(``langgraph_node``), name checkpoints' tasks, and are what Studio draws.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

AGGREGATOR = "aggregator"
"""The final aggregator: writes the answer."""
FALLBACK = "fallback"
"""The aggregator's fallback answering the user directly when a whole layer failed."""
REVIEW = "review"
"""The human-review pause before the aggregator (``review: true``)."""
ANSWER_NODES = frozenset({AGGREGATOR, FALLBACK})
"""Nodes whose tokens are the user's answer."""

NodeKind = Literal["layer", "proposer", "aggregate", "aggregator", "fallback", "review"]


def layer(k: int) -> str:
    """Entry of proposer layer ``k`` (1-based): every proposer of the layer fans out from it."""
    return f"layer_{k}"


def proposer(k: int, name: str) -> str:
    """The node of proposer ``name`` in layer ``k``."""
    return f"layer_{k}/{name}"


def aggregate(k: int) -> str:
    """The reducer of layer ``k``: collects its answers into the next layer's references."""
    return f"layer_{k}/aggregate"


class NodeInfo(NamedTuple):
    kind: NodeKind
    layer: int | None
    model: str | None


def parse(node: str) -> NodeInfo | None:
    """What a node name means (for faces reading streams), or None if it is not ours."""
    if node in (AGGREGATOR, FALLBACK, REVIEW):
        return NodeInfo(node, None, None)  # type: ignore[arg-type]
    head, sep, tail = node.partition("/")
    if not head.startswith("layer_") or not head[6:].isdigit():
        return None
    k = int(head[6:])
    if not sep:
        return NodeInfo("layer", k, None)
    if tail == "aggregate":
        return NodeInfo("aggregate", k, None)
    return NodeInfo("proposer", k, tail)
