"""What a failed model call means, for every provider: retry or not, how long to wait, whether
the prompt was too long, and a one-line reason.

Decided from what every provider's error carries rather than from one SDK's classes: an HTTP
status code (on the exception, as ``status_code`` / ``status`` / ``code``, or on its
``response``), the response headers (``Retry-After``, ``retry-after-ms``) and the error's
code or message. The ``openai`` SDK (also used for Together and every OpenAI-compatible
server) is one case of it; Anthropic's, Google's, Mistral's and Groq's errors carry the same
facts under these names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from langgraph.types import RetryPolicy

from langgraph_moa.errors import MoAError, ModelCallError
from langgraph_moa.graphs.spec import ModelSpec
from langgraph_moa.nodes.deadline import StragglerCut
from langgraph_moa.redact import scrub

NEVER_RETRIED = frozenset({400, 401, 403, 404, 405, 413, 415, 422})
"""Client errors that a second identical request cannot fix (bad key, no access, no model)."""

RETRIED = frozenset({408, 409, 425, 429})
"""Client-side statuses that are transient (timeouts, conflicts, rate limits); 5xx too."""

_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "exceeds the maximum number of tokens",
    "input is too long",
)


def status_code(exc: BaseException) -> int | None:
    """The HTTP error status (4xx/5xx) of a provider error, wherever its SDK keeps it. A body
    that failed to parse after a 200 is not an HTTP error (``describe`` says "malformed")."""
    for source in (exc, getattr(exc, "response", None)):
        if source is None:
            continue
        for attr in ("status_code", "status", "code", "http_status"):
            value = getattr(source, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 400 <= value < 600:
                return value
    return None


def _headers(exc: BaseException) -> Mapping[str, Any]:
    for source in (getattr(exc, "response", None), exc):
        headers = getattr(source, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            return headers  # type: ignore[no-any-return]
    return {}


def _header(headers: Mapping[str, Any], name: str) -> Any:
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; HTTP headers are not
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return value


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``retry-after-ms`` or ``Retry-After``)."""
    headers = _headers(exc)
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = _header(headers, name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except (TypeError, ValueError):
            continue  # an HTTP date: fall back to the policy's backoff
    return None


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(exc)


def is_context_length(exc: BaseException) -> bool:
    """The prompt did not fit the model's context window (a 400/413 saying so)."""
    if status_code(exc) not in (400, 413, None):
        return False
    code = getattr(exc, "code", None)
    text = f"{code if isinstance(code, str) else ''} {_message(exc)}".lower()
    return any(hint in text for hint in _CONTEXT_HINTS)


def _is_connection_error(exc: BaseException) -> bool:
    """Network trouble before or while talking to the provider (refused, reset, timeout)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (OSError, asyncio.TimeoutError)):
            return True
        name = type(cause).__name__
        if "Connection" in name or "Timeout" in name or name in ("RemoteProtocolError",):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def should_retry(exc: BaseException) -> bool:
    """``RetryPolicy.retry_on``: transient provider trouble yes; our own errors, a bad key,
    a missing model or a malformed request no."""
    if isinstance(exc, ModelCallError):
        return exc.retryable
    if isinstance(exc, (MoAError, ImportError, StragglerCut)):
        return False
    status = status_code(exc)
    if status is not None:
        return status in RETRIED or status >= 500
    return True  # connection errors, malformed bodies and the unknown: worth another try


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


def describe(exc: BaseException) -> str:
    """A one-line, secret-free reason for a failure, the same for every provider (error text
    is quoted from the provider, and some providers quote the request's key back)."""
    return scrub(_describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StragglerCut):
        return "cut by the layer deadline"
    if isinstance(exc, ModelCallError):
        return exc.reason
    status = status_code(exc)
    if status is not None:
        return f"HTTP {status}: {_message(exc)}"[:300]
    if isinstance(exc, json.JSONDecodeError) or "ResponseValidation" in type(exc).__name__:
        return f"malformed response: {exc}"[:300]
    if _is_connection_error(exc):
        # The aiohttp transport reports a refused connection as a connect *timeout*.
        refused = _os_error(exc)
        if refused is not None:
            return f"connection error: {refused}"[:300]
        if "Timeout" in type(exc).__name__ or isinstance(exc, asyncio.TimeoutError):
            return "request timed out"
        cause = exc.__cause__ or exc.__context__
        return f"connection error: {cause or exc}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
