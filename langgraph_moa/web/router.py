"""The web UI as a FastAPI router: the page, its assets, server-side runs, conversations.

``ui_router(specs, db_path=...)`` is everything the page needs; ``moa serve`` includes it in
its app and ``create_ui_app`` wraps it alone (``moa ui``, tests). Every URL the page uses is
relative, so the router may be included under a prefix. The router's lifespan cancels the
runs still going when the app shuts down.

    GET    /                                 the page
    GET    /ui/static/<file>                 its script, style and vendored libraries (no CDN)
    GET    /ui/api/specs                     the specs a run may use and their layout
    GET    /ui/api/mermaid?spec=NAME         the spec's graph as Mermaid text
    POST   /ui/api/runs                      start a turn (or resume one) -> 202 {run_id, ...}
    GET    /ui/api/runs/{id}/events          its events (SSE; Last-Event-ID replays the rest)
    POST   /ui/api/runs/{id}/cancel          Stop
    GET    /ui/api/threads?q=                the caller's conversations, most recent first
    GET    /ui/api/threads/{id}              every turn of one, as its cards showed it
    PATCH  /ui/api/threads/{id}              rename; DELETE deletes
    GET    /ui/api/threads/{id}/export       ?format=md|json
    POST   /ui/api/threads/{id}/retry        redo a turn's synthesis, or the whole turn

Conversations are owned: a request's bearer token (``Authorization: Bearer``) names its
namespace (a hash of it is stored with each thread it creates); a request sees, extends and
deletes only threads of its own namespace. Without tokens every client shares one namespace:
the page is single-user. Validating tokens is the app's job (``moa serve --api-key-env``).

Errors are ``{"error": {"message", "field"?}}`` with a 4xx status, given before any model is
called; they never name the server's environment variables.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from langgraph_moa.cache import graph_cache
from langgraph_moa.graphs.builder import build_graph
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.redact import scrub
from langgraph_moa.web import api, export, store
from langgraph_moa.web.api import (
    RenameRequest,
    RetryRequest,
    RunRequest,
    WebError,
    WebRoute,
)
from langgraph_moa.web.events import Event, layout, run_events
from langgraph_moa.web.runs import Run, RunRegistry, TooBusy
from langgraph_moa.web.threads import (
    fork_point,
    label_references,
    list_threads,
    short_title,
    thread_turns,
)

log = logging.getLogger(__name__)

STATIC = Path(str(files("langgraph_moa.web").joinpath("static")))

# Offline by construction: the page may load nothing but what this router serves; model
# output it renders can neither submit a form nor be framed by another site.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none';"
    " base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)
MEDIA = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _sse(seq: int, name: str, data: str) -> str:
    return f"id: {seq}\nevent: {name}\ndata: {data}\n\n"


def _nodes(seats: dict[str, Any]) -> set[str]:
    return {seat["node"] for layer in seats["layers"] for seat in layer}


def ui_router(
    specs: Mapping[str, MoASpec],
    *,
    db_path: str | Path,
    chat_models: Mapping[str, BaseChatModel] | None = None,
    runs: RunRegistry | None = None,
) -> APIRouter:
    """Routes of the web UI for ``specs`` (name -> spec; the first is preselected).

    Conversations live in the SQLite file ``db_path`` (the page's own: ``web_db_path()``
    by default in ``moa ui`` and ``moa serve``). ``chat_models`` plugs in chat model
    instances by model name, as in ``build_graph``. ``runs``: the run registry (its limits)."""
    if not specs:
        raise ValueError("ui_router needs at least one spec")
    specs = dict(specs)
    db = Path(db_path)
    registry = runs or RunRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await registry.aclose()

    router = APIRouter(route_class=WebRoute, lifespan=lifespan)
    router.runs = registry  # type: ignore[attr-defined]  # tests and embedding apps

    @cache
    def graph_of(name: str) -> StateGraph[Any, Any, Any, Any]:
        return build_graph(specs[name], chat_models=chat_models)

    def compiled(name: str, saver: AsyncSqliteSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
        spec = specs[name]
        return graph_of(name).compile(checkpointer=saver, cache=graph_cache(spec), name=spec.name)

    def graphs(saver: AsyncSqliteSaver) -> Callable[[str | None], Any]:
        made: dict[str, Any] = {}
        first = next(iter(specs))

        def graph_for(name: str | None) -> Any:
            name = name if name in specs else first
            assert name is not None
            if name not in made:
                made[name] = compiled(name, saver)
            return made[name]

        return graph_for

    def spec_named(name: str) -> MoASpec:
        if name not in specs:
            raise WebError(404, f"unknown spec {name!r}; specs: {', '.join(specs)}", "spec")
        spec = specs[name]
        if spec.missing_keys():  # the operator's business: never name the variables
            raise WebError(400, f"spec {name!r} is not configured on the server", "spec")
        return spec

    @asynccontextmanager
    async def saver() -> AsyncIterator[AsyncSqliteSaver]:
        db.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(db)) as s:
            await store.setup(s)
            yield s

    async def owned(s: AsyncSqliteSaver, thread_id: str, owner: str | None) -> dict[str, Any]:
        """The thread's row if the caller may see it; 404 otherwise (also for others')."""
        row = await store.thread_row(s, api.thread_id(thread_id))
        if row is None or row["owner"] != owner:
            raise WebError(404, f"no conversation {thread_id!r}", "thread_id")
        return row

    def run_of(run_id: str, owner: str | None) -> Run:
        run = registry.get(run_id)
        if run is None or run.owner != owner:
            raise WebError(404, f"no run {run_id!r} (finished runs are kept a while)", "run_id")
        return run

    async def record_end(s: AsyncSqliteSaver, thread_id: str, last: Event | None) -> None:
        """How the run's turn ended, for the thread read (an unfinished turn's reason).

        Written on the run's own connection: a run cancelled mid-write may leave that
        connection in a transaction, which another connection would wait on."""
        name, data = last or ("cancelled", {})
        status = {"done": "done", "review": "paused", "cancelled": "cancelled"}.get(name, "failed")
        error = data.get("message") if status == "failed" else None
        calls = (data.get("partial") or {}).get("calls") or []
        try:
            turns = await thread_turns(graphs(s), thread_id)
            if turns:
                # A call whose failure ended the run (the aggregator without a fallback) is
                # in the error's partial calls but in no checkpoint: kept with the turn.
                saved = {c.get("node") for c in turns[-1].get("calls") or []}
                unsaved = [c for c in calls if isinstance(c, dict) and c.get("node") not in saved]
                key = turns[-1]["key"]
                await store.record_turn(s, thread_id, key, status, error, unsaved)
        except Exception as exc:  # the run ended all the same; its turn reads as unfinished
            log.error(
                "thread %s: could not record how a turn ended: %s", thread_id, scrub(str(exc))
            )

    def launch(
        spec_name: str,
        thread_id: str,
        owner: str | None,
        payload: Any,
        start: dict[str, Any],
        checkpoint: RunnableConfig | None = None,
    ) -> Run:
        """A server-side run of ``payload`` on the thread (forked at ``checkpoint``)."""

        async def events() -> AsyncIterator[Event]:
            try:
                async with saver() as s:
                    config: RunnableConfig = {
                        "configurable": {
                            **((checkpoint or {}).get("configurable") or {}),
                            "thread_id": thread_id,
                        },
                        "metadata": {"moa_spec": spec_name},
                    }
                    graph = compiled(spec_name, s)
                    last: Event | None = None
                    try:
                        async for event in run_events(graph, payload, config, start=start):
                            last = event
                            yield event
                    except asyncio.CancelledError:  # Stop, or the server shutting down
                        await record_end(s, thread_id, None)
                        raise
                    await record_end(s, thread_id, last)
            except Exception as exc:  # e.g. the thread store failed: say so, keep the page
                message = scrub(f"the server could not run this turn: {type(exc).__name__}: {exc}")
                log.error("%s (thread %s)", message, thread_id)  # scrubbed: no traceback
                yield "error", {"message": message, "partial": {}, "summary": None}

        not_running(thread_id)  # again: no await between this check and the start
        try:
            run = registry.start(
                thread_id=thread_id,
                turn=int(start["turn"]),
                owner=owner,
                events=events(),
            )
        except TooBusy as exc:
            raise WebError(429, str(exc)) from None
        start["run_id"] = run.id
        return run

    def accepted(run: Run, **more: Any) -> JSONResponse:
        body = {"run_id": run.id, "thread_id": run.thread_id, "turn": run.turn, **more}
        return JSONResponse(body, status_code=202)

    def not_running(thread_id: str) -> None:
        if busy := registry.running_on(thread_id):
            raise WebError(
                409, f"this conversation is already running a turn ({busy.id})", "thread_id"
            )

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    @router.get("/ui/static/{name:path}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if not path.is_file() or STATIC.resolve() not in path.parents:
            raise WebError(404, "no such file")
        media = MEDIA.get(path.suffix, "text/plain")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    @router.get("/ui/api/specs")
    async def list_specs() -> dict[str, Any]:
        return {
            "specs": [
                {
                    "name": name,
                    "layout": layout(spec),
                    "configured": not spec.missing_keys(),
                    "review": spec.review,
                }
                for name, spec in specs.items()
            ]
        }

    @router.get("/ui/api/mermaid")
    async def mermaid_of(spec: str) -> dict[str, str]:
        from langgraph_moa.graphs.drawing import mermaid

        if spec not in specs:
            raise WebError(404, f"unknown spec {spec!r}", "spec")
        return {"spec": spec, "mermaid": mermaid(specs[spec])}

    @router.post("/ui/api/runs", status_code=202)
    async def start_run(request: Request) -> JSONResponse:
        body: RunRequest = await api.body(request, RunRequest)
        owner = api.owner(request)
        spec = spec_named(body.spec)
        question = body.question.strip()
        if body.resume is not None:
            if not body.thread_id:
                raise WebError(400, "resume needs the thread_id of the paused run", "thread_id")
        elif not question:
            raise WebError(400, "question: the question is empty", "question")
        thread_id = api.thread_id(body.thread_id or f"ui-{uuid.uuid4().hex[:12]}")
        not_running(thread_id)
        async with saver() as s:
            if not await store.claim(s, thread_id, owner):
                raise WebError(404, f"no conversation {thread_id!r}", "thread_id")
            state = await compiled(body.spec, s).aget_state(
                {"configurable": {"thread_id": thread_id}}
            )
        asked = [m for m in state.values.get("messages", []) if m.type == "human"]
        payload: Any = {"messages": [("user", question)]}
        shown = question
        if body.resume is not None:
            if any(task.interrupts for task in state.tasks):
                payload = Command(resume=body.resume)
            elif state.next:  # stopped or failed mid-turn: go on from its checkpoint
                payload = None
            else:
                raise WebError(
                    409, "nothing to resume: this conversation is not paused or stopped", "resume"
                )
            shown = asked[-1].text if asked else ""
        start = {
            "thread_id": thread_id,
            "turn": len(asked) + (body.resume is None),
            "spec": body.spec,
            "question": shown,
            "layout": layout(spec),
            "resumed": body.resume is not None,
        }
        return accepted(launch(body.spec, thread_id, owner, payload, start))

    @router.get("/ui/api/runs/{run_id}")
    async def run_info(run_id: str, request: Request) -> dict[str, Any]:
        run = run_of(run_id, api.owner(request))
        return {**run.info(), "thread_id": run.thread_id, "events": len(run.events)}

    @router.get("/ui/api/runs/{run_id}/events")
    async def run_stream(run_id: str, request: Request, after: int = -1) -> StreamingResponse:
        run = run_of(run_id, api.owner(request))
        last = request.headers.get("last-event-id", "")
        if last.strip().lstrip("-").isdigit():
            after = max(after, int(last))

        async def stream() -> AsyncIterator[str]:
            async for seq, name, text in run.follow(after):
                yield _sse(seq, name, text)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.post("/ui/api/runs/{run_id}/cancel")
    async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
        run = run_of(run_id, api.owner(request))
        if run.cancel() and run.task is not None:
            await _settle(run)
        return {"status": run.status, "run_id": run.id}

    @router.get("/ui/api/threads")
    async def threads(request: Request, q: str = "") -> dict[str, Any]:
        owner = api.owner(request)
        async with saver() as s:
            titles = await store.owned_titles(s, owner)
            found = await list_threads(s, owner, titles, query=q[:200])
        for thread in found:
            busy = registry.running_on(thread["thread_id"])
            thread["running"] = busy.info() if busy and busy.owner == owner else None
        return {"threads": found}

    async def read_thread(thread_id: str, owner: str | None) -> dict[str, Any]:
        async with saver() as s:
            row = await owned(s, thread_id, owner)
            outcomes = await store.turn_outcomes(s, thread_id)
            turns = await thread_turns(graphs(s), thread_id, outcomes)
        busy = registry.running_on(thread_id)
        if not turns and busy is None:
            raise WebError(404, f"no conversation {thread_id!r}", "thread_id")
        for turn in turns:  # cards in spec order when the turn's spec is still offered
            spec = specs.get(turn["spec"] or "")
            if spec is not None and _nodes(layout(spec)) >= _nodes(turn["layout"]):
                turn["layout"] = layout(spec)
            label_references(turn)
            del turn["key"]
        if busy is not None and turns and busy.turn == len(turns):
            turns[-1]["status"], turns[-1]["error"] = "running", None
        last = turns[-1] if turns else None
        paused = None
        if last is not None and last["status"] == "paused":
            pause = last["pause"] if isinstance(last["pause"], Mapping) else {}
            paused = {
                **pause,
                "turn": last["turn"],
                "references": list(pause.get("references") or last["references"]),
            }
        title = row["title"] or short_title(turns[0]["question"] if turns else "")
        return {
            "thread_id": thread_id,
            "title": title,
            "spec": last["spec"] if last else None,
            "turns": turns,
            "running": {"run_id": busy.id, "turn": busy.turn} if busy else None,
            "paused": paused,
        }

    @router.get("/ui/api/threads/{thread_id}")
    async def thread(thread_id: str, request: Request) -> dict[str, Any]:
        return await read_thread(thread_id, api.owner(request))

    @router.patch("/ui/api/threads/{thread_id}")
    async def rename_thread(thread_id: str, request: Request) -> dict[str, Any]:
        body: RenameRequest = await api.body(request, RenameRequest)
        owner = api.owner(request)
        title = " ".join(body.title.split())
        if not title:
            raise WebError(400, "title: must not be blank", "title")
        async with saver() as s:
            await owned(s, thread_id, owner)
            await store.rename(s, thread_id, title, owner)
        return {"thread_id": thread_id, "title": title}

    @router.delete("/ui/api/threads/{thread_id}")
    async def delete_thread(thread_id: str, request: Request) -> dict[str, Any]:
        owner = api.owner(request)
        async with saver() as s:
            await owned(s, thread_id, owner)
            not_running(thread_id)
            await store.delete(s, thread_id)
        return {"thread_id": thread_id, "deleted": True}

    @router.get("/ui/api/threads/{thread_id}/export")
    async def export_thread(thread_id: str, request: Request, format: str = "md") -> Response:
        if format not in ("md", "json"):
            raise WebError(400, "format: md or json", "format")
        data = await read_thread(thread_id, api.owner(request))
        for turn in data["turns"]:
            turn.pop("pause", None)
        text = export.to_markdown(data) if format == "md" else export.to_json(data)
        media = "text/markdown" if format == "md" else "application/json"
        name = export.filename(data, format)
        return Response(
            text,
            media_type=f"{media}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.post("/ui/api/threads/{thread_id}/retry", status_code=202)
    async def retry(thread_id: str, request: Request) -> JSONResponse:
        body: RetryRequest = await api.body(request, RetryRequest)
        owner = api.owner(request)
        not_running(thread_id)
        async with saver() as s:
            await owned(s, thread_id, owner)
            point = await fork_point(graphs(s), thread_id, body.turn, body.what)
        if point is None:
            what = "no synthesis to retry" if body.what == "synthesis" else "no such turn"
            raise WebError(409, f"turn {body.turn}: {what}", "turn")
        config, question, used = point
        name = body.spec or used or next(iter(specs))
        spec = spec_named(name)
        payload: Any = None
        if body.what == "turn":
            question = (body.question or question).strip()
            if not question:
                raise WebError(400, "question: the question is empty", "question")
            payload = {"messages": [("user", question)]}
        start = {
            "thread_id": thread_id,
            "turn": body.turn,
            "spec": name,
            "question": question,
            "layout": layout(spec),
            "resumed": False,
            "retry": body.what,
        }
        return accepted(launch(name, thread_id, owner, payload, start, checkpoint=config))

    return router


async def _settle(run: Run, timeout: float = 5.0) -> None:
    """Wait (briefly) for a cancelled run to record its ``cancelled`` event."""
    if run.task is not None:
        await asyncio.wait([run.task], timeout=timeout)
