"""The node of one seated model and its error handler. Proposers, the aggregator and fallbacks
all run this code.

A node bounds each attempt by the model's ``timeout`` and raises on failure, so LangGraph's
``RetryPolicy`` decides what to retry; once retries are spent, the node's error handler
(LangGraph's ``error_handler``) turns the failure into data (a ``Call`` record) or calls the
model's fallback. A computed answer is written to state the moment its node returns, so a
crash or a later failure never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.errors import NodeError
from langgraph.runtime import Runtime
from langgraph.types import Command

from langgraph_moa.errors import ModelCallError, ModelTimeoutError
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import Call, CallStatus, Context, MoAState
from langgraph_moa.nodes.call import answer, record, result
from langgraph_moa.nodes.deadline import LayerClock, StragglerCut, layer_clock
from langgraph_moa.nodes.failures import describe, retry_after, should_retry
from langgraph_moa.nodes.layer import computed
from langgraph_moa.nodes.seat import Seat, emit
from langgraph_moa.redact import scrub_exception


def _clock(spec: MoASpec, seat: Seat, runtime: Runtime[Context]) -> LayerClock | None:
    info = runtime.execution_info
    if seat.role != "proposer" or info is None:
        return None
    return layer_clock(
        f"{info.checkpoint_id}/{seat.layer}",
        seat.layer_size,
        spec.min_successful,
        spec.layer_deadline,
        spec.layer_deadline_factor,
    )


_ATTEMPTS = "moa_attempts"
"""Attribute an attempt's exception carries to the error handler: how many attempts were made.
(The handler runs as a task of its own and cannot see the failed task's attempt count.)"""
_LATENCY = "moa_latency"
"""...and how long that last attempt took, seconds (for the failed call's record)."""


def _fresh(exc: object) -> bool:
    """Whether ``exc`` is the failure the node just raised in this run (it carries the
    attempt count), not one read back from a checkpoint by a resumed run."""
    return isinstance(exc, BaseException) and hasattr(exc, _ATTEMPTS)


def _with_attempts(exc: BaseException, attempt: int, latency: float = 0.0) -> BaseException:
    with contextlib.suppress(AttributeError):  # a few C exceptions take no attributes
        setattr(exc, _ATTEMPTS, attempt)
        setattr(exc, _LATENCY, latency)
    return exc


def _failed(
    model: ModelSpec, seat: Seat, exc: BaseException, status: CallStatus, reason: str
) -> Call:
    """The record of a call that ended without an answer (its retries spent)."""
    attempts = int(getattr(exc, _ATTEMPTS, 1))
    latency = float(getattr(exc, _LATENCY, 0.0))
    return record(model, seat, status, attempts=attempts, latency=latency, error=reason)


NodeFunction = Callable[[MoAState, Runtime[Context]], Coroutine[Any, Any, dict[str, Any]]]
HandlerFunction = Callable[
    [MoAState, NodeError, Runtime[Context]], Coroutine[Any, Any, Command[str]]
]


def model_node(
    model: ModelSpec, spec: MoASpec, seat: Seat, chat_models: Mapping[str, BaseChatModel]
) -> NodeFunction:
    """The node function for one model in one seat (``chat_models``: instances by name)."""

    async def call(state: MoAState, runtime: Runtime[Context]) -> dict[str, Any]:
        info = runtime.execution_info
        attempt = info.node_attempt if info else 1
        clock = _clock(spec, seat, runtime)

        def cut() -> BaseException:
            """Cuts raise (so a response cache never stores one); the handler records it."""
            emit(runtime, "call_cut", seat, model)
            if clock:
                clock.report(False)
            return _with_attempts(StragglerCut(), attempt, time.perf_counter() - start)

        emit(runtime, "call_started", seat, model, attempt=attempt)
        start = time.perf_counter()
        try:
            message, done = await answer(
                state, model, spec, seat, runtime, clock, attempt, chat_models
            )
        except StragglerCut:
            raise cut() from None
        except Exception as exc:
            # Scrubbed before anyone sees it: LangGraph keeps the exception for the retry
            # decision, the error handler, checkpoint writes and the caller's traceback.
            _with_attempts(scrub_exception(exc), attempt, time.perf_counter() - start)
            retry = should_retry(exc) and attempt < model.retry.max_attempts
            emit(
                runtime,
                "call_error",
                seat,
                model,
                attempt=attempt,
                error=describe(exc),
                will_retry=retry,
            )
            wait = retry_after(exc)
            if retry and wait:
                pause = asyncio.sleep(
                    max(0.0, min(wait, model.retry.max_retry_after) - model.retry.initial_interval)
                )
                try:  # the layer deadline also ends a Retry-After wait
                    await (clock.run(pause) if clock else pause)
                except StragglerCut:
                    raise cut() from None
            raise
        if clock:
            clock.report(True, done["latency_s"])
        if seat.role == "aggregator" and not seat.references and state.get("fallback_reason"):
            # The aggregator's fallback answering the user directly because a layer failed.
            done["status"] = "fallback"
            done["error"] = f"{state['fallback_reason']}; {model.name} answered"
        emit(
            runtime,
            "call_finished",
            seat,
            model,
            latency_s=done["latency_s"],
            ttft_s=done["ttft_s"],
            input_tokens=done["input_tokens"],
            output_tokens=done["output_tokens"],
            attempt=attempt,
        )
        return result(seat, message, done, state, spec)

    return call


def gated(gate: Callable[[MoAState], bool], node: NodeFunction) -> NodeFunction:
    """``node``, called only when ``gate(state)`` says so (a ranker with nothing to drop, a
    judge whose question is already answered): otherwise the node writes nothing."""

    async def call(state: MoAState, runtime: Runtime[Context]) -> dict[str, Any]:
        if not gate(state):
            return {}
        return await node(state, runtime)

    return call


def failure_handler(
    model: ModelSpec,
    spec: MoASpec,
    seat: Seat,
    goto: str,
    chat_models: Mapping[str, BaseChatModel],
    node: NodeFunction,
) -> HandlerFunction:
    """LangGraph error handler: runs once the node's retries are spent.

    Tries the model's fallback; otherwise a proposer's failure becomes a ``Call`` record and
    the layer goes on (its reducer applies the quorum), while the aggregator's is raised.

    A run that failed here and is resumed runs the *handler* again, not the node (LangGraph
    re-runs a failed node's handler), with the failure read back from the checkpoint: then
    the handler calls the model (``node``) once more first, so a resumed run succeeds once the
    model answers again.
    """

    async def handle(state: MoAState, error: NodeError, runtime: Runtime[Context]) -> Command[str]:
        exc: BaseException | str = error.error
        if not _fresh(exc):  # failed in an earlier run: call the model once more
            try:
                return Command(goto=goto, update=await node(state, runtime))
            except Exception as again:
                exc = again
        assert isinstance(exc, BaseException)
        if isinstance(exc, StragglerCut):  # the layer went on without this one
            cut = _failed(model, seat, exc, "cut", describe(exc))
            return Command(goto=goto, update={"calls": [cut]})
        status: CallStatus = "timeout" if isinstance(exc, ModelTimeoutError) else "failed"
        reason = describe(exc)
        emit(
            runtime,
            "call_failed",
            seat,
            model,
            error=reason,
            attempts=int(getattr(exc, _ATTEMPTS, 1)),
        )
        fallback = model.fallback
        while fallback is not None:
            try:
                message, done = await answer(
                    state, fallback, spec, seat, runtime, None, 1, chat_models
                )
            except Exception as fallback_error:
                reason += f"; fallback {fallback.name}: {describe(fallback_error)}"
                fallback = fallback.fallback
                continue
            done["status"] = "fallback"
            done["error"] = f"{model.name} failed ({reason}); {fallback.name} answered"
            emit(runtime, "call_fallback", seat, fallback, replaces=model.name, error=reason)
            if seat.role == "proposer":
                clock = _clock(spec, seat, runtime)
                if clock:
                    clock.report(True, done["latency_s"])
            return Command(goto=goto, update=result(seat, message, done, state, spec))
        # One record for the seat (its fallbacks' failures named in its error), as when a
        # fallback answers: the seat's call ended without an answer.
        failed = _failed(model, seat, exc, status, reason)
        if seat.role == "aggregator":
            # The run ends here: the record travels with the error (``partial``), so the
            # faces' call and cost totals count the call that failed.
            failure = ModelCallError(str(model.name), reason, retryable=False)
            failure.partial = computed(state)
            failure.partial["calls"] = [*(failure.partial.get("calls") or []), failed]
            raise failure from exc
        clock = _clock(spec, seat, runtime)
        if clock:
            clock.report(False)
        return Command(goto=goto, update={"calls": [failed]})

    return handle
