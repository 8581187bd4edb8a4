"""The web UI: a page that shows the mixture at work, and the event stream behind it.

``ui_router`` (for any FastAPI app, e.g. ``moa serve``), ``create_ui_app`` (the UI alone,
``moa ui``). Needs FastAPI and uvicorn (``pip install 'langgraph-moa[web]'``).
"""

from __future__ import annotations

from langgraph_moa.web.app import create_ui_app, default_specs
from langgraph_moa.web.router import ui_router

__all__ = ["create_ui_app", "default_specs", "ui_router"]
