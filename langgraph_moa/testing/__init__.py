"""Test helpers: an OpenAI-compatible fake server with fault injection, and fake chat models.

Names are imported lazily so ``python -m langgraph_moa.testing.server`` does not import
the server module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph_moa.testing.fakes import RecordingChatModel
    from langgraph_moa.testing.server import (
        Behavior,
        ControlClient,
        OpenAIServer,
        ServerProcess,
        estimate_tokens,
    )

__all__ = ["Behavior", "ControlClient", "OpenAIServer", "ServerProcess", "estimate_tokens"]
__all__ += ["RecordingChatModel"]


def __getattr__(name: str) -> Any:
    if name == "RecordingChatModel":
        from langgraph_moa.testing.fakes import RecordingChatModel

        return RecordingChatModel
    if name in __all__:
        from langgraph_moa.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
