"""Self-MoA-Seq (Li et al. 2025, "Rethinking Mixture-of-Agents"): when the references do not
fit one aggregation call, aggregate them in a sliding window instead of truncating them.

With ``aggregate_window: k`` the references are split, in order, into windows of at most
``k`` references, fewer when ``k`` whole references would not fit the aggregator's
``context_window`` next to the running synthesis (counted at the aggregator's ``max_tokens``,
its longest possible answer). The first window is aggregated as usual; every later call reads
the running synthesis as reference 1, then its window's references, through the same
Aggregate-and-Synthesize prompt. ``aggregator/window`` makes every call but the last (a node
that loops on itself, one call record per window); ``aggregator`` makes the last, so the final
answer streams as ever. A reference too long to fit even alone is still truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AnyMessage

from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.nodes import budget
from langgraph_moa.prompts import inject_references, with_system_prompt


def _room(messages: list[AnyMessage], spec: MoASpec, slots: int) -> int | None:
    """Tokens left for ``slots`` references in one aggregator call (None: no window)."""
    model = spec.aggregator
    if not model.context_window:
        return None
    frame = inject_references(
        with_system_prompt(messages, model.system_prompt),
        [""] * slots,
        prompt=spec.aggregate_prompt,
        mode=spec.injection,
    )
    return model.context_window - (model.max_tokens or 0) - budget.messages_tokens(frame)


def plan(state: Mapping[str, Any], spec: MoASpec) -> list[list[int]]:
    """Indices of ``state["references"]`` per aggregation call, in order (one window when
    ``aggregate_window`` is unset or everything fits in one)."""
    references: list[str] = list(state.get("references") or [])
    k = spec.aggregate_window
    if k is None or not references:
        return [list(range(len(references)))]
    messages = list(state.get("messages") or [])
    synthesis = (spec.aggregator.max_tokens or 0) + budget.MESSAGE_OVERHEAD
    sizes = [budget.estimate_tokens(r) for r in references]
    windows: list[list[int]] = []
    i = 0
    while i < len(references):
        carried = 1 if windows else 0
        window = [i]
        while len(window) < k and i + len(window) < len(references):
            room = _room(messages, spec, carried + len(window) + 1)
            used = sizes[i + len(window)] + sum(sizes[j] for j in window)
            if room is not None and used + carried * synthesis > room:
                break
            window.append(i + len(window))
        windows.append(window)
        i += len(window)
    return windows


def window_references(state: Mapping[str, Any], spec: MoASpec, node: str) -> list[str]:
    """The references the aggregator reads in ``node``'s call (``aggregator/window``: the
    current window; ``aggregator``: the last one), the running synthesis first after the
    first window."""
    references: list[str] = list(state.get("references") or [])
    windows = plan(state, spec)
    if len(windows) == 1:
        return references
    i = int(state.get("window") or 0) if node == names.WINDOW else len(windows) - 1
    i = min(i, len(windows) - 1)
    carried = [str(state.get("synthesis") or "")] if i > 0 else []
    return carried + [references[j] for j in windows[i]]


def windows_route(spec: MoASpec) -> Callable[[Any], str]:
    """The route before the final answer: a window call, or the aggregator."""

    def route(state: Any) -> str:
        done = int(state.get("window") or 0)
        return names.WINDOW if done < len(plan(state, spec)) - 1 else names.AGGREGATOR

    return route
