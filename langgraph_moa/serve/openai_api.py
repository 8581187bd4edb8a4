"""The OpenAI chat-completions wire format of ``moa serve``: request validation, responses,
stream chunks and errors (``{"error": {"message", "type", "param", "code"}}``).

A request names a served spec as its ``model`` and may set the per-run overrides the graph's
``Context`` has (``temperature``, ``max_tokens``, ``stop``); it can never change a served spec's
topology or endpoints. Fields we do not implement are refused by name, not ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langgraph_moa.errors import InvalidInputError
from langgraph_moa.graphs.state import check_stop

ACCEPTED_IGNORED = frozenset({"user", "metadata", "store", "service_tier"})
"""Fields OpenAI clients commonly send that do not change an answer: accepted, unused."""

NOT_SUPPORTED = {
    "tools": "tool calling is not supported by moa serve yet",
    "tool_choice": "tool calling is not supported by moa serve yet",
    "functions": "function calling is not supported by moa serve",
    "function_call": "function calling is not supported by moa serve",
    "response_format": "response_format is not supported by moa serve yet",
    "logprobs": "logprobs are not available from a mixture of models",
    "top_logprobs": "logprobs are not available from a mixture of models",
    "logit_bias": "logit_bias is not supported by moa serve",
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
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.etype, self.param, self.code = (
            status,
            message,
            etype,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.etype,
                "param": self.param,
                "code": self.code,
            }
        }


class MoAOptions(BaseModel):
    """The ``moa`` extension field: ask for what the mixture did besides the answer."""

    model_config = ConfigDict(extra="forbid")

    include: list[str] = Field(default_factory=list, description="'references' and/or 'calls'.")


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
    stop: str | list[str] | None = None
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
        raise APIError(400, "only n=1 is supported (one mixture run per request)", param="n")
    if len(request.messages) > max_messages:
        raise APIError(400, f"at most {max_messages} messages", param="messages")
    limit = request.max_completion_tokens or request.max_tokens
    if limit is not None and limit > max_tokens_cap:
        raise APIError(400, f"max_tokens is capped at {max_tokens_cap}", param="max_tokens")
    for name in request.moa.include if request.moa else []:
        if name not in ("references", "calls"):
            raise APIError(400, f"moa.include: unknown item {name!r}", param="moa.include")
    return request


def usage(calls: list[dict[str, Any]]) -> dict[str, int]:
    """Totals over every model call of the run (the mixture's real cost)."""
    prompt = sum(int(c.get("input_tokens") or 0) for c in calls)
    completion = sum(int(c.get("output_tokens") or 0) for c in calls)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_id() -> str:
    return f"chatcmpl-moa-{uuid.uuid4().hex[:24]}"


def completion(cid: str, model: str, out: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """A ``chat.completion`` for a finished run."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": out.get("answer", "")},
                "finish_reason": "stop",
            }
        ],
        "usage": usage(out.get("calls") or []),
    }
    if include:
        body["moa"] = {name: out.get(name) for name in include}
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
