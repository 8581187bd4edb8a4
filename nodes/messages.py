"""What exactly a model receives: the conversation, its persona, and (from layer 2 on) the
previous layer's answers through the Aggregate-and-Synthesize prompt, fitted into its context
window. The response cache keys on the same messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from langchain_core.messages import AnyMessage

from langgraph_moa.errors import ContextOverflowError
from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import MoAState
from langgraph_moa.models.sampling import ANSWER_FIELDS, reaches
from langgraph_moa.nodes import budget
from langgraph_moa.nodes.seat import Seat
from langgraph_moa.nodes.tools import tool_turns_as_text
from langgraph_moa.nodes.window import window_references
from langgraph_moa.prompts import inject_references, with_system_prompt


def offers_tools(seat: Seat, state: MoAState) -> bool:
    """Whether this seat's model is handed the run's tools: the answer nodes only, and only
    in a run that offers tools (``run_params``, written from the run's context by layer_1)."""
    return seat.node in names.ANSWER_NODES and bool((state.get("run_params") or {}).get("tools"))


def prepare_messages(
    state: MoAState, model: ModelSpec, spec: MoASpec, seat: Seat, window: int | None = None
) -> tuple[list[AnyMessage], int]:
    """The exact messages this model receives, and how many references were shortened.

    A model that is not handed the run's tools sees tool calls and results as plain text."""
    if seat.role == "ranker":
        from langgraph_moa.nodes.rank import ranking_messages

        return ranking_messages(state, model, spec, seat), 0
    if seat.role == "judge":
        from langgraph_moa.nodes.stop import judge_messages

        return judge_messages(state, model, spec), 0
    conversation = list(state["messages"])
    if not offers_tools(seat, state):
        conversation = tool_turns_as_text(conversation)
    messages = with_system_prompt(conversation, model.system_prompt)
    if not seat.references:
        return messages, 0
    references = list(state.get("references") or [])
    if spec.aggregate_window is not None and seat.node in (names.WINDOW, names.AGGREGATOR):
        references = window_references(state, spec, seat.node)  # Self-MoA-Seq
    window = window or model.context_window
    truncated = 0
    if window:
        frame = inject_references(
            messages, [""] * len(references), prompt=spec.aggregate_prompt, mode=spec.injection
        )
        available = window - (model.max_tokens or 0) - budget.messages_tokens(frame)
        try:
            references, truncated = budget.fit_references(references, available)
        except ValueError as exc:
            raise ContextOverflowError(
                str(model.name), f"prompt does not fit the {window}-token context window: {exc}"
            ) from None
    return (
        inject_references(messages, references, prompt=spec.aggregate_prompt, mode=spec.injection),
        truncated,
    )


ANSWER_PARAMS = frozenset(
    {"tools", "tool_choice", "stop", "response_format", "answer_max_tokens", *ANSWER_FIELDS}
)
"""Run parameters only the answer nodes (aggregator, fallback) are called with."""
SAMPLING_PARAMS = frozenset({"answer_max_tokens", *ANSWER_FIELDS})
"""Those of them that also reach the proposers of a ``request_sampling: all`` spec."""


def cache_key(
    model: ModelSpec, spec: MoASpec, seat: Seat, gate: Callable[[MoAState], bool] | None = None
) -> Callable[[MoAState], str]:
    """CachePolicy key: what decides the answer (the model and the exact prompt it would get),
    and the run's overrides of the model's settings (``state["run_params"]``, written by
    ``layer_1``: a key function sees only the node's input, never the run's context); not the
    rest of the state (per-call records, other layers). A gated node (a ranker, the
    early-stopping judge) keys on its gate too: a skipped call's empty result is never reused
    for a call that should be made."""

    def key(state: MoAState) -> str:
        messages, _ = prepare_messages(state, model, spec, seat)
        prompt = [
            (m.type, m.text, tc) if (tc := getattr(m, "tool_calls", None)) else (m.type, m.text)
            for m in messages
        ]
        settings = model.model_dump(mode="json", exclude={"fallback"})
        called = [gate(state)] if gate is not None else []
        params = state.get("run_params") or {}
        if seat.node not in names.ANSWER_NODES:  # tools, stop: answer nodes only
            sampled = reaches(spec, seat.role, False)  # request_sampling: all
            unused = ANSWER_PARAMS - SAMPLING_PARAMS if sampled else ANSWER_PARAMS
            params = {k: v for k, v in params.items() if k not in unused}
        return json.dumps([settings, prompt, params, *called])

    return key
