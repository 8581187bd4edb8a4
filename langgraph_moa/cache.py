"""A model-answer cache that survives between runs: LangGraph's ``SqliteCache`` in the user's
cache directory (``$XDG_CACHE_HOME/langgraph-moa/`` or ``~/.cache/langgraph-moa/``).

Every face that runs a spec with ``cache: true`` (the CLI, and ``moa serve`` / ``moa eval``)
compiles its graph with ``persistent_cache()``; the spec's ``CachePolicy`` on each model node
decides what is reused: the same model with the same settings, the same exact prompt and the
same run overrides (``Context.temperature`` / ``max_tokens``). Failures and cut stragglers
raise, so they are never stored.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from langgraph.cache.sqlite import SqliteCache

from langgraph_moa.graphs.spec import MoASpec

CACHE_FILE = "cache.sqlite"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/langgraph-moa`` (default ``~/.cache/langgraph-moa``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "langgraph-moa"


def cache_path() -> Path:
    """The SQLite file of the persistent cache."""
    return cache_dir() / CACHE_FILE


def persistent_cache(path: str | os.PathLike[str] | None = None) -> SqliteCache[Any]:
    """The persistent cache (created on first use); pass it as ``compile(cache=...)``."""
    file = Path(path) if path is not None else cache_path()
    file.parent.mkdir(parents=True, exist_ok=True)
    return SqliteCache(path=str(file))


def cache_entries(path: str | os.PathLike[str] | None = None) -> int:
    """How many answers the cache holds (0 if it does not exist yet)."""
    file = Path(path) if path is not None else cache_path()
    if not file.exists():
        return 0
    with sqlite3.connect(file) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0])
        except sqlite3.OperationalError:  # not created by SqliteCache yet
            return 0


def clear_cache(path: str | os.PathLike[str] | None = None) -> int:
    """Delete every cached answer; returns how many there were."""
    file = Path(path) if path is not None else cache_path()
    count = cache_entries(file)
    if file.exists():
        persistent_cache(file).clear()
    return count


def graph_cache(spec: MoASpec) -> SqliteCache[Any] | None:
    """What a face passes as ``compile(cache=...)`` for ``spec``: the persistent cache when
    the spec says ``cache: true``, else None (the CLI, ``moa eval`` and the web UI use this)."""
    return persistent_cache() if spec.cache else None
