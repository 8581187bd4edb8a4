"""The OpenAI chat-completions wire format of ``moa serve``: request validation, responses,
stream chunks and errors (``{"error": {"message", "type", "param", "code"}}``).

A request names a served spec as its ``model`` and may set the per-run settings the graph's
``Context`` has: ``temperature`` and ``seed`` reach every model; ``max_tokens`` /
``max_completion_tokens``, ``top_p``, the penalties, ``logit_bias``, ``reasoning_effort``,
``stop``, ``tools``, ``tool_choice`` and ``response_format`` reach the answer models only (the
aggregator and its fallbacks), as with ``ChatMoA`` (a ``request_sampling: all`` spec sends
the sampling ones, not stop/tools/format, to its proposers too); a model whose provider
cannot take a setting runs without it and the response says so (``moa.dropped_params``). A
request can never change a served spec's topology or endpoints. Fields we do not implement
are refused by name, not ignored (docs/guides/serve.md has the table).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langgraph_moa.costs import run_totals
from langgraph_moa.errors import InvalidInputError
from langgraph_moa.graphs.state import (
    Context,
    answer_message,
    check_response_format,
    check_stop,
    check_tools,
    finish_reason,
)

ACCEPTED_IGNORED = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "parallel_tool_calls",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
    }
)
"""Fields OpenAI clients commonly send that a stateless mixture cannot or need not honour:
accepted, unused (``store``: nothing is stored; ``parallel_tool_calls``: the aggregator's
provider decides)."""

NOT_SUPPORTED = {
    "functions": "function calling is not supported by moa serve: use tools",
    "function_call": "function calling is not supported by moa serve: use tools",
    "logprobs": "logprobs are not available from a mixture of models",
    "top_logprobs": "logprobs are not available from a mixture of models",
    "audio": "audio output is not supported",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are not supported",
}


class APIError(Exception):
    """An error the client gets in OpenAI's shape, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        etype: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.etype, self.param, self.code = (
            status,
            message,
            etype,
            param,
            code,
        )
        self.headers = headers or {}
        self.moa: dict[str, Any] | None = None
        """A failed run's ``moa`` extension (what it did before it failed), if asked for."""

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": {
                "message": self.message,
                "type": self.etype,
                "param": self.param,
                "code": self.code,
            }
        }
        if self.moa is not None:
            body["moa"] = self.moa
        return body


MOA_INCLUDE = ("references", "calls", "rankings", "stop_checks", "early_stop")
"""What a client may ask for in the ``moa`` extension (the result state's fields)."""


class MoAOptions(BaseModel):
    """The ``moa`` extension field: ask for what the mixture did besides the answer."""

    model_config = ConfigDict(extra="forbid")

    include: list[str] = Field(
        default_factory=list,
        description="Any of 'references', 'calls', and (issue 15) 'rankings', 'stop_checks',"
        " 'early_stop'.",
    )


class ChatRequest(BaseModel):
    """The subset of the chat-completions request that ``moa serve`` implements."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    reasoning_effort: str | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    moa: MoAOptions | None = None


def parse_request(body: Any, *, max_messages: int, max_tokens_cap: int) -> ChatRequest:
    """Validate a request body; every refusal names the field."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    for field, reason in NOT_SUPPORTED.items():
        if body.get(field) not in (None, [], False):
            raise APIError(400, reason, param=field, code="unsupported_parameter")
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{param}: {first['msg']}", param=param) from None
    unknown = sorted(set(request.model_extra or {}) - ACCEPTED_IGNORED)
    if unknown:
        raise APIError(
            400, f"unsupported field {unknown[0]!r}", param=unknown[0], code="unsupported_parameter"
        )
    if isinstance(request.stop, str):
        request.stop = [request.stop]
    try:
        check_stop(request.stop)
    except InvalidInputError as exc:
        raise APIError(400, str(exc).removeprefix("context."), param="stop") from None
    if (request.n or 1) != 1:
        raise APIError(400, "n: only 1 is supported (one mixture run makes one answer)", param="n")
    if len(request.messages) > max_messages:
        raise APIError(400, f"at most {max_messages} messages", param="messages")
    limit = request.max_completion_tokens or request.max_tokens
    if limit is not None and limit > max_tokens_cap:
        raise APIError(400, f"max_tokens is capped at {max_tokens_cap}", param="max_tokens")
    try:  # the same bounds a graph run's Context applies, named as the request's fields
        check_tools(request.tools or None, request.tool_choice)
        check_response_format(request.response_format)
    except InvalidInputError as exc:
        message = str(exc).removeprefix("context.")
        raise APIError(400, message, param=message.split(":")[0].split("[")[0]) from None
    for name in request.moa.include if request.moa else []:
        if name not in MOA_INCLUDE:
            raise APIError(400, f"moa.include: unknown item {name!r}", param="moa.include")
    return request


