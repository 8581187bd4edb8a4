"""Layer entry, layer reducer and review nodes: everything around the model calls.

The entry of layer 1 also starts the run: it checks the input and the API keys (so a bad
question or a missing key fails before any model is called) and clears the previous run's
per-turn data, keeping the conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import regex
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_RESUMING
from langgraph.runtime import Runtime

from langgraph_moa import costs
from langgraph_moa.errors import CostLimitError, InvalidInputError, LayerFailedError
from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import DEFAULT_STRIP_PATTERNS, MoASpec
from langgraph_moa.graphs.state import Context, MoAState
from langgraph_moa.models.sampling import ANSWER_FIELDS, EVERY_MODEL_FIELDS
from langgraph_moa.nodes.caps import cap_reference
from langgraph_moa.nodes.tools import (
    answer_format,
    check_response_format_support,
    check_tool_support,
)

_log = logging.getLogger(__name__)
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
"""LangChain's message types and the role names every error uses (OpenAI's)."""


def validate_messages(messages: list[AnyMessage]) -> None:
    """A clear ``InvalidInputError`` for input no model should see, with roles named as
    OpenAI names them. What OpenAI accepts is accepted: a system-only conversation, empty
    content, and a last ``assistant`` turn (a prefill: the answer continues it)."""
    if not messages:
        raise InvalidInputError("no messages: ask a question")
    for i, m in enumerate(messages):
        if m.type not in _ROLES:
            raise InvalidInputError(f"messages[{i}]: unsupported role {m.type!r}")
        if not isinstance(m.content, (str, list)):
            raise InvalidInputError(f"messages[{i}]: content must be text")
    last = messages[-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        raise InvalidInputError(
            f"messages[{len(messages) - 1}]: an 'assistant' message with tool_calls must be"
            " followed by 'tool' messages answering each call"
        )


def computed(state: MoAState) -> dict[str, Any]:
    """What a failing run had computed, for ``MoAError.partial``."""
    return {k: state.get(k) for k in ("answers", "references", "calls")}


REGEX_TIMEOUT = 0.1
"""Seconds a spec's own strip pattern may run on one answer; a pattern that takes longer
(catastrophic backtracking) is skipped for that answer instead of freezing the event loop."""

_FIXED: dict[str, tuple[str, str]] = {
    DEFAULT_STRIP_PATTERNS[0]: ("<think>", "</think>"),
    DEFAULT_STRIP_PATTERNS[1]: ("<thinking>", "</thinking>"),
}
"""The default patterns as (open, close) tags: removed by string search, in linear time."""


def _strip_block(text: str, open_tag: str, close_tag: str) -> str:
    """``text`` without ``open_tag``...``close_tag`` blocks (an unclosed one runs to the end)."""
    parts: list[str] = []
    pos = 0
    while (start := text.find(open_tag, pos)) != -1:
        parts.append(text[pos:start])
        end = text.find(close_tag, start + len(open_tag))
        if end == -1:
            return "".join(parts)
        pos = end + len(close_tag)
    parts.append(text[pos:])
    return "".join(parts)


def strip_reasoning(text: str, spec: MoASpec) -> str:
    """``text`` without the spec's reasoning blocks (``<think>``...): what others may read.

    The default patterns run as string search (linear time); a spec's own patterns (trusted
    specs only: the run policy refuses them from clients) run on the ``regex`` engine with a
    timeout, so a backtracking pattern cannot block the process.
    """
    for pattern in spec.strip_patterns:
        tags = _FIXED.get(pattern)
        if tags is not None:
            text = _strip_block(text, *tags)
            continue
        try:
            text = regex.sub(pattern, "", text, flags=regex.S, timeout=REGEX_TIMEOUT)
        except TimeoutError:
            _log.warning("strip pattern %r timed out after %ss; skipped", pattern, REGEX_TIMEOUT)
    return text


def layer_entry(
    layer: int,
    spec: MoASpec,
    chat_models: Mapping[str, BaseChatModel] | None = None,
    topology: Mapping[str, Any] | None = None,
) -> Callable[[MoAState, Runtime[Context]], Coroutine[Any, Any, dict[str, Any]]]:
    """Entry of a proposer layer: the node every proposer of the layer fans out from.
    The first layer's also records ``topology`` (the LangGraph server's graphs)."""

    async def enter(state: MoAState, runtime: Runtime[Context]) -> dict[str, Any]:
        runtime.stream_writer(
            {
                "event": "layer_started",
                "layer": layer,
                "models": [m.name for m in spec.layers[layer - 1]],
            }
        )
        if layer > 1:
            raise_over_cost(costs.guard_layer(state, spec, layer, runtime.context), state)
            return {}
        validate_messages(state.get("messages") or [])
        spec.check_keys()
        if runtime.context is not None and runtime.context.tools:
            check_tool_support(spec, chat_models or {})
        if runtime.context is not None and answer_format(runtime.context):
            check_response_format_support(spec, chat_models or {})
        raise_over_cost(costs.guard_layer(state, spec, layer, runtime.context), None)
        return {
            # None empties a record (the state's reducers): a new turn starts clean
            "answers": None,
            "calls": None,
            "references": [],
            "answer": "",
            "fallback_reason": "",
            "run_params": run_params(runtime.context),
            # beyond the paper (issue 15): per-turn records of the optional steps
            "rank_raw": None,
            "rankings": None,
            "stop_checks": None,
            "early_stop": None,
            "verdict": "",
            "synthesis": "",
            "window": 0,
            "redo": [],
            "review": None,
            **({"topology": dict(topology)} if topology is not None else {}),
        }

    return enter


def _capped_references(
    layer: int, spec: MoASpec, answers: Mapping[str, str]
) -> list[tuple[str, str, bool]]:
    """``(node, reference, cut)`` for every answer of layer ``layer``, in spec order."""
    out = []
    for model in spec.layers[layer - 1]:
        node = names.proposer(layer, str(model.name))
        if node in answers:
            text = strip_reasoning(answers[node], spec).strip()
            out.append((node, *cap_reference(text, costs.reference_cap(model, spec))))
    return out


def layer_references(
    layer: int, spec: MoASpec, answers: Mapping[str, str]
) -> list[tuple[str, str]]:
    """``(node, reference)`` for every answer of layer ``layer``, in spec order: the answer
    without reasoning blocks, capped by ``reference_max_tokens``. What the next layer reads
    (unless a rank step keeps fewer), and what rankers and the early-stopping judge see."""
    return [(node, ref) for node, ref, _ in _capped_references(layer, spec, answers)]


def resuming(config: RunnableConfig | None) -> bool:
    """Whether this task runs in the first step of a resumed run (``invoke(None, thread)``,
    a ``Command``, a LangGraph server run with no input): LangGraph's own flag, set for the
    first super-step of a run that continues a checkpoint. (An internal name of LangGraph's;
    tests/test_resume_and_review.py fails if it ever stops meaning this.)"""
    return bool(((config or {}).get("configurable") or {}).get(CONFIG_KEY_RESUMING))


def layer_reducer(
    layer: int, spec: MoASpec
) -> Callable[[MoAState, Runtime[Context], RunnableConfig], Coroutine[Any, Any, dict[str, Any]]]:
    """Collect a layer's answers into ``references``, in spec order, and apply the quorum.

    Spec order (not completion order) makes runs reproducible and matches the reference
    implementation. Reasoning blocks (``<think>``...) are stripped before anyone reads them.

    Below the quorum (and no aggregator fallback) the run fails with ``LayerFailedError``.
    Resuming that run (the reducer is then the first step) calls again only the proposers of
    the layer that have no answer (``redo``, routed by ``route_after_layer``): a transient
    upstream failure is over once the model answers, without re-calling the ones that did.
    """
    can_fall_back = spec.aggregator.fallback is not None
    last = layer == len(spec.layers)
    seats = [names.proposer(layer, str(m.name)) for m in spec.layers[layer - 1]]

    async def reduce(
        state: MoAState, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        answers = state.get("answers") or {}
        refs = _capped_references(layer, spec, answers)
        references = [ref for _, ref, _ in refs]
        capped = sum(cut for *_, cut in refs)
        runtime.stream_writer(
            {
                "event": "layer_finished",
                "layer": layer,
                "answers": len(references),
                "of": len(spec.layers[layer - 1]),
                **({"capped": capped} if capped else {}),
            }
        )
        if len(references) >= spec.min_successful:
            if last:  # the aggregator is next: does its worst case still fit max_cost?
                pending = layer if spec.rankers(layer) else None
                over = costs.guard_final(state, spec, runtime.context, references, False, pending)
                raise_over_cost(over, state)
            return {"references": references, "redo": []}
        if not can_fall_back and resuming(config):
            return {"redo": [seat for seat in seats if seat not in answers]}
        failures = {
            c["model"]: c["error"] or c["status"]
            for c in state.get("calls") or []
            if c["layer"] == layer and c["status"] in ("failed", "timeout", "cut")
        }
        error = LayerFailedError(layer, failures, spec.min_successful, len(references))
        if not can_fall_back:
            error.partial = computed(state)
            raise error
        raise_over_cost(costs.guard_final(state, spec, runtime.context, references, True), state)
        return {"references": references, "fallback_reason": str(error), "redo": []}

    return reduce


def run_params(context: Context | None) -> dict[str, Any]:
    """The context's overrides of model settings, for the cache key (issue 15)."""
    if context is None:
        return {}
    overrides = {
        "temperature": context.temperature,
        "max_tokens": context.max_tokens,
        # What the final answer may call changes it (and what the aggregator is sent).
        "tools": context.tools,
        "tool_choice": context.tool_choice,
        "stop": context.stop,
        "response_format": context.response_format,
        # the answer's sampling settings (and seed), as the models get them
        "answer_max_tokens": context.answer_max_tokens,
        **{name: getattr(context, name) for name in (*ANSWER_FIELDS, *EVERY_MODEL_FIELDS)},
    }
    return {k: v for k, v in overrides.items() if v is not None}


def raise_over_cost(error: CostLimitError | None, state: MoAState | None) -> None:
    """Raise max_cost's error (issue 15) with what the run computed so far."""
    if error is not None:
        error.partial = computed(state) if state is not None else None
        raise error


def route_after_layer(
    next_step: str | Callable[[MoAState], str | list[str]],
) -> Callable[[MoAState], str | list[str]]:
    """After a layer: on to ``next_step`` (a node, or a route deciding the next nodes), back
    to the proposers a resumed run calls again (``redo``), or to the fallback answer if the
    quorum failed."""

    def route(state: MoAState) -> str | list[str]:
        if redo := state.get("redo"):
            return redo
        if state.get("fallback_reason"):
            return names.FALLBACK
        return next_step(state) if callable(next_step) else next_step

    return route
