"""``ChatMoA``: a whole Mixture-of-Agents as one LangChain chat model.

    from langgraph_moa import ChatMoA
    llm = ChatMoA(preset="moa-lite", temperature=0.2)
    llm.invoke("What is MoA?").content
    prompt | llm | StrOutputParser()           # LCEL
    create_agent(llm.bind_tools(...), ...)     # each agent turn is one MoA run

It runs the same compiled graph as every other face (``create_moa``), compiled once per
instance; a call is one graph run and its answer is the aggregator's message. Tools bound with
``bind_tools`` / ``with_structured_output`` reach only the answer nodes (the aggregator and
its fallback), through the run's ``Context``; proposers advise on the conversation with tool
turns as plain text. ``usage_metadata`` sums every model call of the run; what the mixture
did (references, call records, usage per model) is in ``response_metadata["moa"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    AnyMessage,
    BaseMessage,
    ToolCallChunk,
    UsageMetadata,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool
from langchain_core.tracers import BaseTracer
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.types import StreamMode
from pydantic import ConfigDict, Field, PrivateAttr

from langgraph_moa.costs import run_totals
from langgraph_moa.errors import InvalidInputError, SpecError
from langgraph_moa.graphs.builder import CompiledMoA, build_graph
from langgraph_moa.graphs.names import ANSWER_NODES
from langgraph_moa.graphs.spec import MAX_SECONDS, MoASpec, parse_spec, resolve_spec
from langgraph_moa.graphs.state import (
    Context,
    InputState,
    answer_message,
    check_overrides,
    finish_reason,
)
from langgraph_moa.models import sampling
from langgraph_moa.nodes.tools import check_tool_support

_T = TypeVar("_T")
_MODES: list[StreamMode] = ["messages", "values"]
"""The answer's tokens (``messages``, filtered to the answer nodes) and the final state."""

PROVIDER = "moa"
"""``ls_provider`` / ``model_provider`` of every ChatMoA (a mixture, not one vendor)."""

_SAMPLING = (
    "top_p",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "reasoning_effort",
)
"""Sampling parameters of the answer (``seed``: of every model), as ``moa serve``'s fields."""
_CALL_PARAMS = frozenset(
    {"tools", "tool_choice", "response_format", "temperature", "max_tokens", *_SAMPLING}
)
"""Call-time keyword arguments a run understands (``bind_tools`` sets the tools; the answer's
``response_format`` is OpenAI's, e.g. ``llm.bind(response_format={"type": "json_object"})``;
``llm.bind(top_p=0.5, seed=1)`` or ``llm.invoke(..., max_tokens=50)`` override the
instance's parameters for those calls)."""
_IGNORED_PARAMS = frozenset({"ls_structured_output_format"})
"""Call-time keyword arguments LangChain adds for tracing only."""


