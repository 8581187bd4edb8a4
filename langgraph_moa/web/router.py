"""The web UI as a FastAPI router: the page, its assets, the run event stream, past threads.

``ui_router(specs, db_path=...)`` is everything the page needs; ``moa serve`` includes it in
its app and ``create_ui_app`` wraps it alone (``moa ui``, tests). Every URL the page uses is
relative, so the router may be included under a prefix.

    GET  /                          the page
    GET  /ui/static/<file>          its script, style and vendored libraries (no CDN)
    GET  /ui/api/specs              the specs a run may use, their layout and missing keys
    GET  /ui/api/mermaid?spec=NAME  the spec's graph as Mermaid text
    POST /ui/api/runs               {"spec", "question", "thread_id"?} -> text/event-stream
    GET  /ui/api/threads            past conversations, most recent first
    GET  /ui/api/threads/{id}       every turn of one, as its cards showed it
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import StateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field

from langgraph_moa.cache import graph_cache
from langgraph_moa.graphs.builder import build_graph
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.redact import scrub
from langgraph_moa.web.events import Event, layout, run_events
from langgraph_moa.web.threads import list_threads, thread_turns

log = logging.getLogger(__name__)

STATIC = Path(str(files("langgraph_moa.web").joinpath("static")))

# Offline by construction: the page may load nothing but what this router serves.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none';"
    " base-uri 'self'; frame-ancestors 'self'"
)
MEDIA = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class RunRequest(BaseModel):
    """One question to one spec, optionally continuing a conversation."""

    spec: str = Field(description="Name of a spec the server offers (GET /ui/api/specs).")
    question: str = Field("", description="The user's message (not with ``resume``).")
    thread_id: str | None = Field(
        None, description="Continue this conversation; omitted = start a new one."
    )
    resume: bool | list[str] | None = Field(
        None,
        description="Continue a run paused for review (``thread_id`` required): true reads the"
        " references as they are, a list replaces them.",
    )


def _sse(event: Event) -> str:
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def _nodes(seats: dict[str, Any]) -> set[str]:
    return {seat["node"] for layer in seats["layers"] for seat in layer}


def ui_router(
    specs: Mapping[str, MoASpec],
    *,
    db_path: str | Path,
    chat_models: Mapping[str, BaseChatModel] | None = None,
) -> APIRouter:
    """Routes of the web UI for ``specs`` (name -> spec; the first is preselected).

    Conversations live in the SQLite file ``db_path`` (the one ``moa --thread`` uses, so
    the page lists the shell's threads too). ``chat_models`` plugs in chat model instances
    by model name, as in ``build_graph``."""
    if not specs:
        raise ValueError("ui_router needs at least one spec")
    specs = dict(specs)
    db = Path(db_path)
    running: set[str] = set()
    router = APIRouter()

    @cache
    def graph_of(name: str) -> StateGraph[Any, Any, Any, Any]:
        return build_graph(specs[name], chat_models=chat_models)

    def spec_named(name: str) -> MoASpec:
        if name not in specs:
            raise HTTPException(404, f"unknown spec {name!r}; specs: {', '.join(specs)}")
        return specs[name]

    @asynccontextmanager
    async def saver() -> AsyncIterator[AsyncSqliteSaver]:
        db.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(db)) as s:
            yield s

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    @router.get("/ui/static/{name:path}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if not path.is_file() or STATIC.resolve() not in path.parents:
            raise HTTPException(404, "no such file")
        media = MEDIA.get(path.suffix, "text/plain")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    @router.get("/ui/api/specs")
    async def list_specs() -> dict[str, Any]:
        return {
            "specs": [
                {
                    "name": name,
                    "layout": layout(spec),
                    "missing_keys": spec.missing_keys(),
                    "review": spec.review,
                }
                for name, spec in specs.items()
            ]
        }

    @router.get("/ui/api/mermaid")
    async def mermaid_of(spec: str) -> dict[str, str]:
        from langgraph_moa.cli import mermaid

        return {"spec": spec, "mermaid": mermaid(spec_named(spec))}

    @router.get("/ui/api/threads")
    async def threads() -> dict[str, Any]:
        async with saver() as s:
            return {"threads": await list_threads(s)}

    @router.get("/ui/api/threads/{thread_id}")
    async def thread(thread_id: str) -> dict[str, Any]:
        async with saver() as s:
            graph = graph_of(next(iter(specs))).compile(checkpointer=s)
            turns = await thread_turns(graph, thread_id)
        if not turns:
            raise HTTPException(404, f"no conversation {thread_id!r}")
        for turn in turns:  # cards in spec order when the turn's spec is still offered
            spec = specs.get(turn["spec"] or "")
            if spec is not None and _nodes(layout(spec)) == _nodes(turn["layout"]):
                turn["layout"] = layout(spec)
        return {"thread_id": thread_id, "turns": turns}

    @router.post("/ui/api/runs")
    async def run(request: RunRequest) -> StreamingResponse:
        spec = spec_named(request.spec)
        question = request.question.strip()
        if request.resume is not None:
            if not request.thread_id:
                raise HTTPException(400, "resume needs the thread_id of the paused run")
        elif not question:
            raise HTTPException(400, "the question is empty")
        if missing := spec.missing_keys():
            needs = "; ".join(f"{var} (for {', '.join(ms)})" for var, ms in missing.items())
            raise HTTPException(400, f"spec {request.spec!r} needs API keys: set {needs}")
        thread_id = request.thread_id or f"ui-{uuid.uuid4().hex[:12]}"
        if thread_id in running:
            raise HTTPException(409, f"conversation {thread_id!r} is already running a turn")
        running.add(thread_id)

        async def stream() -> AsyncIterator[str]:
            try:
                async with saver() as s:
                    graph = graph_of(request.spec).compile(
                        checkpointer=s, cache=graph_cache(spec), name=spec.name
                    )
                    config: RunnableConfig = {
                        "configurable": {"thread_id": thread_id},
                        "metadata": {"moa_spec": request.spec},
                    }
                    state = await graph.aget_state(config)
                    asked = [m for m in state.values.get("messages", []) if m.type == "human"]
                    payload: Any = {"messages": [("user", question)]}
                    shown = question
                    if request.resume is not None:
                        if not any(task.interrupts for task in state.tasks):
                            message = "nothing to resume: this conversation is not paused"
                            yield _sse(("error", {"message": message, "partial": {}}))
                            return
                        payload = Command(resume=request.resume)
                        shown = asked[-1].text if asked else ""
                    start = {
                        "thread_id": thread_id,
                        "turn": len(asked) + (request.resume is None),
                        "spec": request.spec,
                        "question": shown,
                        "layout": layout(spec),
                        "resumed": request.resume is not None,
                    }
                    events = run_events(graph, payload, config, start=start)
                    async with aclosing(events):
                        async for event in events:
                            yield _sse(event)
            except Exception as exc:  # e.g. the thread store failed: say so, keep the page
                message = scrub(f"the server could not run this turn: {type(exc).__name__}: {exc}")
                log.error("%s (thread %s)", message, thread_id)  # scrubbed: no traceback
                yield _sse(("error", {"message": message, "partial": {}, "summary": None}))
            finally:
                running.discard(thread_id)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
