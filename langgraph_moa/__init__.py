"""langgraph-moa: Mixture-of-Agents (Wang et al. 2024) as a LangGraph graph.

    from langgraph_moa import create_moa
    graph = create_moa(preset="local")          # or a MoASpec / dict / YAML path
    out = await graph.ainvoke({"messages": [("user", "What is MoA?")]})

Names are imported on first use, so ``moa presets`` does not pay for LangGraph's import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time names load on first use
    from langgraph_moa.chat_model import ChatMoA as ChatMoA
    from langgraph_moa.errors import (
        ContextOverflowError as ContextOverflowError,
        EmptyResponseError as EmptyResponseError,
        InvalidInputError as InvalidInputError,
        LayerFailedError as LayerFailedError,
        MissingAPIKeyError as MissingAPIKeyError,
        MoAError as MoAError,
        ModelCallError as ModelCallError,
        ModelTimeoutError as ModelTimeoutError,
        SpecError as SpecError,
        ToolCallingUnsupportedError as ToolCallingUnsupportedError,
    )
    from langgraph_moa.graphs.builder import (
        build_graph as build_graph,
        create_moa as create_moa,
    )
    from langgraph_moa.graphs.spec import (
        MoASpec as MoASpec,
        ModelSpec as ModelSpec,
        load_preset as load_preset,
        load_spec as load_spec,
        parse_spec as parse_spec,
        preset_names as preset_names,
    )
    from langgraph_moa.graphs.state import (
        Call as Call,
        Context as Context,
        InputState as InputState,
        MoAState as MoAState,
        OutputState as OutputState,
    )
    from langgraph_moa.prompts import (
        AGGREGATE_PROMPT as AGGREGATE_PROMPT,
        inject_references as inject_references,
    )


_EXPORTS = {
    "langgraph_moa.chat_model": ["ChatMoA"],
    "langgraph_moa.graphs.builder": ["build_graph", "create_moa"],
    "langgraph_moa.graphs.spec": [
        "MoASpec",
        "ModelSpec",
        "load_preset",
        "load_spec",
        "parse_spec",
        "preset_names",
    ],
    "langgraph_moa.graphs.state": ["Call", "Context", "InputState", "MoAState", "OutputState"],
    "langgraph_moa.prompts": ["AGGREGATE_PROMPT", "inject_references"],
    "langgraph_moa.errors": [
        "ContextOverflowError",
        "CostLimitError",
        "EmptyResponseError",
        "InvalidInputError",
        "LayerFailedError",
        "MissingAPIKeyError",
        "ModelTimeoutError",
        "ModelCallError",
        "MoAError",
        "SpecError",
        "ToolCallingUnsupportedError",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
