"""The LangGraph server's custom app (``langgraph.json`` ``http.app``): no routes, one
middleware that refuses write requests from foreign web pages (``langgraph_moa.asgi.OriginGuard``).

``langgraph.json``'s ``http.cors`` only tells browsers which pages may *read* answers; a
foreign page's ``text/plain`` POST to ``/runs/wait`` needs no CORS preflight, so without this
the run would still start on the server's keys. The origins allowed are the same list as the
CORS ``allow_origins`` (Studio's, by default): one list to edit. Clients that are not browsers
(the LangGraph SDK, curl) send no ``Origin`` and pass.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from langgraph_moa.asgi import OriginGuard


def cors_origins() -> list[str]:
    """``http.cors.allow_origins`` of the running LangGraph server (none outside one)."""
    try:
        from langgraph_api import config  # type: ignore[import-untyped]
    except ImportError:
        return []
    cors = getattr(config, "CORS_CONFIG", None) or {}
    return list(cors.get("allow_origins") or [])


def _app() -> Starlette:
    """A FastAPI app where FastAPI is installed (Aegra accepts nothing else; it depends on
    FastAPI), else a plain Starlette one (all the LangGraph server needs; an image built from
    ``dependencies: ["."]`` has no FastAPI). No routes of its own, no docs pages."""
    middleware = [Middleware(OriginGuard, allowed_origins=cors_origins())]
    try:
        from fastapi import FastAPI
    except ImportError:
        return Starlette(middleware=middleware)
    quiet: dict[str, Any] = {"openapi_url": None, "docs_url": None, "redoc_url": None}
    return FastAPI(middleware=middleware, **quiet)


app = _app()
