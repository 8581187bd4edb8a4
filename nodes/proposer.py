"""One model call per node. Proposers, the aggregator and fallbacks all run this code; the
only thing that differs between them is the ``ModelSpec`` and the ``Seat`` they were built with.

A node bounds each attempt by the model's ``timeout`` and raises on failure, so LangGraph's
``RetryPolicy`` decides what to retry; once retries are spent, the node's error handler
(LangGraph's ``error_handler``) turns the failure into data (a ``Call`` record) or calls the
model's fallback. A computed answer is written to
state the moment its node returns, so a crash or a later failure never loses it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM
from langgraph.errors import NodeError
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy

from langgraph_moa.errors import (
    ContextOverflowError,
    EmptyResponseError,
    MoAError,
    ModelCallError,
    ModelTimeoutError,
)
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import Call, CallStatus, Context, MoAState
from langgraph_moa.models.factory import get_chat_model
from langgraph_moa.nodes import budget
from langgraph_moa.nodes.deadline import LayerClock, StragglerCut, layer_clock
from langgraph_moa.nodes.layer import computed, strip_reasoning
from langgraph_moa.prompts import inject_references, with_system_prompt


@dataclass(frozen=True)
class Seat:
    """Where a model sits in the graph."""

    node: str
    layer: int
    role: Literal["proposer", "aggregator"]
    references: bool
    """Whether the model sees the previous layer's answers (every layer after the first)."""
    layer_size: int = 1


def prepare_messages(
    state: MoAState, model: ModelSpec, spec: MoASpec, seat: Seat, window: int | None = None
) -> tuple[list[AnyMessage], int]:
    """The exact messages this model receives, and how many references were shortened."""
    messages = with_system_prompt(list(state["messages"]), model.system_prompt)
    if not seat.references:
        return messages, 0
    references = list(state.get("references") or [])
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


