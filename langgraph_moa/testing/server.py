"""A small, fast, deterministic OpenAI-compatible chat-completions server for tests.

It speaks enough of the OpenAI wire format for ``openai`` (v2/v3, httpx or aiohttp
transport) and ``langchain_openai.ChatOpenAI`` to parse its answers, and lets a test
inject faults per model (latency, HTTP errors, 429 + ``Retry-After``, hangs, malformed
or empty bodies, context-length errors, connections dropped mid-stream).

Endpoints (all on ``127.0.0.1`` only)::

    POST /v1/chat/completions      JSON or SSE (``"stream": true``)
    GET  /v1/models                models with an explicit behaviour + models seen so far
    GET  /health                   {"status": "ok"}
    GET  /_control/behaviors       current behaviours
    POST /_control/behaviors       {"default": {...}, "models": {"name": {...}}}  (replaces)
    GET  /_control/log[?model=m]   {"requests": [record, ...]}
    POST /_control/reset           clears the request log and the per-model call counters

Answer content
    ``Behavior.content`` if set, else ``f"{model} says: {last_user_text}"`` where
    ``last_user_text`` is the text of the last ``user`` message. When ``Behavior.tokens``
    is set the answer is padded (with ``w1 w2 ...``) or truncated to exactly that many
    whitespace-separated tokens. When the request has ``max_tokens`` /
    ``max_completion_tokens`` and ``Behavior.respect_max_tokens`` (default) the answer is
    truncated to that many tokens and ``finish_reason`` becomes ``"length"``.

Token estimate (``usage`` and the context-window check)
    ``prompt_tokens`` = number of whitespace-separated words over the text content of all
    request messages (string contents, or the ``text`` of ``{"type": "text"}`` parts);
    ``completion_tokens`` = number of whitespace-separated words of the answer.

Request log records (plain dicts, JSON-serialisable)::

    seq, model, stream, messages, max_tokens, temperature, has_auth, call_index,
    start, first_byte, end, status, outcome, prompt_tokens, completion_tokens,
    tools (the offered tools' names, or None), tool_choice, stop, response_format, peer_port,
    params (every other request field as sent: max_tokens, top_p, seed, stream...)

``start``/``first_byte``/``end`` are ``time.time()`` wall-clock seconds (comparable across
processes); ``call_index`` is the 1-based per-model request number; ``has_auth`` says
whether an ``Authorization`` header was sent (its value is never stored); ``peer_port`` is
the client's TCP port (which process made a call: tests/test_agent_server.py). ``outcome`` is
one of ``ok``, ``empty``, ``malformed``, ``dropped``, ``hang``, ``context_length``,
``bad_request``, ``tool_call`` (answered with a tool call), ``cancelled`` (client went
away / server stopped before an answer) or the HTTP status as a string for injected
errors (``"500"``, ``"429"``, ...).

In-process use::

    with OpenAIServer(behaviors={"slow": Behavior(latency=0.2)}) as srv:
        llm = ChatOpenAI(model="slow", base_url=srv.base_url, api_key="k")
        ...
        assert srv.requests[0]["outcome"] == "ok"

Subprocess use::

    python -m langgraph_moa.testing.server --port 0 --behaviors '{"models": {...}}'
    # prints "READY http://127.0.0.1:PORT/v1" and serves until SIGTERM/SIGINT

or :class:`ServerProcess` (a context manager that does exactly that) together with
:class:`ControlClient` to drive a server living in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from langgraph_moa.testing.behavior import (
    _PIECE_RE,
    HOST,
    Behavior,
    _error_body,
    _fit_tokens,
    _fmt_seconds,
    _last_user_text,
    estimate_tokens,
    tool_call,
)
from langgraph_moa.testing.process import ControlClient, ServerProcess

__all__ = [
    "Behavior",
    "ControlClient",
    "OpenAIServer",
    "ServerProcess",
    "estimate_tokens",
    "main",
]

_WILDCARD_CHARS = frozenset("*?[")
_LOGGED_APART = frozenset({"model", "messages", "tools", "tool_choice", "response_format", "stop"})
"""Request fields with a log field of their own; the rest go to the record's ``params``."""
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# --------------------------------------------------------------------------- server


def _peer_port(request: web.Request) -> int | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None


