"""Past conversations, read back from the checkpointer the runs wrote to.

Nothing is stored twice: a conversation is a LangGraph thread, and each of its turns is the
stretch of checkpoints between two inputs on the thread's current branch (retrying a
synthesis or editing a question forks the thread: the branch is followed from the newest
checkpoint through its parents, so abandoned branches never mix in). The last checkpoint of
a turn holds what its cards showed (``answers``, ``references``, ``calls``, ``answer``) plus
the pending writes of the tasks that had finished when the run stopped or failed (a proposer
that answered before Stop is kept: LangGraph saved its writes); the checkpoints' timestamps
give its wall time. How an unfinished turn ended (its error message, or Stop) comes from
``web/store.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite, StateSnapshot

from langgraph_moa.graphs.names import AGGREGATOR, REVIEW, WINDOW
from langgraph_moa.web.events import layout_from_calls, ranking_view, reference_sources, summary

TITLE_CHARS = 80
SEARCH_SCAN = 500
"""Most recent threads a search looks through."""


def _text(message: Any) -> str:
    return message.text if isinstance(message, BaseMessage) else str(message)


def _human(messages: list[Any]) -> list[str]:
    return [_text(m) for m in messages if getattr(m, "type", None) == "human"]


def short_title(text: str) -> str:
    title = " ".join(text.split())
    return title[:TITLE_CHARS] + ("…" if len(title) > TITLE_CHARS else "")


async def list_threads(
    saver: Any,
    owner: str | None,
    titles: Mapping[str, str | None],
    *,
    query: str = "",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """``owner``'s threads, most recent first: id, title, turns, last update, spec.

    ``titles``: the owner's threads that have a row (``store.owned_titles``; a renamed one
    has its title there); without a token (``owner`` None) threads with no row are listed
    too (e.g. written by ``moa --thread`` into this file). ``query`` keeps the threads whose
    title or any question contains it (case-insensitive).

    Thread ids come from one grouped query over the SQLite saver's table (listing every
    checkpoint of every thread through the saver API would read all their blobs)."""
    conn = getattr(saver, "conn", None)
    if conn is None:
        return []
    sql = (
        "SELECT c.thread_id, MAX(c.checkpoint_id) AS last FROM checkpoints c"
        " LEFT JOIN moa_web_threads t ON t.thread_id = c.thread_id"
        " WHERE c.checkpoint_ns = '' AND t.owner IS ?"
        " GROUP BY c.thread_id ORDER BY last DESC LIMIT ?"
    )
    async with conn.execute(sql, (owner, SEARCH_SCAN if query else limit)) as cursor:
        ids = [row[0] for row in await cursor.fetchall()]
    needle = query.casefold()
    out = []
    for thread_id in ids:
        found = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
        if found is None:
            continue
        questions = _human(found.checkpoint["channel_values"].get("messages") or [])
        if not questions:
            continue
        title = titles.get(thread_id) or short_title(questions[0])
        if needle and not any(needle in t.casefold() for t in (title, *questions)):
            continue
        out.append(
            {
                "thread_id": thread_id,
                "title": title,
                "turns": len(questions),
                "updated": found.checkpoint["ts"],
                "spec": found.metadata.get("moa_spec"),
            }
        )
        if len(out) >= limit:
            break
    return out


def _seconds(a: StateSnapshot, b: StateSnapshot) -> float | None:
    if not a.created_at or not b.created_at:
        return None
    start, end = datetime.fromisoformat(a.created_at), datetime.fromisoformat(b.created_at)
    return (end - start).total_seconds()


def checkpoint_id(snapshot: StateSnapshot) -> str:
    return str(snapshot.config["configurable"]["checkpoint_id"])


def _with_finished_tasks(snapshot: StateSnapshot) -> dict[str, Any]:
    """The snapshot's values plus the writes of its tasks that finished (a run stopped or
    failed mid-step: LangGraph keeps those writes as pending writes of the checkpoint), by
    the state's reducers: answers merge, calls and rankings add up, ``Overwrite`` resets."""
    values = dict(snapshot.values or {})
    for task in snapshot.tasks:
        result = task.result
        if not isinstance(result, Mapping):
            continue
        for key, value in result.items():
            if isinstance(value, Overwrite):
                values[key] = value.value
            elif key == "answers" and isinstance(value, Mapping):
                values[key] = {**(values.get(key) or {}), **value}
            elif key in ("calls", "rankings") and isinstance(value, list):
                values[key] = [*(values.get(key) or []), *value]
            elif key in ("references", "answer", "fallback_reason"):
                values[key] = value
    return values


def _task_errors(snapshot: StateSnapshot) -> list[str]:
    return [f"{t.name}: {t.error}" for t in snapshot.tasks if t.error is not None]


