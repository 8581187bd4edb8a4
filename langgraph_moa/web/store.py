"""What the page keeps beside LangGraph's checkpoints: who owns a thread, its title, and how
each of its turns ended.

Two small tables in the checkpointer's own SQLite file (one file, one connection):

- ``moa_web_threads(thread_id, owner, title, created)``: ``owner`` is a hash of the bearer
  token that created the thread (``None`` without a token: the single-user page); ``title``
  is set when the user renames it (otherwise the first question is the title).
- ``moa_web_turns(thread_id, turn_key, status, error, calls)``: how a turn ended when its run
  did not finish (``failed`` with the run's own error message, or ``cancelled``), and the
  records of calls that failed without writing one (a failed aggregator: no checkpoint has
  it). ``turn_key`` is the id of the turn's input checkpoint, so a forked thread's turns
  never mix.

Answers, references and calls are not stored twice: they are in the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

SCHEMA = """
CREATE TABLE IF NOT EXISTS moa_web_threads (
    thread_id TEXT PRIMARY KEY, owner TEXT, title TEXT, created REAL
);
CREATE TABLE IF NOT EXISTS moa_web_turns (
    thread_id TEXT, turn_key TEXT, status TEXT, error TEXT, calls TEXT,
    PRIMARY KEY (thread_id, turn_key)
);
"""


def owner_hash(token: str | None) -> str | None:
    """The namespace of a bearer token (its SHA-256, never the token itself)."""
    if not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:32]


async def setup(saver: AsyncSqliteSaver) -> None:
    """The checkpointer's tables, then ours (once per saver)."""
    if getattr(saver, "_moa_web_setup", False):
        return
    await saver.setup()
    async with saver.lock:
        await saver.conn.executescript(SCHEMA)
        await saver.conn.commit()
    saver._moa_web_setup = True  # type: ignore[attr-defined]


async def thread_row(saver: AsyncSqliteSaver, thread_id: str) -> dict[str, Any] | None:
    """The thread's row, or a row with no owner if only checkpoints know it, or None."""
    await setup(saver)
    async with saver.conn.execute(
        "SELECT owner, title FROM moa_web_threads WHERE thread_id = ?", (thread_id,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is not None:
        return {"owner": row[0], "title": row[1]}
    async with saver.conn.execute(
        "SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread_id,)
    ) as cursor:
        if await cursor.fetchone() is not None:
            return {"owner": None, "title": None}
    return None


async def claim(saver: AsyncSqliteSaver, thread_id: str, owner: str | None) -> bool:
    """Record ``owner`` for a new thread; False if the thread belongs to someone else."""
    row = await thread_row(saver, thread_id)
    if row is not None:
        return bool(row["owner"] == owner)
    async with saver.lock:
        await saver.conn.execute(
            "INSERT OR IGNORE INTO moa_web_threads (thread_id, owner, title, created)"
            " VALUES (?, ?, NULL, ?)",
            (thread_id, owner, time.time()),
        )
        await saver.conn.commit()
    row = await thread_row(saver, thread_id)
    return row is not None and row["owner"] == owner


async def owned_titles(saver: AsyncSqliteSaver, owner: str | None) -> dict[str, str | None]:
    """Thread id -> title of every thread with a row owned by ``owner``."""
    await setup(saver)
    async with saver.conn.execute(
        "SELECT thread_id, title FROM moa_web_threads WHERE owner IS ?", (owner,)
    ) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}


async def rename(saver: AsyncSqliteSaver, thread_id: str, title: str, owner: str | None) -> None:
    await setup(saver)
    async with saver.lock:
        await saver.conn.execute(
            "INSERT INTO moa_web_threads (thread_id, owner, title, created) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(thread_id) DO UPDATE SET title = excluded.title",
            (thread_id, owner, title, time.time()),
        )
        await saver.conn.commit()


async def delete(saver: AsyncSqliteSaver, thread_id: str) -> None:
    """The thread's checkpoints and rows, gone."""
    await setup(saver)
    await saver.adelete_thread(thread_id)
    async with saver.lock:
        for table in ("moa_web_threads", "moa_web_turns"):
            await saver.conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
        await saver.conn.commit()


async def record_turn(
    saver: AsyncSqliteSaver,
    thread_id: str,
    turn_key: str,
    status: str,
    error: str | None,
    calls: list[dict[str, Any]] | None = None,
) -> None:
    """How a turn's run ended (``done`` clears an earlier failure of the same turn)."""
    await setup(saver)
    async with saver.lock:
        await saver.conn.execute(
            "INSERT OR REPLACE INTO moa_web_turns (thread_id, turn_key, status, error, calls)"
            " VALUES (?, ?, ?, ?, ?)",
            (thread_id, turn_key, status, error, json.dumps(calls or [])),
        )
        await saver.conn.commit()


async def turn_outcomes(saver: AsyncSqliteSaver, thread_id: str) -> dict[str, dict[str, Any]]:
    """``turn_key`` -> ``{"status", "error", "calls"}`` of the thread's recorded turns."""
    await setup(saver)
    async with saver.conn.execute(
        "SELECT turn_key, status, error, calls FROM moa_web_turns WHERE thread_id = ?",
        (thread_id,),
    ) as cursor:
        return {
            r[0]: {"status": r[1], "error": r[2], "calls": json.loads(r[3] or "[]")}
            for r in await cursor.fetchall()
        }