class OpenAIServer:
    """OpenAI-compatible fake server with per-model fault injection and a request log.

    Use as ``with OpenAIServer(...) as srv`` (background thread with its own event loop)
    or ``async with OpenAIServer(...) as srv`` (runs on the current event loop).
    """

    def __init__(
        self,
        behaviors: Mapping[str, Behavior | Mapping[str, Any]] | None = None,
        default: Behavior | Mapping[str, Any] | None = None,
        *,
        port: int = 0,
        models: Iterable[str] = (),
        use_uvloop: bool = False,
        shutdown_timeout: float = 0.5,
    ) -> None:
        self._default = Behavior.from_dict(default)
        self._exact: dict[str, Behavior] = {}
        self._patterns: list[tuple[str, Behavior]] = []
        self.set_behaviors(behaviors or {}, default=self._default)
        self._extra_models = list(models)
        self._requested_port = port
        self._use_uvloop = use_uvloop
        self._shutdown_timeout = shutdown_timeout

        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self._stream_counts: dict[str, int] = {}
        self._seen: dict[str, None] = {}
        self._seq = itertools.count(1)
        self._created = int(time.time())

        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._owns_loop = False
        self.port: int | None = None

    # ------------------------------------------------------------------ configuration

    def set_behaviors(
        self,
        models: Mapping[str, Behavior | Mapping[str, Any]],
        default: Behavior | Mapping[str, Any] | None = None,
    ) -> None:
        """Replace all per-model behaviours (and the default; ``None`` -> ``Behavior()``).

        Keys containing ``*``, ``?`` or ``[`` are fnmatch patterns, tried in insertion
        order after exact names.
        """
        exact: dict[str, Behavior] = {}
        patterns: list[tuple[str, Behavior]] = []
        for name, beh in models.items():
            b = Behavior.from_dict(beh)
            if _WILDCARD_CHARS.intersection(name):
                patterns.append((name, b))
            else:
                exact[name] = b
        self._default = Behavior.from_dict(default)
        self._exact, self._patterns = exact, patterns

    def set_behavior(self, model: str, behavior: Behavior | Mapping[str, Any] | None) -> None:
        """Set (or with ``None`` remove) the behaviour of one model name or pattern."""
        if _WILDCARD_CHARS.intersection(model):
            patterns = [(p, b) for p, b in self._patterns if p != model]
            if behavior is not None:
                patterns.append((model, Behavior.from_dict(behavior)))
            self._patterns = patterns
        else:
            exact = dict(self._exact)
            if behavior is None:
                exact.pop(model, None)
            else:
                exact[model] = Behavior.from_dict(behavior)
            self._exact = exact

    def set_default(self, behavior: Behavior | Mapping[str, Any]) -> None:
        self._default = Behavior.from_dict(behavior)

    def behavior_for(self, model: str) -> Behavior:
        beh = self._exact.get(model)
        if beh is not None:
            return beh
        for pattern, beh in self._patterns:
            if fnmatch.fnmatchcase(model, pattern):
                return beh
        return self._default

    def behaviors_dict(self) -> dict[str, Any]:
        models = {k: b.to_dict() for k, b in self._exact.items()}
        models.update({p: b.to_dict() for p, b in self._patterns})
        return {"default": self._default.to_dict(), "models": models}

    # ------------------------------------------------------------------ log

    def log(self, model: str | None = None) -> list[dict[str, Any]]:
        """A copy of the request log (optionally only one model's requests)."""
        with self._lock:
            records = [
                {**r, "messages": [dict(m) if isinstance(m, dict) else m for m in r["messages"]]}
                for r in self._log
                if model is None or r["model"] == model
            ]
        return records

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.log()

    def call_count(self, model: str) -> int:
        with self._lock:
            return self._counts.get(model, 0)

    def reset(self) -> None:
        """Clear the request log and the per-model counters (behaviours are kept)."""
        with self._lock:
            self._log.clear()
            self._counts.clear()
            self._stream_counts.clear()
            self._seq = itertools.count(1)

    # ------------------------------------------------------------------ urls

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # ------------------------------------------------------------------ lifecycle

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_control/behaviors", self._ctl_get_behaviors)
        app.router.add_post("/_control/behaviors", self._ctl_set_behaviors)
        app.router.add_get("/_control/log", self._ctl_log)
        app.router.add_post("/_control/reset", self._ctl_reset)
        return app

    async def start_async(self) -> OpenAIServer:
        """Start serving on the running event loop."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        runner = web.AppRunner(
            self._make_app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            HOST,
            self._requested_port,
            backlog=1024,
            reuse_address=True,
        )
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def stop_async(self) -> None:
        """Stop serving: cancel in-flight (e.g. hanging) requests, close connections."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._shutdown_timeout)
        await runner.cleanup()

    def start(self) -> OpenAIServer:
        """Start serving in a daemon thread with its own event loop; returns self."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        loop: asyncio.AbstractEventLoop
        if self._use_uvloop:
            try:
                import uvloop

                loop = uvloop.new_event_loop()
            except ImportError:
                loop = asyncio.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="openai-test-server", daemon=True)
        thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        self._thread, self._owns_loop = thread, True
        return self

    def stop(self) -> None:
        """Stop the background-thread server (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not self._owns_loop:
            return
        self._thread = None
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.stop_async(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> OpenAIServer:
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # ------------------------------------------------------------------ handlers

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        names = dict.fromkeys([*self._exact, *self._extra_models, *self._seen])
        data = [
            {"id": n, "object": "model", "created": self._created, "owned_by": "langgraph-moa"}
            for n in names
        ]
        return web.json_response({"object": "list", "data": data})

    async def _ctl_get_behaviors(self, request: web.Request) -> web.Response:
        return web.json_response(self.behaviors_dict())

    async def _ctl_set_behaviors(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            self.set_behaviors(body.get("models") or {}, default=body.get("default"))
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.behaviors_dict())

    async def _ctl_log(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.log(request.query.get("model"))})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "ok"})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            body=_dumps(body).encode(),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        start = time.time()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        record: dict[str, Any] = {
            "seq": 0,
            "model": None,
            "stream": False,
            "messages": [],
            "max_tokens": None,
            "temperature": None,
            "stop": None,
            "has_auth": "Authorization" in request.headers,
            "peer_port": _peer_port(request),
            "call_index": 0,
            "start": start,
            "first_byte": None,
            "end": None,
            "status": None,
            "outcome": "cancelled",
            "prompt_tokens": None,
            "completion_tokens": None,
            "tools": None,
            "tool_choice": None,
            "response_format": None,
            "params": {},
        }
        try:
            return await self._chat_inner(request, record)
        finally:
            record["end"] = time.time()
            if task is not None:
                self._tasks.discard(task)

    async def _chat_inner(self, request: web.Request, rec: dict[str, Any]) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            rec["seq"] = self._append(rec)
            return self._bad_request(rec, f"Invalid JSON body: {exc}")
        model = body.get("model")
        messages = body.get("messages")
        stream = bool(body.get("stream"))
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens")
        rec["model"] = model
        rec["stream"] = stream
        rec["messages"] = messages if isinstance(messages, list) else []
        rec["max_tokens"] = max_tokens
        rec["temperature"] = body.get("temperature")
        tools = body.get("tools")
        rec["tools"] = (
            [(t.get("function") or {}).get("name") for t in tools if isinstance(t, dict)]
            if isinstance(tools, list)
            else None
        )
        rec["tool_choice"] = body.get("tool_choice")
        rec["response_format"] = body.get("response_format")
        rec["stop"] = body.get("stop")
        # every other request field as sent (sampling settings, stream_options...)
        rec["params"] = {k: v for k, v in body.items() if k not in _LOGGED_APART}
        if not isinstance(model, str) or not isinstance(messages, list):
            rec["seq"] = self._append(rec)
            return self._bad_request(rec, "'model' (string) and 'messages' (list) are required.")

        beh = self.behavior_for(model)
        with self._lock:
            n = self._counts.get(model, 0) + 1
            self._counts[model] = n
            if stream:
                n_stream = self._stream_counts.get(model, 0) + 1
                self._stream_counts[model] = n_stream
            else:
                n_stream = 0
            rec["seq"] = next(self._seq)
            rec["call_index"] = n
            self._log.append(rec)
        if model not in self._seen:
            self._seen[model] = None
        prompt_tokens = estimate_tokens(messages)
        rec["prompt_tokens"] = prompt_tokens

        # -- faults that never produce a 200
        if beh.hang or n <= beh.hang_first:
            rec["outcome"] = "hang"
            await asyncio.Event().wait()  # until cancelled (client gone / server stop)
        status = beh.always_status
        if status is None and n <= beh.fail_first:
            status = beh.fail_status
        if status is not None:
            return await self._injected_error(
                rec, beh, status, request.headers.get("Authorization", "")
            )
        if beh.context_window is not None:
            requested = prompt_tokens + (max_tokens if isinstance(max_tokens, int) else 0)
            if requested > beh.context_window:
                return await self._context_error(rec, beh, prompt_tokens, max_tokens)

        # -- 200 answers
        latency = beh.latency
        if beh.latency_by_call is not None and n <= len(beh.latency_by_call):
            latency = beh.latency_by_call[n - 1]
        if latency > 0:
            await asyncio.sleep(latency)

        call = tool_call(body) if beh.tool_calls and not beh.empty else None
        if call is not None:
            return await self._tool_call(request, rec, body, model, prompt_tokens, stream, call)
        if beh.empty:
            content = ""
        elif beh.content is not None:
            content = beh.content
        else:
            content = f"{model} says: {_last_user_text(messages)}"
        if beh.tokens is not None and not beh.empty:
            content = _fit_tokens(content, beh.tokens)
        stops = rec["stop"] if isinstance(rec["stop"], list) else [rec["stop"]]
        cuts = [content.find(s) for s in stops if isinstance(s, str) and s and s in content]
        if cuts:  # as OpenAI does: the answer ends before the first stop sequence
            content = content[: min(cuts)]
        finish_reason = "stop"
        if (
            beh.respect_max_tokens
            and isinstance(max_tokens, int)
            and max_tokens >= 0
            and len(content.split()) > max_tokens
        ):
            content = _fit_tokens(content, max_tokens)
            finish_reason = "length"
        completion_tokens = len(content.split())
        rec["completion_tokens"] = completion_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        cid = f"chatcmpl-test{rec['seq']}"
        created = int(rec["start"])

        if stream:
            drop = 0 < n_stream <= beh.drop_mid_stream_first
            return await self._stream(
                request, rec, beh, body, model, cid, created, content, finish_reason, usage, drop
            )

        if beh.token_delay > 0:  # the generation time of the tokens after the first
            await asyncio.sleep(beh.token_delay * max(0, len(_PIECE_RE.findall(content)) - 1))
        rec["status"] = 200
        rec["first_byte"] = time.time()
        if beh.malformed:
            rec["outcome"] = "malformed"
            return web.Response(
                body=b'{"id": "' + cid.encode() + b'", "object": "chat.completion", "choices": [',
                status=200,
                content_type="application/json",
            )
        rec["outcome"] = "empty" if beh.empty else "ok"
        return self._json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            },
        )

    async def _tool_call(
        self,
        request: web.Request,
        rec: dict[str, Any],
        body: dict[str, Any],
        model: str,
        prompt_tokens: int,
        stream: bool,
        call: tuple[str, str],
    ) -> web.StreamResponse:
        """A tool call in OpenAI's shape: ``message.tool_calls`` (finish ``tool_calls``), or
        streamed as ``delta.tool_calls`` with the arguments split over several chunks."""
        name, arguments = call
        call_id = f"call_test{rec['seq']}"
        completion_tokens = max(1, len(arguments.split()))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        rec.update(completion_tokens=completion_tokens, status=200, first_byte=time.time())
        rec["outcome"] = "tool_call"
        head = {
            "id": f"chatcmpl-test{rec['seq']}",
            "created": int(rec["start"]),
            "model": model,
            "system_fingerprint": None,
        }
        function = {"name": name, "arguments": arguments}
        if not stream:
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": function}],
            }
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
            return self._json(
                200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            return ("data: " + _dumps(data) + "\n\n").encode()

        opening = {"name": name, "arguments": ""}  # arguments follow in pieces
        first = {"index": 0, "id": call_id, "type": "function", "function": opening}
        half = len(arguments) // 2
        parts = [
            event({"role": "assistant", "content": None, "tool_calls": [first]}),
            *(
                event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for piece in (arguments[:half], arguments[half:])
                if piece
            ),
            event({}, "tool_calls"),
        ]
        if include_usage:
            parts.append(
                (
                    "data: "
                    + _dumps(
                        {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                    )
                    + "\n\n"
                ).encode()
            )
        parts.append(b"data: [DONE]\n\n")
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}
        )
        await resp.prepare(request)
        await resp.write(b"".join(parts))
        return resp

    def _append(self, rec: dict[str, Any]) -> int:
        with self._lock:
            seq = next(self._seq)
            self._log.append(rec)
        return seq

    def _bad_request(self, rec: dict[str, Any], message: str) -> web.Response:
        rec["status"] = 400
        rec["outcome"] = "bad_request"
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        return self._json(400, body)

    async def _injected_error(
        self, rec: dict[str, Any], beh: Behavior, status: int, auth: str = ""
    ) -> web.Response:
        if beh.error_latency > 0:
            await asyncio.sleep(beh.error_latency)
        headers = {"x-request-id": f"req-test{rec['seq']}"}
        if beh.retry_after is not None:
            headers["Retry-After"] = _fmt_seconds(beh.retry_after)
            headers["retry-after-ms"] = _fmt_seconds(beh.retry_after * 1000)
        rec["status"] = status
        rec["outcome"] = str(status)
        rec["first_byte"] = time.time()
        body = _error_body(status)
        if beh.echo_auth:
            body["error"]["message"] += f" (you sent Authorization: {auth})"
        return self._json(status, body, headers)

    async def _context_error(
        self, rec: dict[str, Any], beh: Behavior, prompt_tokens: int, max_tokens: Any
    ) -> web.Response:
        if beh.error_latency > 0:
            await asyncio.sleep(beh.error_latency)
        window = beh.context_window
        if isinstance(max_tokens, int):
            message = (
                f"This model's maximum context length is {window} tokens. However, you "
                f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of the "
                "messages or completion."
            )
        else:
            message = (
                f"This model's maximum context length is {window} tokens. However, your "
                f"messages resulted in {prompt_tokens} tokens. Please reduce the length of "
                "the messages."
            )
        rec["status"] = 400
        rec["outcome"] = "context_length"
        rec["first_byte"] = time.time()
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
        return self._json(400, body)

    async def _stream(
        self,
        request: web.Request,
        rec: dict[str, Any],
        beh: Behavior,
        body: dict[str, Any],
        model: str,
        cid: str,
        created: int,
        content: str,
        finish_reason: str,
        usage: dict[str, int],
        drop: bool,
    ) -> web.StreamResponse:
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        head = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        prefix = _dumps(head)[:-1] + ',"choices":[{"index":0,"delta":'
        usage_null = ',"usage":null' if include_usage else ""

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            fin = "null" if finish is None else _dumps(finish)
            return (
                "data: "
                + prefix
                + _dumps(delta)
                + ',"logprobs":null,"finish_reason":'
                + fin
                + "}]"
                + usage_null
                + "}\n\n"
            ).encode()

        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": f"req-test{rec['seq']}",
            },
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        rec["status"] = 200
        rec["first_byte"] = time.time()
        first = chunk({"role": "assistant", "content": "", "refusal": None})
        pieces = _PIECE_RE.findall(content)

        if beh.malformed:
            rec["outcome"] = "malformed"
            await resp.write(first + b'data: {"id": "' + cid.encode() + b'", "choices": [\n\n')
            await resp.write(b"data: [DONE]\n\n")
            return resp

        if drop:
            data = first + b"".join(chunk({"content": p}) for p in pieces[: beh.drop_after_chunks])
            await resp.write(data)
            rec["outcome"] = "dropped"
            transport = request.transport
            if transport is not None:
                transport.close()  # flushes what was written, then closes: no [DONE]
            return resp

        tail = [chunk({}, finish_reason)]
        if include_usage:
            usage_chunk = {**head, "choices": [], "usage": usage}
            tail.append(("data: " + _dumps(usage_chunk) + "\n\n").encode())
        tail.append(b"data: [DONE]\n\n")

        if beh.token_delay > 0 and pieces:
            await resp.write(first + chunk({"content": pieces[0]}))
            for p in pieces[1:]:
                await asyncio.sleep(beh.token_delay)
                await resp.write(chunk({"content": p}))
            last = b"".join(tail)
        else:
            last = first + b"".join(chunk({"content": p}) for p in pieces) + b"".join(tail)
        # The outcome is logged before the last bytes leave: a client that has read [DONE]
        # may look at the log at once (as the non-streaming path, logged before its body).
        rec["outcome"] = "empty" if beh.empty else "ok"
        try:
            await resp.write(last)
        except BaseException:
            rec["outcome"] = "cancelled"
            raise
        return resp


# --------------------------------------------------------------------------- CLI


def _load_config(arg: str | None) -> dict[str, Any]:
    if not arg:
        return {}
    text = arg if arg.lstrip().startswith("{") else Path(arg).read_text()
    cfg = json.loads(text)
    if not isinstance(cfg, dict):
        raise SystemExit("--behaviors must be a JSON object")
    return cfg


async def _serve(port: int, config: dict[str, Any]) -> None:
    server = OpenAIServer(config.get("models") or {}, default=config.get("default"), port=port)
    await server.start_async()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop_async()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m langgraph_moa.testing.server",
        description="OpenAI-compatible fake server for tests (binds 127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument(
        "--behaviors",
        default=None,
        help='JSON or path to a JSON file: {"default": {...}, "models": {"name": {...}}}',
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the default event loop")
    args = parser.parse_args(argv)
    config = _load_config(args.behaviors)
    coro = _serve(args.port, config)
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return 0
    asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
