"""The web UI: a page that shows the mixture at work, and the event stream behind it.

``ui_router`` (for any FastAPI app, e.g. ``moa serve``), ``create_ui_app`` (the UI alone),
``run_ui`` (``moa ui``). Needs FastAPI and uvicorn (``pip install 'langgraph-moa[web]'``);
names are imported lazily so a missing one is a clear error, not a traceback at import.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph_moa.web.app import create_ui_app, default_specs, run_ui
    from langgraph_moa.web.router import ui_router

__all__ = ["create_ui_app", "default_specs", "run_ui", "ui_router"]

LOOPBACK = ["127.0.0.1", "localhost", "::1", "[::1]"]
"""Host names a server bound to a loopback address answers (no DNS rebinding)."""


def web_db_path() -> Path:
    """The page's own conversations file (not ``moa --thread``'s ``threads.sqlite``: the
    shell's threads stay out of the page, and the page's out of the shell)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "langgraph-moa" / "web.sqlite"


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = "router" if name == "ui_router" else "app"
    return getattr(load_web_stack(f"langgraph_moa.web.{module}", "the web UI", "web"), name)


def load_web_stack(module: str, what: str, extra: str) -> ModuleType:
    """``module``, which needs FastAPI and uvicorn; if they are missing, a ``MoAError`` saying
    which extra installs them (one line for the CLI, not a traceback)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name in ("fastapi", "uvicorn", "starlette"):
            from langgraph_moa.errors import MoAError

            raise MoAError(
                f'{what} needs FastAPI and uvicorn: pip install "langgraph-moa[{extra}]"'
            ) from None
        raise
