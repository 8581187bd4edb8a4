"""The transport guard in front of ``moa serve`` and ``moa ui``: a pure ASGI middleware.

Everything a request can do to the server before a route sees it is bounded here, once, for
every route of both apps (routes then only parse what is already known to be small, whole,
well-formed and same-site):

* **Body size while it is read**: the body is counted as its ``http.request`` messages
  arrive, chunked or not, and a body over ``max_body_bytes`` is answered 413 at the message
  that passes the limit (a ``Content-Length`` over it at once): never more than the limit is
  held in memory, and nothing is parsed or stored. The body is then handed to the app whole.
* **Body read time**: the whole body must arrive within ``read_timeout`` seconds (408), so a
  client trickling bytes cannot hold a connection and a worker. (Slow *headers* are the
  HTTP server's business: ``langgraph_moa.http_protocol``.)
* **No cross-site runs**: on JSON routes (``POST /v1/*``, ``POST/PUT/PATCH/DELETE
  /ui/api/*``) a browser's ``Origin`` must be the server's own (or one the operator allows
  with ``--allow-origin``), else 403; a body must be ``Content-Type: application/json``,
  else 415. A web page can send a cross-site ``text/plain`` POST without asking (a ``no-cors``
  fetch, an HTML form) but never without its ``Origin`` header, and never with a JSON
  content type without a CORS preflight, which this server does not answer. Clients that are
  not browsers send no ``Origin`` and pass.
* **Well-formed JSON**: a JSON route's body must parse and nest at most ``max_json_depth``
  levels (400 naming the problem): no input reaches ``json.loads`` in a route that could
  make it raise ``RecursionError``.
* **Runs at once**: requests that start a run (``POST /v1/chat/completions``, ``POST
  /ui/api/runs``) hold a slot for as long as the app serves them, a stream until it ends or
  its client goes; with every slot taken the answer is 429 with ``Retry-After``.

Errors are JSON: OpenAI's shape under ``/v1``, ``{"detail", "error"}`` elsewhere (the web
page shows ``detail``). This module imports nothing of the project's upper layers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from langgraph_moa.errors import MoAError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1 << 20
READ_TIMEOUT = 10.0
"""Seconds a client has to send a request's headers, and then its whole body."""
MAX_JSON_DEPTH = 64
MAX_CONCURRENT_RUNS = 64
RETRY_AFTER_S = 1

