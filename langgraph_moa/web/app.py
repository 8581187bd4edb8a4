"""The UI alone as an app (``moa ui``, tests), and ``moa ui`` itself.

``moa serve`` includes ``ui_router`` in its own app instead; this one exists so the page can
run without the OpenAI-compatible endpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import urllib.request
import webbrowser
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from langchain_core.language_models import BaseChatModel

from langgraph_moa.asgi import READ_TIMEOUT, RequestGuard, allowed_origin_set
from langgraph_moa.graphs.spec import MoASpec, load_preset, load_spec, preset_names
from langgraph_moa.web import LOOPBACK, web_db_path
from langgraph_moa.web.router import ui_router
from langgraph_moa.web.runs import RunRegistry


def default_specs(spec_files: Iterable[str | os.PathLike[str]] = ()) -> dict[str, MoASpec]:
    """Spec files first (named by their ``name``), then every preset, ``local`` first."""
    specs: dict[str, MoASpec] = {}
    for path in spec_files:
        spec = load_spec(path)
        specs[spec.name] = spec
    for name in sorted(preset_names(), key=lambda n: n != "local"):
        specs.setdefault(name, load_preset(name))
    return specs


def create_ui_app(
    specs: Mapping[str, MoASpec],
    *,
    db_path: str | Path,
    chat_models: Mapping[str, BaseChatModel] | None = None,
    allowed_hosts: Sequence[str] | None = None,
    allowed_origins: Sequence[str] = (),
    read_timeout: float = READ_TIMEOUT,
    runs: RunRegistry | None = None,
) -> FastAPI:
    """A FastAPI app serving only the UI (``ui_router``); on shutdown the runs still going are
    cancelled (the router's lifespan), then the HTTP pools close.

    ``allowed_hosts`` refuses requests naming another ``Host`` (``moa ui`` on a loopback
    address allows only loopback names, so a DNS-rebinding page cannot drive it).
    ``RequestGuard`` bounds bodies and refuses cross-site calls (``allowed_origins`` besides
    the page's own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        from langgraph_moa.models.factory import aclose_clients

        await aclose_clients()

    app = FastAPI(title="langgraph-moa UI", lifespan=lifespan)
    app.include_router(ui_router(specs, db_path=db_path, chat_models=chat_models, runs=runs))
    origins = allowed_origin_set(allowed_origins)  # a typo fails here, not at the 1st request
    app.add_middleware(RequestGuard, allowed_origins=origins, read_timeout=read_timeout)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


def _is_ui(url: str) -> bool:
    """Whether a langgraph-moa UI already answers at ``url`` (nothing listening fails at once;
    a busy machine may take seconds to answer)."""
    try:
        with urllib.request.urlopen(url + "ui/api/specs", timeout=5) as response:
            return "specs" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def run_ui(args: argparse.Namespace, db_path: Path | None = None) -> int:
    """``moa ui``: open the page, serving it first unless one already runs at that address.
    Conversations go to ``--db`` or the page's own file (``web_db_path``)."""
    import uvicorn

    db_path = db_path or (Path(args.db) if getattr(args, "db", None) else web_db_path())
    url = f"http://{args.host}:{args.port}/"
    if _is_ui(url):
        print(f"the UI already runs at {url}")
        if not args.no_browser:
            webbrowser.open(url)
        return 0
    loopback = args.host in LOOPBACK
    app = create_ui_app(
        default_specs(args.spec or ()),
        db_path=db_path,
        allowed_hosts=LOOPBACK if loopback else None,
        allowed_origins=args.allow_origin or (),
        read_timeout=args.read_timeout,
    )
    from langgraph_moa.http_protocol import GuardedHTTPProtocol

    GuardedHTTPProtocol.header_timeout = args.read_timeout
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", http=GuardedHTTPProtocol
    )
    server = uvicorn.Server(config)
    if not args.no_browser:

        def open_when_up() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_up, daemon=True).start()
    print(f"langgraph-moa UI at {url} (Ctrl+C stops it); conversations in {db_path}")
    server.run()
    return 0
