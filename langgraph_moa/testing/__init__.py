"""Test helpers: an OpenAI-compatible fake server with fault injection.

Names are imported lazily so ``python -m langgraph_moa.testing.server`` does not import
the server module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph_moa.testing.server import (
        Behavior,
        ControlClient,
        OpenAIServer,
        ServerProcess,
        estimate_tokens,
    )

__all__ = ["Behavior", "ControlClient", "OpenAIServer", "ServerProcess", "estimate_tokens"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from langgraph_moa.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