def describe(exc: BaseException) -> str:
    """A one-line, secret-free reason for a failure."""
    import openai

    if isinstance(exc, StragglerCut):
        return "cut by the layer deadline"
    if isinstance(exc, openai.APIStatusError):
        message = exc.message if isinstance(exc.message, str) else str(exc.body)
        return f"HTTP {exc.status_code}: {message[:300]}"
    if isinstance(exc, openai.APITimeoutError):
        # The aiohttp transport reports a refused connection as a connect *timeout*.
        refused = _os_error(exc)
        return f"connection error: {refused}"[:300] if refused else "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection error: {cause or exc}"[:300]
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
        return f"malformed response: {exc}"[:300]
    if isinstance(exc, ModelCallError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"[:300]


def _os_error(exc: BaseException) -> OSError | None:
    """The network error (refused, reset, DNS...) behind ``exc``, if any; never a timeout."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def should_retry(exc: BaseException) -> bool:
    """RetryPolicy.retry_on: transient provider trouble yes, our own or client errors no."""
    import openai

    if isinstance(exc, ModelCallError):
        return exc.retryable
    if isinstance(exc, (MoAError, ImportError, StragglerCut)):
        return False
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return True


def retry_policy(model: ModelSpec) -> RetryPolicy:
    r = model.retry
    return RetryPolicy(
        initial_interval=r.initial_interval,
        backoff_factor=r.backoff_factor,
        max_interval=r.max_interval,
        max_attempts=r.max_attempts,
        jitter=r.jitter,
        retry_on=should_retry,
    )


def _retry_after(exc: BaseException) -> float | None:
    import openai

    if isinstance(exc, openai.RateLimitError):
        headers = exc.response.headers
        for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
            try:
                return float(headers[name]) / scale
            except (KeyError, ValueError):
                continue
    return None


def _is_context_length(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, openai.BadRequestError) and (
        getattr(exc, "code", None) == "context_length_exceeded"
        or "maximum context length" in str(exc)
    )


def _emit(runtime: Runtime[Context], event: str, seat: Seat, model: ModelSpec, **extra: Any):
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


class _FirstToken(BaseCallbackHandler):
    """Notes when the first token of a streamed call arrives (for ``Call.ttft_s``)."""

    run_inline = True  # called in the event loop, no executor hop per token

    def __init__(self) -> None:
        self.at: float | None = None

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        if self.at is None and token:
            self.at = time.perf_counter()


def _streaming_callbacks(seat: Seat, ctx: Context | None) -> BaseCallbackManager | None:
    """The node's callback manager if this call should stream, else None.

    A call streams only for a listener: LangGraph attaches its messages-stream handler (a
    ``_StreamingCallbackHandler``) only when the caller asked for ``stream_mode="messages"``,
    and LangChain chat models stream under ``ainvoke`` exactly when such a handler is there.
    Proposers additionally need ``Context.stream_proposers``: most callers watch the answer.
    """
    if seat.role == "proposer" and not (ctx is not None and ctx.stream_proposers):
        return None
    callbacks = get_config().get("callbacks")
    if not isinstance(callbacks, BaseCallbackManager):
        return None
    if any(isinstance(h, _StreamingCallbackHandler) for h in callbacks.handlers):
        return callbacks
    return None


async def _call_model(
    model: ModelSpec,
    messages: list[AnyMessage],
    seat: Seat,
    runtime: Runtime[Context],
    chat_models: Mapping[str, BaseChatModel],
) -> tuple[AIMessage, float, float | None]:
    """One completion; returns the message, latency and time to first token (streamed only).

    ``ainvoke`` lets LangChain choose: with a streaming listener attached it streams (tokens
    reach ``stream_mode="messages"`` as they come, merged into one message with one id, so
    LangGraph does not emit it twice), otherwise it makes one non-streaming request, the
    cheapest call there is. A proposer nobody watches is told so twice: ``stream=False``
    (LangChain's opt-out) and the ``nostream`` tag (LangGraph's messages stream skips it).
    """
    chat = chat_models.get(str(model.name)) or get_chat_model(model)
    ctx = runtime.context
    kwargs: dict[str, Any] = {}
    if ctx is not None and ctx.temperature is not None:
        kwargs["temperature"] = ctx.temperature
    if ctx is not None and ctx.max_tokens is not None:
        kwargs["max_tokens"] = ctx.max_tokens
    tags = [f"moa:{seat.role}", f"moa:layer_{seat.layer}", f"moa:model:{model.name}"]
    # moa_* metadata comes from the node (add_node metadata) and is inherited.
    config: RunnableConfig = {"run_name": seat.node, "tags": tags}
    first: _FirstToken | None = None
    streaming = _streaming_callbacks(seat, ctx)
    if streaming is not None:
        first = _FirstToken()
        callbacks = streaming.copy()
        callbacks.add_handler(first, inherit=False)
        config["callbacks"] = callbacks
    elif seat.role == "proposer":
        kwargs["stream"] = False
        tags.append(TAG_NOSTREAM)
    start = time.perf_counter()
    message = await chat.ainvoke(messages, config=config, **kwargs)
    latency = time.perf_counter() - start
    ttft = None if first is None or first.at is None else first.at - start
    if not isinstance(message, AIMessage) or not message.text.strip():
        raise EmptyResponseError(str(model.name), "empty response (no content)")
    return message, latency, ttft


def _record(
    model: ModelSpec,
    seat: Seat,
    status: CallStatus,
    *,
    attempts: int,
    latency: float = 0.0,
    ttft: float | None = None,
    message: AIMessage | None = None,
    error: str | None = None,
    truncated: int = 0,
    messages: list[AnyMessage] | None = None,
) -> Call:
    usage = message.usage_metadata if message is not None else None
    if usage:
        tokens_in, tokens_out = usage["input_tokens"], usage["output_tokens"]
    else:  # provider sent no usage: estimate, so totals stay meaningful
        tokens_in = budget.messages_tokens(messages) if messages and message else 0
        tokens_out = budget.estimate_tokens(message.text) if message is not None else 0
    return Call(
        node=seat.node,
        model=str(model.name),
        model_id=model.model,
        layer=seat.layer,
        role=seat.role,
        status=status,
        attempts=attempts,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        latency_s=round(latency, 4),
        ttft_s=None if ttft is None else round(ttft, 4),
        error=error,
        truncated=truncated,
        cost_usd=round(model.price.cost(tokens_in, tokens_out), 8) if model.price else None,
    )


def _result(seat: Seat, message: AIMessage, record: Call) -> dict[str, Any]:
    if seat.role == "proposer":
        return {"answers": {seat.node: message.text}, "calls": [record]}
    answer = AIMessage(content=message.text, id=message.id, usage_metadata=message.usage_metadata)
    return {"answer": message.text, "messages": [answer], "calls": [record]}


async def _answer(
    state: MoAState,
    model: ModelSpec,
    spec: MoASpec,
    seat: Seat,
    runtime: Runtime[Context],
    clock: LayerClock | None,
    attempts: int,
    chat_models: Mapping[str, BaseChatModel],
) -> tuple[AIMessage, Call]:
    """Prepare, call, and on a context-length 400 retry once with a tighter budget."""
    messages, truncated = prepare_messages(state, model, spec, seat)

    async def call() -> tuple[AIMessage, float, float | None]:
        work = _call_model(model, messages, seat, runtime, chat_models)
        if model.timeout:
            work = asyncio.wait_for(work, model.timeout)
        try:
            return await (clock.run(work) if clock else work)
        except asyncio.TimeoutError:
            raise ModelTimeoutError(
                str(model.name), f"timed out after {model.timeout:g}s"
            ) from None

    try:
        message, latency, ttft = await call()
    except Exception as exc:
        if not (_is_context_length(exc) and seat.references):
            raise
        window = budget.tighter_window(
            str(exc), model.context_window, budget.messages_tokens(messages)
        )
        _emit(runtime, "call_refit", seat, model, window=window)
        messages, truncated = prepare_messages(state, model, spec, seat, window=window)
        message, latency, ttft = await call()
    if not strip_reasoning(message.text, spec).strip():
        raise EmptyResponseError(str(model.name), "empty response (only reasoning)")
    record = _record(
        model,
        seat,
        "ok",
        attempts=attempts,
        latency=latency,
        ttft=ttft,
        message=message,
        truncated=truncated,
        messages=messages,
    )
    return message, record


def cache_key(model: ModelSpec, spec: MoASpec, seat: Seat):
    """CachePolicy key: what decides the answer (the model and the exact prompt it would get),
    and the run's overrides of the model's settings; not the rest of the state (per-call
    records, other layers)."""

    def key(state: MoAState) -> str:
        messages, _ = prepare_messages(state, model, spec, seat)
        prompt = [(m.type, m.text) for m in messages]
        settings = model.model_dump(mode="json", exclude={"fallback"})
        return json.dumps([settings, prompt, state.get("run_params") or {}])

    return key


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


_attempts: dict[tuple[str, str], int] = {}


def model_node(
    model: ModelSpec, spec: MoASpec, seat: Seat, chat_models: Mapping[str, BaseChatModel]
):
    """The node function for one model in one seat (``chat_models``: instances by name)."""

    async def call(state: MoAState, runtime: Runtime[Context]) -> dict[str, Any]:
        info = runtime.execution_info
        attempt = info.node_attempt if info else 1
        if info:
            _attempts[(info.checkpoint_id, seat.node)] = attempt
        clock = _clock(spec, seat, runtime)

        def cut() -> StragglerCut:
            """Cuts raise (so a response cache never stores one); the handler records it."""
            _emit(runtime, "call_cut", seat, model)
            if clock:
                clock.report(False)
            return StragglerCut()

        _emit(runtime, "call_started", seat, model, attempt=attempt)
        try:
            message, record = await _answer(
                state, model, spec, seat, runtime, clock, attempt, chat_models
            )
        except StragglerCut:
            raise cut() from None
        except Exception as exc:
            retry = should_retry(exc) and attempt < model.retry.max_attempts
            _emit(
                runtime,
                "call_error",
                seat,
                model,
                attempt=attempt,
                error=describe(exc),
                will_retry=retry,
            )
            wait = _retry_after(exc)
            if retry and wait:
                pause = asyncio.sleep(
                    max(0.0, min(wait, model.retry.max_retry_after) - model.retry.initial_interval)
                )
                try:  # the layer deadline also ends a Retry-After wait
                    await (clock.run(pause) if clock else pause)
                except StragglerCut:
                    raise cut() from None
            raise
        if info:
            _attempts.pop((info.checkpoint_id, seat.node), None)
        if clock:
            clock.report(True, record["latency_s"])
        if seat.role == "aggregator" and not seat.references and state.get("fallback_reason"):
            # The aggregator's fallback answering the user directly because a layer failed.
            record["status"] = "fallback"
            record["error"] = f"{state['fallback_reason']}; {model.name} answered"
        _emit(
            runtime,
            "call_finished",
            seat,
            model,
            latency_s=record["latency_s"],
            ttft_s=record["ttft_s"],
            input_tokens=record["input_tokens"],
            output_tokens=record["output_tokens"],
            attempt=attempt,
        )
        return _result(seat, message, record)

    return call


def failure_handler(
    model: ModelSpec,
    spec: MoASpec,
    seat: Seat,
    goto: str,
    chat_models: Mapping[str, BaseChatModel],
):
    """LangGraph error handler: runs once the node's retries are spent.

    Tries the model's fallback; otherwise a proposer's failure becomes a ``Call`` record and
    the layer goes on (its reducer applies the quorum), while the aggregator's is raised.
    """

    async def handle(state: MoAState, error: NodeError, runtime: Runtime[Context]) -> Command:
        info = runtime.execution_info
        attempts = _attempts.pop((info.checkpoint_id, seat.node), 1) if info else 1
        if isinstance(error.error, StragglerCut):  # the layer went on without this one
            record = _record(model, seat, "cut", attempts=attempts, error=describe(error.error))
            return Command(goto=goto, update={"calls": [record]})
        status: CallStatus = "timeout" if isinstance(error.error, ModelTimeoutError) else "failed"
        reason = describe(error.error)
        _emit(runtime, "call_failed", seat, model, error=reason, attempts=attempts)
        fallback = model.fallback
        while fallback is not None:
            try:
                message, record = await _answer(
                    state, fallback, spec, seat, runtime, None, 1, chat_models
                )
            except Exception as exc:
                reason += f"; fallback {fallback.name}: {describe(exc)}"
                fallback = fallback.fallback
                continue
            record["status"] = "fallback"
            record["error"] = f"{model.name} failed ({reason}); {fallback.name} answered"
            _emit(runtime, "call_fallback", seat, fallback, replaces=model.name, error=reason)
            if seat.role == "proposer":
                clock = _clock(spec, seat, runtime)
                if clock:
                    clock.report(True, record["latency_s"])
            return Command(goto=goto, update=_result(seat, message, record))
        if seat.role == "aggregator":
            failure = ModelCallError(str(model.name), reason, retryable=False)
            failure.partial = computed(state)
            raise failure from error.error
        clock = _clock(spec, seat, runtime)
        if clock:
            clock.report(False)
        record = _record(model, seat, status, attempts=attempts, error=reason)
        return Command(goto=goto, update={"calls": [record]})

    return handle
