"""Past conversations, read back from the checkpointer the runs wrote to.

Nothing is stored twice: a conversation is a LangGraph thread, and each of its turns is the
stretch of checkpoints between two inputs. The last checkpoint of a turn holds everything its
cards showed (``answers``, ``references``, ``calls``, ``answer``); the checkpoints' timestamps
give its wall time. Threads written by ``moa --thread`` show up too (same store).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from langgraph_moa.web.events import layout_from_calls, summary

TITLE_CHARS = 80


def _text(message: Any) -> str:
    return message.text if isinstance(message, BaseMessage) else str(message)


def _human(messages: list[Any]) -> list[str]:
    return [_text(m) for m in messages if getattr(m, "type", None) == "human"]


async def list_threads(saver: BaseCheckpointSaver[Any], limit: int = 100) -> list[dict[str, Any]]:
    """The most recent threads first: id, title (first question), turns, last update, spec.

    Thread ids come from one grouped query over the SQLite saver's table (listing every
    checkpoint of every thread through the saver API would read all their blobs)."""
    conn = getattr(saver, "conn", None)
    if conn is None:
        return []
    await saver.setup()  # type: ignore[attr-defined]
    query = (
        "SELECT thread_id, MAX(checkpoint_id) AS last FROM checkpoints"
        " WHERE checkpoint_ns = '' GROUP BY thread_id ORDER BY last DESC LIMIT ?"
    )
    async with conn.execute(query, (limit,)) as cursor:
        ids = [row[0] for row in await cursor.fetchall()]
    out = []
    for thread_id in ids:
        found = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
        if found is None:
            continue
        questions = _human(found.checkpoint["channel_values"].get("messages") or [])
        if not questions:
            continue
        title = " ".join(questions[0].split())
        out.append(
            {
                "thread_id": thread_id,
                "title": title[:TITLE_CHARS] + ("…" if len(title) > TITLE_CHARS else ""),
                "turns": len(questions),
                "updated": found.checkpoint["ts"],
                "spec": found.metadata.get("moa_spec"),
            }
        )
    return out


def _seconds(a: StateSnapshot, b: StateSnapshot) -> float | None:
    if not a.created_at or not b.created_at:
        return None
    start, end = datetime.fromisoformat(a.created_at), datetime.fromisoformat(b.created_at)
    return (end - start).total_seconds()


def _turn(first: StateSnapshot, last: StateSnapshot) -> dict[str, Any] | None:
    values = last.values or {}
    questions = _human(values.get("messages") or [])
    if not questions:
        return None
    calls = list(values.get("calls") or [])
    finished = not last.next and bool(values.get("answer"))
    return {
        "question": questions[-1],
        "spec": last.metadata.get("moa_spec") if last.metadata else None,
        "layout": layout_from_calls(calls),
        "answers": dict(values.get("answers") or {}),
        "references": list(values.get("references") or []),
        "calls": calls,
        "answer": values.get("answer") if finished else None,
        "fallback_reason": values.get("fallback_reason") or None,
        "summary": summary(calls, _seconds(first, last)),
        "error": None if finished else "this turn did not finish (failed or interrupted)",
    }


async def thread_turns(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str
) -> list[dict[str, Any]]:
    """Every turn of a thread, oldest first, as the page draws it."""
    config: Any = {"configurable": {"thread_id": thread_id}}
    history = [s async for s in graph.aget_state_history(config)]
    history.reverse()
    segments: list[list[StateSnapshot]] = []
    for snapshot in history:
        if (snapshot.metadata or {}).get("source") == "input" or not segments:
            segments.append([])
        segments[-1].append(snapshot)
    turns = [_turn(seg[0], seg[-1]) for seg in segments]
    return [t for t in turns if t is not None]