UNREAD_BODY = frozenset({403, 408, 413})
"""Refusals sent before the body was read whole: the connection is closed after them."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RUN_ROUTES = frozenset(
    {("POST", "/v1/chat/completions"), ("POST", "/v1/responses"), ("POST", "/ui/api/runs")}
)


def is_json_route(method: str, path: str) -> bool:
    """Routes that take a JSON body and act on it: the cross-site rules apply."""
    return method in WRITE_METHODS and (path.startswith("/v1/") or path.startswith("/ui/api/"))


def is_run_route(method: str, path: str) -> bool:
    """Routes whose request starts a mixture run (a slot of ``max_concurrent_runs``)."""
    return (method, path.rstrip("/")) in RUN_ROUTES


class Refused(Exception):
    """A request refused by the guard, with its HTTP status and why."""

    def __init__(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}


def error_body(path: str, status: int, message: str, code: str) -> dict[str, Any]:
    """OpenAI's error shape on ``/v1``; elsewhere the same plus ``detail`` (FastAPI's key)."""
    etype = {429: "rate_limit_error", 408: "timeout_error"}.get(status, "invalid_request_error")
    error = {"message": message, "type": etype, "param": None, "code": code}
    return {"error": error} if path.startswith("/v1") else {"detail": message, "error": error}


async def send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def json_depth(value: Any) -> int:
    """How deep containers nest in a parsed JSON value (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (and an error echoing one could not be rendered)."""
    raise ValueError(f"{name} is not a JSON value")


def check_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a body that is not JSON, or nests deeper than ``max_depth`` (400)."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise Refused(
            400, f"the JSON body nests deeper than {max_depth} levels", "invalid_json"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(":")[0]
        raise Refused(
            400, f"the request body is not valid JSON ({reason})", "invalid_json"
        ) from None
    if json_depth(value) > max_depth:
        raise Refused(400, f"the JSON body nests deeper than {max_depth} levels", "invalid_json")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped (how browsers send it)."""
    parts = urlsplit(origin.strip().rstrip("/").lower())
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return origin
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


def allowed_origin_set(origins: Collection[str], *, wildcard: bool = False) -> frozenset[str]:
    """The operator's origins, normalized; a value that is not ``scheme://host[:port]`` is a
    ``MoAError`` naming it (a typo must not silently allow nothing, or everything)."""
    out = set()
    for origin in origins:
        if wildcard and origin == "*":
            out.add(origin)
            continue
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise MoAError(
                f"--allow-origin {origin!r}: not an origin (scheme://host[:port], e.g."
                " https://app.example.com)"
            )
        out.add(normalize_origin(origin))
    return frozenset(out)


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` names the host (and port) the request was sent to."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not host:
        return False
    return normalize_origin(origin) == normalize_origin(f"{parts.scheme}://{host}")


def check_site(headers: dict[str, str], allowed_origins: Collection[str]) -> None:
    """Refuse (403) a browser request from a page of another origin than the server's own
    and those allowed (normalized; ``*`` allows any)."""
    origin = headers.get("origin")
    if origin is None:
        return  # not a browser (browsers always send Origin with a POST)
    if "*" in allowed_origins or normalize_origin(origin) in allowed_origins:
        return
    if _same_origin(origin, headers.get("host", "")):
        return
    raise Refused(
        403,
        "cross-origin request refused (the server's operator can allow an origin with"
        " --allow-origin)",
        "forbidden_origin",
    )


class OriginGuard:
    """Only the ``Origin`` rule, on every write request (``POST/PUT/PATCH/DELETE``) of an app
    whose routes are not ours: the LangGraph server (``graphs/http_app.py``). Its CORS
    settings stop a foreign page from *reading* an answer; this stops the run itself (a
    ``text/plain`` POST needs no preflight, so CORS alone lets it run)."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Collection[str] = ()) -> None:
        self.app = app
        self.allowed_origins = allowed_origin_set(allowed_origins, wildcard=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            try:
                check_site(_headers(scope), self.allowed_origins)
            except Refused as exc:
                body = {"detail": exc.message, "error": {"message": exc.message, "code": exc.code}}
                await send_json(send, exc.status, body)
                return
        await self.app(scope, receive, send)


class RequestGuard:
    """The ASGI middleware (see the module docstring). ``allowed_origins``: origins besides
    the server's own whose pages may call the JSON routes (``--allow-origin``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT,
        allowed_origins: Collection[str] = (),
        max_concurrent_runs: int | None = MAX_CONCURRENT_RUNS,
        max_json_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.allowed_origins = allowed_origin_set(allowed_origins)
        self.max_concurrent_runs = max_concurrent_runs
        self.max_json_depth = max_json_depth
        self.runs = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        try:
            body = await self._admit(scope, receive)
        except Refused as exc:
            headers = dict(exc.headers)
            if exc.status in UNREAD_BODY:  # do not read (or wait for) the rest of it
                headers["connection"] = "close"
            await send_json(
                send, exc.status, error_body(path, exc.status, exc.message, exc.code), headers
            )
            return
        except _Disconnected:
            # The client went away while sending: nobody reads this answer (the server drops
            # it), but an app or middleware around this one still gets a response.
            await send_json(send, 400, error_body(path, 400, "client disconnected", "gone"), {})
            return
        run = is_run_route(scope["method"], path)
        if run:
            self.runs += 1
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            if run:
                self.runs -= 1

    async def _admit(self, scope: Scope, receive: Receive) -> bytes:
        method: str = scope["method"]
        path: str = scope.get("path", "")
        headers = _headers(scope)
        json_route = is_json_route(method, path)
        if json_route:
            check_site(headers, self.allowed_origins)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise Refused(413, self._too_large(), "body_too_large")
        body = await self._read_body(receive)
        if json_route and body:  # an empty POST (Stop, delete) carries nothing to parse
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise Refused(
                    415,
                    "the request body must be JSON (Content-Type: application/json)",
                    "unsupported_media_type",
                )
            check_json(body, self.max_json_depth)
        limit = self.max_concurrent_runs
        if is_run_route(method, path) and limit is not None and self.runs >= limit:
            raise Refused(
                429,
                f"too many runs in progress ({self.max_concurrent_runs} at once, the"
                " server's --max-concurrent); retry shortly",
                "server_busy",
                {"retry-after": str(RETRY_AFTER_S)},
            )
        return body

    def _too_large(self) -> str:
        return f"request body over {self.max_body_bytes} bytes"

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, refused as soon as it passes the limit or the deadline."""
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise Refused(
                    408,
                    f"the request body did not arrive within {self.read_timeout:g} s",
                    "request_timeout",
                ) from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise Refused(413, self._too_large(), "body_too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Disconnected(Exception):
    """The client left before its body was read."""


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the first of repeated ones)."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the client's own
    messages (a disconnect, which streaming responses listen for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
