"""``moa serve``: the mixture as an OpenAI-compatible endpoint (and the web UI at ``/``).

    moa serve --preset moa-lite --spec my-moa.yaml --port 8000 --workers 2

``create_app`` builds the ASGI app; ``main`` runs it on uvicorn. With ``--workers N`` uvicorn
starts N processes, each building the app from the same configuration (passed in the
environment, so the workers need no shared state: they are stateless replicas).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from langgraph_moa.asgi import READ_TIMEOUT
from langgraph_moa.web import LOOPBACK, load_web_stack

if TYPE_CHECKING:
    from langgraph_moa.serve.app import Limits, create_app

__all__ = ["Limits", "add_parser", "app_from_env", "create_app", "main"]

CONFIG_ENV = "MOA_SERVE_CONFIG"
MAX_CONCURRENT_RUNS = 64
"""Runs at once per worker unless ``--max-concurrent`` says otherwise (``Limits``' default)."""


def __getattr__(name: str) -> Any:
    """``create_app`` and ``Limits`` load FastAPI: only when asked for, so ``moa`` itself (whose
    parser lists ``serve``) runs without the ``serve`` extra."""
    if name not in ("Limits", "create_app"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_app(), name)


def _app() -> Any:
    return load_web_stack("langgraph_moa.serve.app", "moa serve", "serve")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve specs as an OpenAI-compatible API (+ the web UI)")
    p.add_argument("--preset", action="append", help="serve this preset (repeatable)")
    p.add_argument("--spec", action="append", help="serve this spec file (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (stateless)")
    p.add_argument("--api-key-env", help="NAME of the variable holding the bearer token")
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=MAX_CONCURRENT_RUNS,
        help="runs at once per worker; more get 429",
    )
    p.add_argument("--db", help="SQLite file of the web UI's conversations")
    p.add_argument("--no-ui", action="store_true", help="do not serve the web page at /")
    add_transport_args(p)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: seconds from 0 (excluded) to 3600")
    return value


def add_transport_args(p: Any) -> None:
    """Options of the transport guard, shared by ``moa serve`` and ``moa ui``."""
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="let web pages of this origin call the API (repeatable; default: none but the"
        " server's own)",
    )
    p.add_argument(
        "--read-timeout",
        type=_seconds,
        default=READ_TIMEOUT,
        metavar="SECONDS",
        help="time a client has to send a request's headers, then its body (default %(default)g)",
    )


def _specs(config: dict[str, Any]) -> dict[str, Any]:
    from langgraph_moa.graphs.spec import load_preset, load_spec, preset_names

    specs = {}
    for path in config.get("spec") or []:
        spec = load_spec(path)
        specs[spec.name] = spec
    presets = config.get("preset") or ([] if specs else preset_names())
    for name in presets:
        specs.setdefault(name, load_preset(name))
    return specs


def app_from_env() -> Any:
    """The app of one uvicorn worker, from the configuration ``main`` put in the environment."""
    config = json.loads(os.environ[CONFIG_ENV])
    app = _app()
    read_timeout = config.get("read_timeout") or READ_TIMEOUT
    from langgraph_moa.http_protocol import GuardedHTTPProtocol

    GuardedHTTPProtocol.header_timeout = read_timeout  # this worker's connections
    return app.create_app(
        _specs(config),
        api_key_env=config.get("api_key_env"),
        limits=app.Limits(
            max_concurrent_runs=config.get("max_concurrent") or MAX_CONCURRENT_RUNS,
            read_timeout=read_timeout,
        ),
        allowed_origins=config.get("allow_origin") or (),
        db_path=config.get("db"),
        include_ui=not config.get("no_ui"),
        allowed_hosts=config.get("allowed_hosts"),
    )


def main(args: argparse.Namespace) -> int:
    _app()  # FastAPI and uvicorn are there, or one clear line says how to get them
    import uvicorn

    config = {
        "spec": args.spec,
        "preset": args.preset,
        "api_key_env": args.api_key_env,
        "max_concurrent": args.max_concurrent,
        "db": args.db,
        "no_ui": args.no_ui,
        "allow_origin": args.allow_origin,
        "read_timeout": args.read_timeout,
        # On a loopback address only loopback Host names (no DNS rebinding); elsewhere any.
        "allowed_hosts": LOOPBACK if args.host in LOOPBACK else None,
    }
    os.environ[CONFIG_ENV] = json.dumps(config)
    app_from_env()  # fail here, once, with a clear error (bad spec, unset token variable)
    from langgraph_moa.http_protocol import GuardedHTTPProtocol

    uvicorn.run(
        "langgraph_moa.serve:app_from_env",
        factory=True,
        http=GuardedHTTPProtocol,  # slow-loris headers time out
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )
    return 0
