"""Node names and kinds, built here and read everywhere else (builder, reducers, CLI, web).

    layer_1 -> layer_1/<model> ... -> layer_1/aggregate -> layer_2 -> ... -> aggregator

Beyond the paper (issue 15), each optional:

    layer_k/aggregate -> layer_k/rank/<ranker> ... -> layer_k/rank       (rank-then-fuse)
                      -> layer_k/stop/<judge> -> layer_k/stop             (early stopping)
    ... -> aggregator/window (loops, one call per window) -> aggregator   (Self-MoA-Seq)

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
WINDOW = "aggregator/window"
"""Self-MoA-Seq: one aggregation call per window of references, before the final one."""
ANSWER_NODES = frozenset({AGGREGATOR, FALLBACK})
"""Nodes whose tokens are the user's answer."""
RESERVED = frozenset({"aggregate", "rank", "stop"})
"""Model names a proposer may not have: ``layer_k/<name>`` would be one of the layer's own
nodes."""

NodeKind = Literal[
    "layer",
    "proposer",
    "aggregate",
    "aggregator",
    "fallback",
    "review",
    "window",
    "ranker",
    "rank",
    "judge",
    "stop",
]


def layer(k: int) -> str:
    """Entry of proposer layer ``k`` (1-based): every proposer of the layer fans out from it."""
    return f"layer_{k}"


def proposer(k: int, name: str) -> str:
    """The node of proposer ``name`` in layer ``k``."""
    return f"layer_{k}/{name}"


def aggregate(k: int) -> str:
    """The reducer of layer ``k``: collects its answers into the next layer's references."""
    return f"layer_{k}/aggregate"


def ranker(k: int, name: str) -> str:
    """A ranker of layer ``k``'s answers (a peer of the layer, or the judge)."""
    return f"layer_{k}/rank/{name}"


def rank(k: int) -> str:
    """Combines layer ``k``'s rankings (Borda) and keeps the top k answers as references."""
    return f"layer_{k}/rank"


def judge(k: int, name: str) -> str:
    """The early-stopping judge after layer ``k``."""
    return f"layer_{k}/stop/{name}"


def stop(k: int) -> str:
    """Decides whether the layer stack ends after layer ``k`` (early stopping)."""
    return f"layer_{k}/stop"


class NodeInfo(NamedTuple):
    kind: NodeKind
    layer: int | None
    model: str | None


def parse(node: str) -> NodeInfo | None:
    """What a node name means (for faces reading streams), or None if it is not ours."""
    if node in (AGGREGATOR, FALLBACK, REVIEW):
        return NodeInfo(node, None, None)  # type: ignore[arg-type]
    if node == WINDOW:
        return NodeInfo("window", None, None)
    head, sep, tail = node.partition("/")
    if not head.startswith("layer_") or not head[6:].isdigit():
        return None
    k = int(head[6:])
    if not sep:
        return NodeInfo("layer", k, None)
    if tail in ("aggregate", "rank", "stop"):
        return NodeInfo(tail, k, None)  # type: ignore[arg-type]
    step, sep, name = tail.partition("/")
    if sep and step in ("rank", "stop"):
        return NodeInfo("ranker" if step == "rank" else "judge", k, name)
    return NodeInfo("proposer", k, tail)
