"""``moa serve``: every served spec as a "virtual model" behind the OpenAI chat-completions API,
plus the web UI at ``/``.

One compiled graph per served spec, built once at startup; the graphs share the process's
HTTP pools (``langgraph_moa.models.factory``). Non-streaming requests run ``ainvoke`` (every
model call a plain request); ``stream: true`` streams the aggregator's tokens from
``stream_mode="messages"``. Requests choose a served spec by name and may override only
``temperature`` / ``max_tokens`` / ``stop``: they cannot change a spec's topology or
endpoints. Errors are OpenAI-shaped, never a stack trace; secrets never appear in a response
or a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

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
from langgraph_moa.redact import scrub
from langgraph_moa.serve import MAX_CONCURRENT_RUNS, openai_api as oa
from langgraph_moa.tuning import tune_gc

log = logging.getLogger("langgraph_moa.serve")


@dataclass(frozen=True)
class Limits:
    """What one request, and the server as a whole, may ask for."""

    max_body_bytes: int = 1 << 20
    max_messages: int = 256
    max_tokens: int = MAX_OVERRIDE_TOKENS  # the run-spec policy's cap, as on the LangGraph server
    max_concurrent_runs: int = MAX_CONCURRENT_RUNS


def _error(exc: oa.APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _map_run_error(exc: BaseException) -> oa.APIError:
    """What a failed run means to an OpenAI client (and never a traceback)."""
    if isinstance(exc, MissingAPIKeyError):  # the operator's problem: don't name variables
        return oa.APIError(503, "this model is not configured on the server", etype="server_error")
    if isinstance(exc, (InvalidInputError, SpecError)):
        return oa.APIError(400, scrub(str(exc)))
    if isinstance(exc, (LayerFailedError, ModelCallError)):
        if isinstance(exc, LayerFailedError):
            what = f"upstream models failed ({', '.join(sorted(exc.failures)) or 'unknown'})"
        else:
            what = f"upstream model {exc.model} failed"
        reason = exc.reason if isinstance(exc, ModelCallError) else str(exc)
        return oa.APIError(
            502, f"{what}: {scrub(reason)}"[:1000], etype="upstream_error", code="upstream_failed"
        )
    if isinstance(exc, MoAError):
        return oa.APIError(400, scrub(str(exc)))
    log.error("run failed: %s: %s", type(exc).__name__, scrub(str(exc)))
    return oa.APIError(500, "internal error", etype="server_error")


def create_app(
    specs: Mapping[str, MoASpec],
    *,
    api_key_env: str | None = None,
    limits: Limits | None = None,
    db_path: str | os.PathLike[str] | None = None,
    include_ui: bool = True,
    allowed_hosts: Sequence[str] | None = None,
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
    """
    limits = limits or Limits()
    tokens: list[str] = []  # several, comma-separated: one per client (own conversations)
    if api_key_env:
        tokens = [t.strip() for t in os.environ.get(api_key_env, "").split(",") if t.strip()]
        if not tokens:
            raise SpecError(f"--api-key-env {api_key_env}: the variable is not set")
    graphs: dict[str, CompiledMoA] = {  # `cache: true` specs share the persistent cache
        name: create_moa(spec, chat_models=chat_models, cache=graph_cache(spec))
        for name, spec in specs.items()
    }
    running = asyncio.Semaphore(limits.max_concurrent_runs)
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

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith("/v1") or path.startswith("/ui/api"):
            if tokens:
                sent = request.headers.get("authorization", "").encode()
                if not any(hmac.compare_digest(sent, f"Bearer {t}".encode()) for t in tokens):
                    return _error(
                        oa.APIError(401, "missing or wrong bearer token", code="invalid_api_key")
                    )
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
                return _error(oa.APIError(413, f"request body over {limits.max_body_bytes} bytes"))
        response: Response = await call_next(request)
        return response

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(graphs)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "langgraph-moa"}
                for name in graphs
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > limits.max_body_bytes:
            return _error(oa.APIError(413, f"request body over {limits.max_body_bytes} bytes"))
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(oa.APIError(400, "the request body is not valid JSON"))
        try:
            req = oa.parse_request(
                body, max_messages=limits.max_messages, max_tokens_cap=limits.max_tokens
            )
            graph = graphs.get(req.model)
            if graph is None:
                raise oa.APIError(
                    404,
                    f"unknown model {req.model!r}; served: {', '.join(sorted(graphs))}",
                    param="model",
                    code="model_not_found",
                )
            overrides = {
                "temperature": req.temperature,
                "max_tokens": req.max_completion_tokens or req.max_tokens,
                "stop": req.stop,
                "tools": req.tools or None,
                "tool_choice": req.tool_choice if req.tools else None,
                "response_format": req.response_format,
            }
            # The same allowlist as the LangGraph server: a served spec by name, overrides only.
            policy.resolve({"preset": req.model, **overrides})
            context = Context(**overrides)  # type: ignore[arg-type]
        except oa.APIError as exc:
            return _error(exc)
        except MoAError as exc:
            return _error(_map_run_error(exc))
        if running.locked():
            return _error(
                oa.APIError(
                    429,
                    "too many runs in progress; retry shortly",
                    etype="rate_limit_error",
                    code="server_busy",
                )
            )
        include = req.moa.include if req.moa else []
        inputs: Any = {"messages": oa.conversation(req)}
        cid = oa.completion_id()
        if not req.stream:
            async with running:
                try:
                    out = await graph.ainvoke(inputs, context=context)
                except Exception as exc:
                    return _error(_map_run_error(exc))
            return JSONResponse(oa.completion(cid, req.model, out, include))
        with_usage = bool((req.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            _stream(graph, inputs, context, cid, req.model, with_usage, include, running),
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


async def _stream(
    graph: CompiledMoA,
    inputs: Any,
    context: Context,
    cid: str,
    model: str,
    with_usage: bool,
    include: list[str],
    running: asyncio.Semaphore,
) -> AsyncIterator[bytes]:
    """The aggregator's tokens as ``chat.completion.chunk`` events, then ``[DONE]``."""
    async with running:
        yield _sse(oa.chunk(cid, model, {"role": "assistant", "content": ""}))
        final: dict[str, Any] = {}
        answer_id: str | None = None
        try:
            async for item in graph.astream(
                inputs, context=context, stream_mode=["messages", "values"]
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
                    # a retried aggregator restarts its answer: tell the client plainly
                    yield _sse(oa.chunk(cid, model, {"content": "\n\n[answer restarted]\n\n"}))
                answer_id = token.id
                if calls:
                    yield _sse(oa.chunk(cid, model, {"tool_calls": calls}))
                if token.text:
                    yield _sse(oa.chunk(cid, model, {"content": token.text}))
        except Exception as exc:
            yield _sse(_map_run_error(exc).body())
            yield b"data: [DONE]\n\n"
            return
        last = oa.chunk(cid, model, {}, finish_reason=finish_reason(answer_message(final)))
        if include:
            last["moa"] = {name: final.get(name) for name in include}
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