def _usage(calls: Sequence[Mapping[str, Any]]) -> tuple[UsageMetadata, dict[str, Any]]:
    """Run totals over every call, and the same per model (spec name)."""
    per_model: dict[str, dict[str, Any]] = {}
    for call in calls:
        per_model.setdefault(str(call["model"]), {"model_id": call.get("model_id"), "of": []})
        per_model[str(call["model"])]["of"].append(call)
    for row in per_model.values():
        t = run_totals(row.pop("of"))
        row.update(
            calls=t["calls"],
            input_tokens=t["input_tokens"],
            output_tokens=t["output_tokens"],
            total_tokens=t["input_tokens"] + t["output_tokens"],
        )
    t = run_totals(calls)
    tokens_in, tokens_out = t["input_tokens"], t["output_tokens"]
    usage = cast(
        UsageMetadata,
        {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    )
    return usage, per_model


def _as_chunks(message: AIMessage) -> list[ToolCallChunk]:
    return [
        tool_call_chunk(name=c["name"], args=_json(c["args"]), id=c.get("id"), index=i)
        for i, c in enumerate(message.tool_calls)
    ]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _input(messages: list[BaseMessage]) -> InputState:
    return InputState(messages=cast(list[AnyMessage], messages))


def _detached() -> contextvars.Context:
    """A copy of this context without the caller's runnable config.

    LangChain/LangGraph merge the *ambient* config (the enclosing runnable's, e.g. an agent
    node's) into every run: its callbacks, and inside a graph node its checkpointer and task
    namespace. A ChatMoA run must be self-contained: one chat-model run to its caller, never
    a subgraph writing into the caller's thread. Only ``_config``'s tracers go in.
    """
    context = contextvars.copy_context()
    context.run(var_child_runnable_config.set, None)
    return context


async def _adetached(run: Coroutine[Any, Any, _T]) -> _T:
    """Await ``run`` as a task's body (a task owns a copy of the context) without the
    caller's runnable config (see ``_detached``)."""
    var_child_runnable_config.set(None)
    return await run


async def _adetached_stream(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Iterate ``events`` in a task of its own, without the caller's runnable config."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()

    async def pump() -> None:
        var_child_runnable_config.set(None)
        try:
            async for event in events:
                queue.put_nowait((False, event))
        except BaseException as exc:  # re-raised in the consumer; cancellation included
            queue.put_nowait((True, exc))
            return
        queue.put_nowait((True, None))

    task = asyncio.create_task(pump())
    try:
        while True:
            done, item = await queue.get()
            if done:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class ChatMoA(BaseChatModel):
    """A Mixture-of-Agents (a preset, a spec, or a spec file) as a LangChain chat model.

    Standard parameters map onto the mixture as ``moa serve`` maps a request's fields:
    ``temperature`` and ``seed`` reach every model; ``max_tokens``, ``top_p``, the penalties,
    ``logit_bias``, ``reasoning_effort`` and ``stop`` the answer only (the aggregator and its
    fallback: the references keep their spec's settings, unless the spec says
    ``request_sampling: all``); a model whose provider cannot take
    a setting runs without it (``response_metadata["moa"]["dropped_params"]`` says which).
    ``timeout`` is each model call's timeout, ``max_retries`` the retries of each call
    (``RetryPolicy``). Each may be set per call (``bind``, or keywords of ``invoke``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    preset: str | None = None
    """A built-in preset (``moa-lite``, ``moa``, ``local`` ...); default ``local`` if no spec."""
    spec: MoASpec | dict[str, Any] | str | os.PathLike[str] | None = None
    """A ``MoASpec``, a spec dict, or the path of a YAML/JSON spec file."""
    model_name: str = Field(default="", alias="model")
    """``moa:<spec name>`` unless given."""
    temperature: float | None = None
    """Every model's temperature for a run (None: each model's own)."""
    max_tokens: int | None = None
    """The answer's max_tokens (None: the aggregator's own); the references keep theirs."""
    top_p: float | None = None
    """The answer's nucleus sampling (0-1)."""
    seed: int | None = None
    """Every model's sampling seed (models whose provider takes one)."""
    frequency_penalty: float | None = None
    """The answer's frequency penalty (-2 to 2)."""
    presence_penalty: float | None = None
    """The answer's presence penalty (-2 to 2)."""
    logit_bias: dict[str, int] | None = None
    """The answer's token biases (OpenAI-compatible answer models)."""
    reasoning_effort: str | None = None
    """The answer model's reasoning effort (OpenAI reasoning models)."""
    timeout: float | None = None
    """Seconds one model call may take (None: each model's own ``timeout``)."""
    max_retries: int | None = None
    """Retries of one model call after its first attempt (None: each model's own)."""
    stop: list[str] | None = None
    """Stop sequences of the final answer (the aggregator's)."""
    max_cost: float | None = None
    """USD one run may spend (overrides the spec's ``max_cost``)."""
    chat_models: Mapping[str, BaseChatModel] | None = Field(default=None, exclude=True)
    """Ready chat model instances by model name (your own clients, or fakes in tests)."""

    _spec: MoASpec = PrivateAttr()
    _graph: CompiledMoA | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolve()  # after pydantic: our errors reach the caller as MoAErrors

    def _resolve(self) -> None:
        """Resolve the spec once, with ``timeout``/``max_retries`` applied to every model,
        and check the run overrides, so a bad value fails here, naming the field."""
        spec = resolve_spec(self.spec, preset=self.preset)
        if self.timeout is not None or self.max_retries is not None:
            if self.timeout is not None and not 0 < self.timeout <= MAX_SECONDS:
                raise SpecError(f"timeout: must be more than 0 and at most {MAX_SECONDS:g} s")
            if self.max_retries is not None and not 0 <= self.max_retries < 20:
                raise SpecError("max_retries: must be a whole number from 0 to 19")
            for model in spec.models():
                if self.timeout is not None:
                    model.timeout = self.timeout
                if self.max_retries is not None:
                    model.retry = model.retry.model_copy(
                        update={"max_attempts": self.max_retries + 1}
                    )
            spec = parse_spec(spec.model_dump(mode="json"), source="ChatMoA")
        check_overrides(self.temperature, self.max_tokens)
        self._context(None, {})  # every parameter checked, named, before any run
        self._spec = spec
        if not self.model_name:
            self.model_name = f"{PROVIDER}:{spec.name}"

    # ------------------------------------------------------------------ LangChain surface

    @property
    def _llm_type(self) -> str:
        return PROVIDER

    @property
    def moa_spec(self) -> MoASpec:
        """The resolved spec this model runs (after ``timeout``/``max_retries``)."""
        return self._spec

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER,
            ls_model_name=str(kwargs.get("model") or self.model_name),
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools for the aggregator (and its fallback) only: the proposers never see them.

        ``tool_choice``: ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True`` (call
        some tool) or a tool's name; the aggregator's provider maps it to its own API.
        Raises ``ToolCallingUnsupportedError`` if an answer model cannot call tools.
        """
        check_tool_support(self._spec, self.chat_models or {})
        choice = "any" if tool_choice is True else None if tool_choice is False else tool_choice
        return self.bind(
            tools=[convert_to_openai_tool(t) for t in tools], tool_choice=choice, **kwargs
        )

    # ------------------------------------------------------------------ one run

    def compiled(self) -> CompiledMoA:
        """The compiled graph (built on first use, then reused by every call)."""
        if self._graph is None:
            # checkpointer=False: a ChatMoA call is one self-contained run, also when it runs
            # inside another graph's node (an agent), so it never writes the parent's threads.
            # A ``cache: true`` spec keeps its answers in the persistent cache, as every face.
            from langgraph_moa.cache import graph_cache

            self._graph = build_graph(self._spec, chat_models=self.chat_models).compile(
                name=self._spec.name, checkpointer=False, cache=graph_cache(self._spec)
            )
        return self._graph

    def _context(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> Context:
        unknown = sorted(set(kwargs) - _CALL_PARAMS - _IGNORED_PARAMS)
        if unknown:
            raise InvalidInputError(f"ChatMoA: unsupported call parameter {unknown[0]!r}")

        def pick(name: str) -> Any:
            """A call's own value, else the instance's."""
            value = kwargs.get(name)
            return getattr(self, name) if value is None else value

        try:
            return Context(
                temperature=pick("temperature"),
                answer_max_tokens=pick("max_tokens"),
                max_cost=self.max_cost,
                stop=list(stop) if stop else self.stop,
                tools=kwargs.get("tools") or None,
                tool_choice=kwargs.get("tool_choice") if kwargs.get("tools") else None,
                response_format=kwargs.get("response_format"),
                **{name: pick(name) for name in _SAMPLING},
            )
        except InvalidInputError as exc:  # named as ChatMoA's parameter
            message = str(exc).replace("context.answer_max_tokens", "max_tokens")
            raise InvalidInputError(message.replace("context.", "ChatMoA.")) from None

    @staticmethod
    def _config(
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    ) -> RunnableConfig:
        """The graph run's config: a child of this call's run that only tracers see.

        To its caller a ChatMoA call is ONE chat-model run: its usage already sums every
        call of the mixture, so a usage-counting or streaming handler must not also see the
        inner calls (it would count them twice, or stream proposer tokens as the answer).
        Tracers (LangSmith) do get the inner runs, nested under this one.
        """
        if run_manager is None:
            return {}
        manager_class = (
            AsyncCallbackManager
            if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
            else CallbackManager
        )
        tracers: list[BaseCallbackHandler] = [
            h
            for h in run_manager.inheritable_handlers
            if isinstance(h, BaseTracer) and not isinstance(h, _StreamingCallbackHandler)
        ]
        child = manager_class(
            handlers=tracers,
            inheritable_handlers=tracers,
            parent_run_id=run_manager.run_id,
            tags=run_manager.inheritable_tags,
            inheritable_tags=run_manager.inheritable_tags,
            metadata=run_manager.inheritable_metadata,
            inheritable_metadata=run_manager.inheritable_metadata,
        )
        return {"callbacks": child}

    def _answer(self, out: Mapping[str, Any], context: Context) -> AIMessage:
        """The aggregator's message with the run's usage and what the mixture did."""
        final = answer_message(out)
        if final is None:  # e.g. a run paused for review (spec.review)
            raise InvalidInputError(
                "the run ended without an answer (a spec with review: true needs a"
                " checkpointer: use create_moa, not ChatMoA)"
            )
        calls = list(out.get("calls") or [])
        usage, per_model = _usage(calls)
        return AIMessage(
            content=final.content,
            tool_calls=final.tool_calls,
            invalid_tool_calls=final.invalid_tool_calls,
            id=final.id,
            usage_metadata=usage,
            response_metadata=self._metadata(
                final, out, calls, per_model, run_totals(calls), context
            ),
        )

    def _metadata(
        self,
        final: AIMessage | AIMessageChunk,
        out: Mapping[str, Any],
        calls: list[Any],
        per_model: dict[str, Any],
        run_totals: dict[str, Any],
        context: Context,
    ) -> dict[str, Any]:
        moa: dict[str, Any] = {
            "references": list(out.get("references") or []),
            "calls": calls,
            "usage_by_model": per_model,
            "cost_usd": run_totals["cost_usd"],
        }
        if out.get("fallback_reason"):
            moa["fallback_reason"] = out["fallback_reason"]
        if dropped := sampling.dropped(self._spec, context):
            moa["dropped_params"] = dropped
        return {
            "model_name": self.model_name,
            "model_provider": PROVIDER,
            "finish_reason": finish_reason(final),
            "moa": moa,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        context = self._context(stop, kwargs)
        out: Any = _detached().run(
            self.compiled().invoke,
            _input(messages),
            config=self._config(run_manager),
            context=context,
        )
        return ChatResult(generations=[ChatGeneration(message=self._answer(out, context))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        context = self._context(stop, kwargs)
        run = self.compiled().ainvoke(
            _input(messages),
            config=self._config(run_manager),
            context=context,
        )
        out: Any = await asyncio.create_task(_adetached(run))
        return ChatResult(generations=[ChatGeneration(message=self._answer(out, context))])

    # ------------------------------------------------------------------ streaming

    def _piece(self, mode: str, data: Any) -> AIMessageChunk | None:
        """A chunk of the answer from one ``messages`` event (None for anything else)."""
        if mode != "messages":
            return None
        message, meta = data
        if meta.get("langgraph_node") not in ANSWER_NODES:
            return None
        if isinstance(message, AIMessageChunk):
            return AIMessageChunk(
                content=message.content, tool_call_chunks=message.tool_call_chunks
            )
        if isinstance(message, AIMessage):  # not streamed (e.g. a cached answer): whole
            return AIMessageChunk(content=message.content, tool_call_chunks=_as_chunks(message))
        return None

    def _last(self, out: Mapping[str, Any], answered: bool, context: Context) -> AIMessageChunk:
        """The closing chunk: the run's usage and metadata (and the answer, if no token of it
        was streamed)."""
        final = self._answer(out, context)
        return AIMessageChunk(
            content="" if answered else final.content,
            tool_call_chunks=[] if answered else _as_chunks(final),
            usage_metadata=final.usage_metadata,
            response_metadata=final.response_metadata,
            chunk_position="last",
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        out: Any = {}
        answered = False
        detached = _detached()
        context = self._context(stop, kwargs)
        events = self.compiled().stream(
            _input(messages),
            config=self._config(run_manager),
            context=context,
            stream_mode=_MODES,
        )
        try:
            while (event := detached.run(next, events, None)) is not None:
                mode, data = event
                if mode == "values":
                    out = data
                elif (piece := self._piece(mode, data)) is not None:
                    answered = True
                    chunk = ChatGenerationChunk(message=piece)
                    if run_manager is not None:
                        run_manager.on_llm_new_token(piece.text, chunk=chunk)
                    yield chunk
        finally:  # a caller that stops reading ends the run now, not at garbage collection
            close = getattr(events, "close", None)
            if close is not None:
                detached.run(close)
        yield ChatGenerationChunk(message=self._last(out, answered, context))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        out: Any = {}
        answered = False
        context = self._context(stop, kwargs)
        events = self.compiled().astream(
            _input(messages),
            config=self._config(run_manager),
            context=context,
            stream_mode=_MODES,
        )
        async for mode, data in _adetached_stream(events):
            if mode == "values":
                out = data
            elif (piece := self._piece(mode, data)) is not None:
                answered = True
                chunk = ChatGenerationChunk(message=piece)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(piece.text, chunk=chunk)
                yield chunk
        yield ChatGenerationChunk(message=self._last(out, answered, context))


__all__ = ["ChatMoA"]
