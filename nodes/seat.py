"""Where a model sits in the graph (its ``Seat``) and how a seated model reports progress.

The only things that differ between a proposer, the aggregator and a fallback are the
``ModelSpec`` and the ``Seat`` their node was built with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime

from langgraph_moa.graphs.spec import ModelSpec
from langgraph_moa.graphs.state import Context, Role


@dataclass(frozen=True)
class Seat:
    """Where a model sits in the graph."""

    node: str
    layer: int
    role: Role
    references: bool
    """Whether the model sees the previous layer's answers (every layer after the first)."""
    layer_size: int = 1


def emit(runtime: Runtime[Context], event: str, seat: Seat, model: ModelSpec, **extra: Any) -> None:
    """A progress event on ``stream_mode="custom"`` (a no-op when nobody streams custom)."""
    runtime.stream_writer(
        {
            "event": event,
            "node": seat.node,
            "layer": seat.layer,
            "role": seat.role,
            "model": model.name,
            **extra,
        }
    )
