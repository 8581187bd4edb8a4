"""``moa serve``: every served spec as a "virtual model" behind OpenAI's Chat Completions and
Responses APIs, plus the web UI at ``/``.

One compiled graph per served spec, built once at startup; the graphs share the process's
HTTP pools (``langgraph_moa.models.factory``). Non-streaming requests run ``ainvoke`` (every
model call a plain request); ``stream: true`` streams the aggregator's tokens from
``stream_mode="messages"``. Every run lives only as long as its client's connection
(``disconnect.py``). Requests choose a served spec by name and may tune only the run (the
sampling settings ``openai_api.py`` lists): they cannot change a spec's topology or
endpoints. Errors are OpenAI-shaped, never a stack trace, and a 5xx after paid model calls
tells the client not to replay it; secrets never appear in a response or a log line.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from langgraph_moa.asgi import READ_TIMEOUT, RequestGuard, allowed_origin_set
from langgraph_moa.cache import graph_cache
from langgraph_moa.errors import (
    InvalidInputError,
    LayerFailedError,
    MissingAPIKeyError,
    MoAError,
    ModelCallError,
    SpecError,
)
from langgraph_moa.graphs.builder import CompiledMoA, create_moa
from langgraph_moa.graphs.names import ANSWER_NODES
from langgraph_moa.graphs.policy import MAX_OVERRIDE_TOKENS, RunLimits, RunPolicy
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.graphs.state import Context, answer_message, finish_reason
from langgraph_moa.models import sampling
from langgraph_moa.redact import register_key_env, scrub
from langgraph_moa.serve import MAX_CONCURRENT_RUNS, openai_api as oa, responses as rs
from langgraph_moa.serve.disconnect import (
    ClientGone,
    stream_unless_disconnected,
    unless_disconnected,
)
from langgraph_moa.tuning import tune_gc

log = logging.getLogger("langgraph_moa.serve")


@dataclass(frozen=True)
class Limits:
    """What one request, and the server as a whole, may ask for."""

    max_body_bytes: int = 1 << 20
    max_messages: int = 256
    max_tokens: int = MAX_OVERRIDE_TOKENS  # the run-spec policy's cap, as on the LangGraph server
    max_concurrent_runs: int = MAX_CONCURRENT_RUNS
    read_timeout: float = READ_TIMEOUT  # seconds for the headers, then for the whole body


CLIENT_GONE = 499
"""Status logged for a request whose client left before its answer (nginx's convention);
nobody reads it."""


NO_RETRY = {"x-should-retry": "false"}
"""On an error after model calls were paid for: the openai SDKs (and others that honour it)
do not replay the whole mixture (their default max_retries=2 would triple the cost)."""


def _error(exc: oa.APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@dataclass(frozen=True)
class Run:
    """One validated request, ready to run."""

    request: oa.ChatRequest
    graph: CompiledMoA
    context: Context
    inputs: Any
    dropped: dict[str, list[str]]
    """Model -> the request's settings its provider cannot take (reported, not refused)."""


def _unknown_model(name: str, graphs: Mapping[str, Any]) -> oa.APIError:
    shown = name if len(name) <= 64 else name[:64] + "..."
    return oa.APIError(
        404,
        f"unknown model {shown!r}; served: {', '.join(sorted(graphs))}",
        param="model",
        code="model_not_found",
    )


def _map_run_error(exc: BaseException) -> oa.APIError:
    """What a failed run means to an OpenAI client (and never a traceback)."""
    if isinstance(exc, MissingAPIKeyError):  # the operator's problem: don't name variables
        return oa.APIError(
            503,
            "this model is not configured on the server",
            etype="server_error",
            headers=NO_RETRY,  # a retry cannot fix it
        )
    if isinstance(exc, (InvalidInputError, SpecError)):
        return oa.APIError(400, scrub(str(exc)))
    if isinstance(exc, (LayerFailedError, ModelCallError)):
        if isinstance(exc, LayerFailedError):
            what = f"upstream models failed ({', '.join(sorted(exc.failures)) or 'unknown'})"
        else:
            what = f"upstream model {exc.model} failed"
        reason = exc.reason if isinstance(exc, ModelCallError) else str(exc)
        return oa.APIError(
            502,
            f"{what}: {scrub(reason)}"[:1000],
            etype="upstream_error",
            code="upstream_failed",
            headers=NO_RETRY,  # the mixture already retried each call; a replay pays again
        )
    if isinstance(exc, MoAError):
        return oa.APIError(400, scrub(str(exc)))
    log.error("run failed: %s: %s", type(exc).__name__, scrub(str(exc)))
    return oa.APIError(500, "internal error", etype="server_error", headers=NO_RETRY)


def _run_failed(exc: BaseException, run: Run) -> oa.APIError:
    """``_map_run_error``, with the ``moa`` extension the request asked for (``moa.include``)
    made of what the run computed before it failed (``MoAError.partial``): its ``calls``
    hold the failed call too, so a client counts every call it paid for."""
    error = _map_run_error(exc)
    include = run.request.moa.include if run.request.moa else []
    partial = getattr(exc, "partial", None)
    if include and isinstance(partial, dict):
        error.moa = oa.extension(partial, include, run.dropped)
    return error


def create_app(
    specs: Mapping[str, MoASpec],
    *,
    api_key_env: str | None = None,
    limits: Limits | None = None,
    db_path: str | os.PathLike[str] | None = None,
    include_ui: bool = True,
    allowed_hosts: Sequence[str] | None = None,
    allowed_origins: Sequence[str] = (),
    chat_models: Mapping[str, BaseChatModel] | None = None,
) -> FastAPI:
    """The ASGI app serving ``specs`` (model name -> spec).

    ``api_key_env`` names the variable holding the bearer token clients must send (compared
    in constant time; several, comma-separated, give each client its own); the web page's
    API asks for it too, and each token sees only its own conversations. ``db_path``: the
    SQLite file of the UI's conversations (default: the page's own, ``web_db_path()``, not
    the CLI's thread store).
    ``allowed_hosts`` refuses requests naming another ``Host`` (``moa serve`` on a loopback
    address allows only loopback names, so a DNS-rebinding web page cannot spend its keys).
    ``allowed_origins``: web origins besides the server's own whose pages may call the JSON
    routes (``--allow-origin``; every other ``Origin`` is refused).
    """
    limits = limits or Limits()
    tokens: list[str] = []  # several, comma-separated: one per client (own conversations)
    if api_key_env:
        register_key_env(api_key_env)  # the clients' tokens are secrets too
        tokens = [t.strip() for t in os.environ.get(api_key_env, "").split(",") if t.strip()]
        if not tokens:
            raise SpecError(f"--api-key-env {api_key_env}: the variable is not set")
    graphs: dict[str, CompiledMoA] = {  # `cache: true` specs share the persistent cache
        name: create_moa(spec, chat_models=chat_models, cache=graph_cache(spec))
        for name, spec in specs.items()
    }
    policy = RunPolicy(
        specs=dict(specs), presets=(), limits=RunLimits(max_tokens=limits.max_tokens)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_gc()  # every worker process, once its graphs are built
        yield
        from langgraph_moa.models.factory import aclose_clients

        await aclose_clients()

    app = FastAPI(title="langgraph-moa", lifespan=lifespan, docs_url=None, redoc_url=None)
    # Innermost middleware (after auth): bodies bounded while read, no cross-site runs, well-
    # formed JSON, --max-concurrent for every kind of run (see langgraph_moa.asgi).
    app.add_middleware(
        RequestGuard,
        max_body_bytes=limits.max_body_bytes,
        read_timeout=limits.read_timeout,
        allowed_origins=allowed_origin_set(allowed_origins),  # checked now, not at 1st request
        max_concurrent_runs=limits.max_concurrent_runs,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown routes (404) and wrong methods (405) in OpenAI's error shape, as OpenAI
        words them; the web page's API keeps FastAPI's own."""
        if request.url.path.startswith("/ui/"):
            return await http_exception_handler(request, exc)
        where = f"({request.method} {request.url.path[:200]})"
        message = {404: f"Invalid URL {where}", 405: f"Invalid method for URL {where}"}.get(
            exc.status_code, str(exc.detail)
        )
        return _error(oa.APIError(exc.status_code, message, headers=dict(exc.headers or {})))

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if (path.startswith("/v1") or path.startswith("/ui/api")) and tokens:
            sent = request.headers.get("authorization", "").encode()
            if not any(hmac.compare_digest(sent, f"Bearer {t}".encode()) for t in tokens):
                return _error(
                    oa.APIError(401, "missing or wrong bearer token", code="invalid_api_key")
                )
        response: Response = await call_next(request)
        return response

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(graphs)}

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "langgraph-moa"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(name) for name in graphs]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str) -> Response:
        if model not in graphs:
            return _error(_unknown_model(model, graphs))
        return JSONResponse(model_card(model))

    async def json_body(request: Request) -> Any:
        try:
            raw = await request.body()
        except ClientDisconnect:  # gone while sending: nobody reads this, nothing is logged
            raise oa.APIError(400, "the request body was not received") from None
        if len(raw) > limits.max_body_bytes:
            raise oa.APIError(413, f"request body over {limits.max_body_bytes} bytes")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise oa.APIError(400, "the request body is not valid JSON") from None

    def prepare(body: Any) -> Run:
        """A validated request, its graph and run context: everything refused here, by
        field name, before a model is called."""
        req = oa.parse_request(
            body, max_messages=limits.max_messages, max_tokens_cap=limits.max_tokens
        )
        graph = graphs.get(req.model)
        if graph is None:
            raise _unknown_model(req.model, graphs)
        context = oa.run_context(req)
        # The same allowlist as the LangGraph server: a served spec by name, overrides only.
        policy.resolve({"preset": req.model, "temperature": req.temperature})
        dropped = sampling.dropped(specs[req.model], context)
        return Run(req, graph, context, {"messages": oa.conversation(req)}, dropped)

    async def invoke(
        request: Request, run: Run, render: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        """A plain run, its final state rendered as the route's JSON body; cancelled if the
        client leaves (nobody reads that answer), an OpenAI-shaped error if it fails."""
        try:
            out: dict[str, Any] = await unless_disconnected(
                request, run.graph.ainvoke(run.inputs, context=run.context)
            )
        except ClientGone:
            return Response(status_code=CLIENT_GONE)
        except Exception as exc:
            return _error(_run_failed(exc, run))
        return JSONResponse(render(out))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            run = prepare(await json_body(request))
        except oa.APIError as exc:
            return _error(exc)
        except MoAError as exc:
            return _error(_map_run_error(exc))
        req = run.request
        include = req.moa.include if req.moa else []
        cid = oa.completion_id()
        if not req.stream:
            return await invoke(
                request, run, lambda out: oa.completion(cid, req.model, out, include, run.dropped)
            )
        with_usage = bool((req.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            stream_unless_disconnected(request, _stream(run, cid, with_usage, include)),
            media_type="text/event-stream",
        )

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        try:
            body = await json_body(request)
            try:
                run = prepare(rs.to_chat(body))
            except oa.APIError as exc:
                raise rs.renamed(exc) from None
        except oa.APIError as exc:
            return _error(exc)
        except MoAError as exc:
            return _error(_map_run_error(exc))
        rid = rs.response_id()
        if not run.request.stream:
            return await invoke(
                request,
                run,
                lambda out: rs.response(rid, body, run.request.model, out, run.dropped),
            )
        events = rs.stream(rid, body, run.request.model, answer_events(run), run.dropped)
        return StreamingResponse(
            stream_unless_disconnected(request, _errors_as_events(events, run)),
            media_type="text/event-stream",
        )

    if include_ui:  # with a token, each token's conversations are its own (web/router.py)
        from langgraph_moa.web import ui_router, web_db_path

        app.include_router(
            ui_router(dict(specs), db_path=Path(db_path or web_db_path()), chat_models=chat_models)
        )
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def answer_events(run: Run) -> AsyncIterator[tuple[str, Any]]:
    """A streamed run as what a client sees of it: ``("text", str)``, ``("tool_calls",
    [delta, ...])`` and ``("restart", None)`` while the answer is written, then ``("final",
    state)``. A failed run raises (the renderers turn it into their error event)."""
    final: dict[str, Any] = {}
    answer_id: str | None = None
    async for item in run.graph.astream(
        run.inputs, context=run.context, stream_mode=["messages", "values"]
    ):
        mode, part = cast("tuple[str, Any]", item)
        if mode == "values":
            final = part
            continue
        token, meta = part
        calls = oa.tool_call_deltas(token) if isinstance(token, AIMessage) else []
        if meta.get("langgraph_node") not in ANSWER_NODES or not (token.text or calls):
            continue
        if answer_id is not None and token.id != answer_id:
            yield "restart", None  # a retried aggregator restarts its answer
        answer_id = token.id
        if calls:
            yield "tool_calls", calls
        if token.text:
            yield "text", token.text
    yield "final", final


async def _errors_as_events(events: AsyncIterator[bytes], run: Run) -> AsyncIterator[bytes]:
    """A renderer's events; a failed run's error as one last OpenAI-shaped error event."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        yield _sse({"type": "error", **_run_failed(exc, run).body()})


async def _stream(
    run: Run,
    cid: str,
    with_usage: bool,
    include: list[str],
) -> AsyncIterator[bytes]:
    """The aggregator's tokens as ``chat.completion.chunk`` events, then ``[DONE]``."""
    model = run.request.model
    yield _sse(oa.chunk(cid, model, {"role": "assistant", "content": ""}))
    final: dict[str, Any] = {}
    try:
        async for kind, data in answer_events(run):
            if kind == "final":
                final = data
            elif kind == "restart":  # tell the client plainly
                yield _sse(oa.chunk(cid, model, {"content": "\n\n[answer restarted]\n\n"}))
            elif kind == "tool_calls":
                yield _sse(oa.chunk(cid, model, {"tool_calls": data}))
            else:
                yield _sse(oa.chunk(cid, model, {"content": data}))
    except Exception as exc:
        yield _sse(_run_failed(exc, run).body())
        yield b"data: [DONE]\n\n"
        return
    last = oa.chunk(cid, model, {}, finish_reason=finish_reason(answer_message(final)))
    if (moa := oa.extension(final, include, run.dropped)) is not None:
        last["moa"] = moa
    yield _sse(last)
    if with_usage:
        yield _sse(
            {
                **oa.chunk(cid, model, {}),
                "choices": [],
                "usage": oa.usage(final.get("calls") or []),
            }
        )
    yield b"data: [DONE]\n\n"
