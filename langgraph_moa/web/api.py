"""The page's API requests and refusals: bounded bodies, and errors naming the field.

Every body is JSON (``Content-Type: application/json``: what a foreign page cannot send
without a CORS preflight), read whole and checked here before any model is called. A refusal
is ``{"error": {"message", "field"?}}`` with a 4xx status (``WebError``), raised anywhere in a
handler of a route of class ``WebRoute``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from langgraph_moa.redact import scrub
from langgraph_moa.web import store

log = logging.getLogger(__name__)

MAX_QUESTION_BYTES = 32 * 1024
MAX_TITLE = 200
MAX_RESUME_BYTES = 256 * 1024
THREAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class WebError(Exception):
    """A refusal the page shows: ``{"error": {"message", "field"?}}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"message": self.message}
        if self.field:
            error["field"] = self.field
        return JSONResponse({"error": error}, status_code=self.status)


class WebRoute(APIRoute):
    """Every route's refusals in the page's error shape (the app's handlers are not ours)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except WebError as exc:
                return exc.response()
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
                return WebError(400, f"{field or 'request'}: {first.get('msg')}", field).response()
            except Exception as exc:  # e.g. the thread store is broken: one line, no traceback
                message = scrub(f"the server failed: {type(exc).__name__}: {exc}")[:500]
                log.error("%s %s: %s", request.method, request.url.path, message)
                return WebError(500, message).response()

        return handle


def _question(value: str) -> str:
    if len(value.encode()) > MAX_QUESTION_BYTES:
        raise ValueError(f"at most {MAX_QUESTION_BYTES // 1024} KiB")
    return value


class RunRequest(BaseModel):
    """One question to one spec, optionally continuing a conversation."""

    model_config = ConfigDict(extra="ignore")

    spec: str = Field(max_length=200, description="A spec the server offers (/ui/api/specs).")
    question: str = Field("", description="The user's message (not with ``resume``).")
    thread_id: str | None = Field(
        None, description="Continue this conversation; omitted = start a new one."
    )
    resume: bool | list[str] | dict[str, Any] | None = Field(
        None,
        description="Continue the thread's last turn: a review pause (true reads the"
        " references as they are, a list replaces them, an object is passed to the graph),"
        " or a turn that was stopped or failed (true).",
    )
    client_id: str | None = Field(None, max_length=128)

    _question = field_validator("question")(_question)

    @field_validator("resume")
    @classmethod
    def _resume(cls, value: Any) -> Any:
        if value is not None and len(json.dumps(value)) > MAX_RESUME_BYTES:
            raise ValueError(f"at most {MAX_RESUME_BYTES // 1024} KiB")
        return value


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    turn: int = Field(ge=1, le=10_000)
    what: Literal["synthesis", "turn"] = "synthesis"
    question: str | None = None
    spec: str | None = Field(None, max_length=200)

    _question = field_validator("question")(lambda v: v if v is None else _question(v))


class RenameRequest(BaseModel):
    title: str = Field(min_length=1, max_length=MAX_TITLE)


async def body(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as ``model``: 415 unless it says JSON, 400 naming the field otherwise."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise WebError(415, "the body must be JSON (Content-Type: application/json)")
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise WebError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WebError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None  # the body's own key
        message = str(first["msg"]).removeprefix("Value error, ")
        raise WebError(400, f"{field}: {message}", field) from None


def thread_id(value: str) -> str:
    if not THREAD_ID.fullmatch(value):
        raise WebError(400, "thread_id: 1 to 128 of A-Z, a-z, 0-9, _ and -", "thread_id")
    return value


def owner(request: Request) -> str | None:
    """The caller's namespace: a hash of its bearer token (None without one)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return store.owner_hash(token.strip()) if scheme.lower() == "bearer" else None