_CONTEXT_FIELDS = {"answer_max_tokens": "max_tokens"}
"""``Context`` field -> the request field it comes from, where the names differ."""


def run_context(request: ChatRequest) -> Context:
    """The graph run's ``Context``: where each field goes is ``Context``'s (and
    ``models/sampling.py``'s) business; a refusal names the request's field."""
    try:
        return Context(
            temperature=request.temperature,
            answer_max_tokens=request.max_completion_tokens or request.max_tokens,
            stop=[request.stop] if isinstance(request.stop, str) else request.stop,
            tools=request.tools or None,
            tool_choice=request.tool_choice if request.tools else None,
            response_format=request.response_format,
            top_p=request.top_p,
            seed=request.seed,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
            logit_bias=cast(Any, request.logit_bias),
            reasoning_effort=request.reasoning_effort,
        )
    except InvalidInputError as exc:
        message = str(exc).removeprefix("context.")
        field = message.split(":")[0].split("[")[0]
        name = _CONTEXT_FIELDS.get(field, field)
        raise APIError(400, name + message[len(field) :], param=name) from None


def conversation(request: ChatRequest) -> list[dict[str, Any]]:
    """The request's messages for the graph: an assistant turn that only called tools has
    ``content`` null or absent in OpenAI's format, which LangChain's converter needs as ''."""
    return [
        {**m, "content": ""} if m.get("role") == "assistant" and m.get("content") is None else m
        for m in request.messages
    ]


def usage(calls: list[dict[str, Any]]) -> dict[str, int]:
    """Totals over every model call of the run (the mixture's real cost)."""
    totals = run_totals(calls)
    prompt, completion = totals["input_tokens"], totals["output_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_id() -> str:
    return f"chatcmpl-moa-{uuid.uuid4().hex[:24]}"


def tool_calls(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's tool calls in OpenAI's shape (empty for a text answer)."""
    last = answer_message(out)
    if last is None:
        return []
    return [
        {
            "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for call in last.tool_calls
    ]


def tool_call_deltas(chunk: AIMessage) -> list[dict[str, Any]]:
    """A streamed answer chunk's ``tool_call_chunks`` (or a whole, unstreamed answer's
    ``tool_calls``) as ``delta.tool_calls`` entries."""
    deltas = []
    pieces = (
        chunk.tool_call_chunks
        if isinstance(chunk, AIMessageChunk)
        else [
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i)
            for i, c in enumerate(chunk.tool_calls)
        ]
    )
    for piece in pieces:
        delta: dict[str, Any] = {"index": piece.get("index") or 0}
        function: dict[str, Any] = {"arguments": piece.get("args") or ""}
        if piece.get("id"):
            delta.update(id=piece["id"], type="function")
        if piece.get("name"):
            function["name"] = piece["name"]
        delta["function"] = function
        deltas.append(delta)
    return deltas


def extension(
    out: dict[str, Any], include: list[str], dropped: dict[str, list[str]]
) -> dict[str, Any] | None:
    """The ``moa`` field of a response: what the client asked to see (``moa.include``), and
    always the settings some model could not take (``dropped_params``: model -> fields)."""
    moa: dict[str, Any] = {name: out.get(name) for name in include}
    if dropped:
        moa["dropped_params"] = dropped
    return moa or None


def completion(
    cid: str,
    model: str,
    out: dict[str, Any],
    include: list[str],
    dropped: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` for a finished run (a tool call's ``content`` is null)."""
    calls = tool_calls(out)
    message: dict[str, Any] = {"role": "assistant", "content": out.get("answer") or None}
    if calls:
        message["tool_calls"] = calls
    else:
        message["content"] = out.get("answer", "")
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(answer_message(out)),
            }
        ],
        "usage": usage(out.get("calls") or []),
    }
    if (moa := extension(out, include, dropped or {})) is not None:
        body["moa"] = moa
    return body


def chunk(
    cid: str, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
