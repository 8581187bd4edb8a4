"""One model call: prepare the messages, call the chat model (streaming only for a listener),
time it, check the answer, and on a context-length error refit the references once.

Raises on failure, so LangGraph's ``RetryPolicy`` on the node decides what to retry.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar, cast

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM
from langgraph.runtime import Runtime

from langgraph_moa.errors import (
    EmptyResponseError,
    ModelTimeoutError,
    ToolCallingUnsupportedError,
)
from langgraph_moa.graphs.names import ANSWER_NODES, WINDOW
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import Call, CallStatus, Context, MoAState
from langgraph_moa.models.factory import get_chat_model
from langgraph_moa.models.sampling import call_settings, reaches
from langgraph_moa.nodes import budget
from langgraph_moa.nodes.deadline import LayerClock
from langgraph_moa.nodes.failures import is_context_length
from langgraph_moa.nodes.layer import strip_reasoning
from langgraph_moa.nodes.messages import prepare_messages
from langgraph_moa.nodes.seat import Seat, emit
from langgraph_moa.nodes.tools import answer_format

T = TypeVar("T")


class _FirstToken(BaseCallbackHandler):
    """Notes when the first token of a streamed call arrives (for ``Call.ttft_s``)."""

    run_inline = True  # called in the event loop, no executor hop per token

    def __init__(self) -> None:
        self.at: float | None = None

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        if self.at is None and token:
            self.at = time.perf_counter()


class _Named(BaseCallbackHandler):
    """Names every streamed chunk after the model that writes it (``AIMessageChunk.name``),
    so a chat view of the messages stream (Studio, ``useStream``) shows who speaks. Runs
    first, inline, so the messages stream sees the chunk with its name."""

    run_inline = True

    def __init__(self, name: str) -> None:
        self.name = name

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        message = getattr(chunk, "message", None)
        if message is not None and not message.name:
            message.name = self.name


def _streaming_callbacks(seat: Seat, ctx: Context | None) -> BaseCallbackManager | None:
    """The node's callback manager if this call should stream, else None.

    A call streams only for a listener: LangGraph attaches its messages-stream handler (a
    ``_StreamingCallbackHandler``) only when the caller asked for ``stream_mode="messages"``,
    and LangChain chat models stream under ``ainvoke`` exactly when such a handler is there.
    Proposers additionally need ``Context.stream_proposers``: most callers watch the answer.
    """
    if seat.node not in ANSWER_NODES and not (ctx is not None and ctx.stream_proposers):
        return None  # proposers, rankers, judges, Self-MoA-Seq windows: not the answer
    callbacks = get_config().get("callbacks")
    if not isinstance(callbacks, BaseCallbackManager):
        return None
    if any(isinstance(h, _StreamingCallbackHandler) for h in callbacks.handlers):
        return callbacks
    return None


async def call_model(
    model: ModelSpec,
    messages: list[AnyMessage],
    seat: Seat,
    runtime: Runtime[Context],
    chat_models: Mapping[str, BaseChatModel],
    spec: MoASpec,
) -> tuple[AIMessage, float, float | None]:
    """One completion; returns the message, latency and time to first token (streamed only).

    ``ainvoke`` lets LangChain choose: with a streaming listener attached it streams (tokens
    reach ``stream_mode="messages"`` as they come, merged into one message with one id, so
    LangGraph does not emit it twice), otherwise it makes one non-streaming request, the
    cheapest call there is. A proposer nobody watches is told so twice: ``stream=False``
    (LangChain's opt-out) and the ``nostream`` tag (LangGraph's messages stream skips it).
    """
    chat: Runnable[Any, Any] = chat_models.get(str(model.name)) or get_chat_model(model)
    ctx = runtime.context
    kwargs: dict[str, Any] = {}
    if ctx is not None and ctx.temperature is not None:
        kwargs["temperature"] = ctx.temperature
    if ctx is not None and ctx.max_tokens is not None:
        kwargs["max_tokens"] = ctx.max_tokens
    answer = seat.node in ANSWER_NODES  # the answer (not a window synthesis)
    # top_p, seed...: those this model's provider takes, the answer settings only where they
    # reach (the answer; proposers too with request_sampling: all) (models/sampling)
    sampled = reaches(spec, seat.role, answer)
    if ctx is not None:
        kwargs.update(call_settings(ctx, model, sampled))
        if sampled and ctx.answer_max_tokens is not None:
            kwargs["max_tokens"] = ctx.answer_max_tokens
    if ctx is not None and answer:
        if ctx.tools:
            chat = bind_answer_tools(chat, model, ctx.tools, ctx.tool_choice)
        if ctx.stop:
            kwargs["stop"] = ctx.stop
        if fmt := answer_format(ctx):
            kwargs["response_format"] = fmt
    tags = [f"moa:{seat.role}", f"moa:layer_{seat.layer}", f"moa:model:{model.name}"]
    # moa_* metadata comes from the node (add_node metadata) and is inherited.
    config: RunnableConfig = {"run_name": seat.node, "tags": tags}
    first: _FirstToken | None = None
    streaming = _streaming_callbacks(seat, ctx)
    if streaming is not None:
        first = _FirstToken()
        callbacks = streaming.copy()
        callbacks.handlers.insert(0, _Named(str(model.name)))
        callbacks.add_handler(first, inherit=False)
        config["callbacks"] = callbacks
    elif seat.node not in ANSWER_NODES:
        kwargs["stream"] = False
        tags.append(TAG_NOSTREAM)
    start = time.perf_counter()
    message = await chat.ainvoke(messages, config=config, **kwargs)
    latency = time.perf_counter() - start
    ttft = None if first is None or first.at is None else first.at - start
    if not isinstance(message, AIMessage) or not (message.text.strip() or message.tool_calls):
        raise EmptyResponseError(str(model.name), "empty response (no content)")
    return message, latency, ttft


def bind_answer_tools(
    chat: Runnable[Any, Any],
    model: ModelSpec,
    tools: list[dict[str, Any]],
    tool_choice: str | dict[str, Any] | None,
) -> Runnable[Any, Any]:
    """The answer model bound to the run's tools (the provider's own ``bind_tools`` maps
    ``tool_choice``: ``"any"`` becomes OpenAI's ``"required"``, a name a forced function)."""
    if not isinstance(chat, BaseChatModel):
        return chat
    try:
        return chat.bind_tools(tools, tool_choice=cast(Any, tool_choice))
    except NotImplementedError:
        raise ToolCallingUnsupportedError([f"{model.name} ({model.model})"]) from None