def _turn(segment: list[StateSnapshot], outcome: Mapping[str, Any] | None) -> dict[str, Any] | None:
    first, last = segment[0], segment[-1]
    values = _with_finished_tasks(last)
    questions = _human(values.get("messages") or [])
    if not questions:
        return None
    calls = list(values.get("calls") or [])
    interrupts = [i for t in last.tasks for i in t.interrupts]
    if not last.next and values.get("answer"):
        status, error = "done", None
    elif interrupts:
        status, error = "paused", None
    elif outcome and outcome["status"] in ("failed", "cancelled"):
        status, error = outcome["status"], outcome["error"]
        recorded = {c["node"] for c in calls}
        calls += [c for c in outcome.get("calls") or [] if c.get("node") not in recorded]
    else:
        errors = _task_errors(last)
        cancelled = errors and all("CancelledError" in e for e in errors)
        status = "cancelled" if cancelled else "failed"
        if cancelled:
            error = "stopped before it finished"
        else:
            error = "; ".join(e for e in errors if "CancelledError" not in e) or (
                "this turn did not finish"
            )
    rankings = list(values.get("rankings") or [])
    return {
        "key": checkpoint_id(first),
        "question": questions[-1],
        "spec": last.metadata.get("moa_spec") if last.metadata else None,
        "layout": layout_from_calls(calls),
        "answers": dict(values.get("answers") or {}),
        "references": list(values.get("references") or []),
        "calls": calls,
        "answer": values.get("answer") if status == "done" else None,
        "fallback_reason": values.get("fallback_reason") or None,
        "ranking": [ranking_view(r) for r in rankings],
        "summary": summary(calls, _seconds(first, last)),
        "status": status,
        "error": error,
        "pause": interrupts[0].value if interrupts else None,
    }


GraphFor = Callable[[str | None], CompiledStateGraph[Any, Any, Any, Any]]
"""The compiled graph of a spec name (any offered spec for None or a spec no longer offered):
a checkpoint's next tasks are only known to the graph that wrote it."""


async def branch(graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str) -> list[Any]:
    """The checkpoints of the thread's current branch, oldest first."""
    config: Any = {"configurable": {"thread_id": thread_id}}
    every = {checkpoint_id(s): s async for s in graph.aget_state_history(config)}
    if not every:
        return []
    newest = max(every)  # checkpoint ids grow with time (uuid6)
    chain = []
    current: StateSnapshot | None = every[newest]
    while current is not None:
        chain.append(current)
        parent = current.parent_config
        current = every.get(parent["configurable"]["checkpoint_id"]) if parent else None
    chain.reverse()
    return chain


def _spec_of(snapshot: StateSnapshot) -> str | None:
    spec = (snapshot.metadata or {}).get("moa_spec")
    return spec if isinstance(spec, str) else None


async def turn_segments(graph_for: GraphFor, thread_id: str) -> list[list[StateSnapshot]]:
    """The thread's turns as checkpoint segments, each read by the graph of its own spec."""
    chain = await branch(graph_for(None), thread_id)
    if not chain:
        return []
    newest = graph_for(_spec_of(chain[-1]))
    if newest is not graph_for(None):
        chain = await branch(newest, thread_id)
    out = []
    for segment in segments(chain):
        graph = graph_for(_spec_of(segment[-1]))
        if graph is not newest:
            segment = [await graph.aget_state(s.config) for s in segment]
        out.append(segment)
    return out


def segments(chain: list[StateSnapshot]) -> list[list[StateSnapshot]]:
    """The chain cut into turns: each starts at an input checkpoint. An input checkpoint
    followed at once by another is where a turn was re-asked (forked): only the new one
    counts."""
    out: list[list[StateSnapshot]] = []
    for snapshot in chain:
        is_input = (snapshot.metadata or {}).get("source") == "input"
        if is_input and out and len(out[-1]) == 1 and _is_input(out[-1][0]):
            out[-1] = [snapshot]
        elif is_input or not out:
            out.append([snapshot])
        else:
            out[-1].append(snapshot)
    return out


def _is_input(snapshot: StateSnapshot) -> bool:
    return (snapshot.metadata or {}).get("source") == "input"


async def thread_turns(
    graph_for: GraphFor,
    thread_id: str,
    outcomes: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every turn of a thread's current branch, oldest first, as the page draws it.

    ``outcomes``: ``store.turn_outcomes`` (how unfinished turns ended)."""
    outcomes = outcomes or {}
    turns = []
    for segment in await turn_segments(graph_for, thread_id):
        turn = _turn(segment, outcomes.get(checkpoint_id(segment[0])))
        if turn is not None:
            turns.append(turn)
    for n, turn in enumerate(turns, 1):
        turn["turn"] = n
    return turns


def label_references(turn: dict[str, Any]) -> None:
    """Add ``sources``: who wrote each of the turn's references (its last layer's answers,
    or the ranking's kept ones), by its ``layout`` (set it first)."""
    layers = turn["layout"]["layers"]
    done = [
        k for k, seats in enumerate(layers, 1) if any(s["node"] in turn["answers"] for s in seats)
    ]
    if not done:
        turn["sources"] = [None] * len(turn["references"])
        return
    k = done[-1]
    kept = next((r["kept"] for r in turn["ranking"] if r["layer"] == k), None)
    turn["sources"] = reference_sources(
        [s["node"] for s in layers[k - 1]], turn["references"], turn["answers"], turn["calls"], kept
    )


async def fork_point(
    graph_for: GraphFor, thread_id: str, turn: int, what: str
) -> tuple[Any, str, str | None] | None:
    """Where to fork the thread to redo turn ``turn`` (1-based): for ``synthesis`` the
    checkpoint before its aggregator (its references stored), for ``turn`` its input
    checkpoint. ``(config, question, spec name)`` or None if the turn has no such point."""
    turns = [s for s in await turn_segments(graph_for, thread_id) if _human_of(s[-1])]
    if not 1 <= turn <= len(turns):
        return None
    segment = turns[turn - 1]
    question, spec = _human_of(segment[-1])[-1], _spec_of(segment[-1])
    if what == "turn":
        return segment[0].config, question, spec
    for wanted in ((AGGREGATOR, WINDOW), (REVIEW,)):
        for snapshot in segment:
            if any(node in wanted for node in snapshot.next):
                return snapshot.config, question, spec
    return None


def _human_of(snapshot: StateSnapshot) -> list[str]:
    return _human((snapshot.values or {}).get("messages") or [])