if sys.version_info >= (3, 11):

    async def _bounded(work: Coroutine[Any, Any, T], seconds: float) -> T:
        """``work`` within ``seconds`` (else ``TimeoutError``), in the node's own task:
        ``asyncio.wait_for`` on 3.11 wraps every model call in a task of its own."""
        async with asyncio.timeout(seconds):
            return await work

else:

    async def _bounded(work: Coroutine[Any, Any, T], seconds: float) -> T:
        return await asyncio.wait_for(work, seconds)


def record(
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
    """The ``Call`` record of one call as it ended (tokens estimated if the provider sent no
    usage, so totals stay meaningful)."""
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


def result(
    seat: Seat, message: AIMessage, done: Call, state: MoAState, spec: MoASpec
) -> dict[str, Any]:
    """The node's state update: a proposer's answer, a ranker's or judge's text, a
    Self-MoA-Seq window's synthesis, or the final answer as a message."""
    if seat.role == "proposer":
        return {"answers": {seat.node: message.text}, "calls": [done]}
    if seat.role == "ranker":
        return {"rank_raw": {seat.node: message.text}, "calls": [done]}
    if seat.role == "judge":
        return {"verdict": message.text, "calls": [done]}
    if seat.node == WINDOW:
        synthesis = strip_reasoning(message.text, spec).strip()
        window = int(state.get("window") or 0) + 1
        return {"synthesis": synthesis, "window": window, "calls": [done]}
    reason = message.response_metadata.get("finish_reason")
    final = AIMessage(
        content=message.text,
        id=message.id,
        usage_metadata=message.usage_metadata,
        tool_calls=message.tool_calls,
        invalid_tool_calls=message.invalid_tool_calls,
        # why the answer ended ("length": cut at max_tokens), for the faces' finish_reason
        response_metadata={"finish_reason": reason} if isinstance(reason, str) else {},
    )
    return {"answer": message.text, "messages": [final], "calls": [done]}


async def answer(
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
        work = call_model(model, messages, seat, runtime, chat_models, spec)
        if model.timeout:
            work = _bounded(work, model.timeout)
        try:
            return await (clock.run(work) if clock else work)
        except asyncio.TimeoutError:
            raise ModelTimeoutError(
                str(model.name), f"timed out after {model.timeout:g}s"
            ) from None

    try:
        message, latency, ttft = await call()
    except Exception as exc:
        if not (is_context_length(exc) and seat.references):
            raise
        window = budget.tighter_window(
            str(exc), model.context_window, budget.messages_tokens(messages)
        )
        emit(runtime, "call_refit", seat, model, window=window)
        messages, truncated = prepare_messages(state, model, spec, seat, window=window)
        message, latency, ttft = await call()
    if not (strip_reasoning(message.text, spec).strip() or message.tool_calls):
        raise EmptyResponseError(str(model.name), "empty response (only reasoning)")
    done = record(
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
    return message, done
