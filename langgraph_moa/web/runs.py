"""Runs that belong to the server, not to a browser tab.

Starting a turn creates a ``Run``: an asyncio task that drives the graph's UI events
(``web/events.py``) into a buffer, whoever is watching. Any number of subscribers attach,
leave and re-attach; each gets the events after the last sequence number it saw (SSE
``Last-Event-ID``), so a reload or a dropped connection replays what it missed and goes on
live. Only ``Run.cancel`` (the page's Stop) ends a run early: the task is cancelled, which
cancels LangGraph's node tasks and with them their in-flight HTTP requests (the upstream sees
the disconnect at once); what had finished is in the checkpoint already.

Memory is bounded: at most ``max_running`` runs at once, finished runs kept ``grace_s``
seconds (at most ``max_kept`` of them, and the oldest go first while all buffers together
exceed ``max_total_bytes``), and a run's buffer at most ``max_event_bytes`` (past it
``token`` previews are dropped). A finished run drops its token previews: the ``answer``,
``final`` and ``done`` events carry every text whole, and sequence numbers stay as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph_moa.redact import scrub
from langgraph_moa.web.events import Event, summary

log = logging.getLogger(__name__)

TERMINAL = frozenset({"done", "error", "review", "cancelled"})
"""Events that end a run's stream."""


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


@dataclass
class Run:
    """One turn running (or just run) on the server, and its buffered events."""

    id: str
    thread_id: str
    turn: int
    owner: str | None
    max_event_bytes: int
    started: float = field(default_factory=time.monotonic)
    events: list[tuple[str, str] | None] = field(default_factory=list)
    """``(event name, JSON data)``; an event's sequence number is its index (None: a token
    preview dropped once the run finished)."""
    status: str = "running"
    """``running``, then the terminal event's name."""
    finished: float | None = None
    tokens_dropped: int = 0
    task: asyncio.Task[None] | None = None
    _size: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _answers: dict[str, str] = field(default_factory=dict)
    _references: list[str] = field(default_factory=list)
    _calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.finished is None

    def emit(self, event: Event) -> None:
        """Buffer ``event`` and wake every subscriber."""
        name, data = event
        if name == "answer":
            self._answers[str(data.get("node"))] = str(data.get("text"))
        elif name == "call":
            self._calls.append(data)
        elif name == "references":
            self._references = list(data.get("references") or [])
        text = encode({**data, "run_id": self.id})
        if name == "token" and self._size + len(text) > self.max_event_bytes:
            self.tokens_dropped += 1
            return
        self._size += len(text)
        self.events.append((name, text))
        if name in TERMINAL:
            self.status = name
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    @property
    def size(self) -> int:
        """Bytes of JSON buffered."""
        return self._size

    def compact(self) -> None:
        """Drop the token previews of a finished run (its whole texts are in other events)."""
        for i, event in enumerate(self.events):
            if event is not None and event[0] == "token":
                self._size -= len(event[1])
                self.events[i] = None

    def partial(self) -> dict[str, Any]:
        """What the run had computed, from its events (for ``cancelled``)."""
        return {
            "answers": dict(self._answers),
            "references": list(self._references),
            "calls": list(self._calls),
        }

    def cancel(self) -> bool:
        """Stop the run now (the page's Stop). False if it had already ended."""
        if self.task is None or self.task.done() or not self.running:
            return False
        self.task.cancel()
        return True

    async def follow(self, after: int = -1) -> AsyncIterator[tuple[int, str, str]]:
        """``(seq, name, json)`` for every event after ``after``, live until the run ends."""
        seq = max(after + 1, 0)
        while True:
            wake = self._wake
            while seq < len(self.events):
                event = self.events[seq]
                if event is not None:
                    yield seq, event[0], event[1]
                seq += 1
            if not self.running:
                return
            await wake.wait()

    def info(self) -> dict[str, Any]:
        return {"run_id": self.id, "turn": self.turn, "status": self.status}


class TooBusy(Exception):
    """Too many runs at once (the caller answers 429)."""


@dataclass
class RunRegistry:
    """Every run of one process: started, followed, cancelled, forgotten after a while."""

    max_running: int = 16
    max_kept: int = 200
    grace_s: float = 600.0
    max_event_bytes: int = 16 << 20
    max_total_bytes: int = 256 << 20
    runs: dict[str, Run] = field(default_factory=dict)

    def start(
        self,
        *,
        thread_id: str,
        turn: int,
        owner: str | None,
        events: AsyncIterator[Event],
        on_end: Callable[[Run], Awaitable[None]] | None = None,
    ) -> Run:
        """A new run draining ``events`` in its own task (``TooBusy`` if too many run)."""
        self.prune()
        if sum(r.running for r in self.runs.values()) >= self.max_running:
            raise TooBusy(f"{self.max_running} runs are in progress; retry when one ends")
        run = Run(
            id=f"run-{uuid.uuid4().hex[:16]}",
            thread_id=thread_id,
            turn=turn,
            owner=owner,
            max_event_bytes=self.max_event_bytes,
        )
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._drive(run, events, on_end), name=run.id)
        return run

    async def _drive(
        self,
        run: Run,
        events: AsyncIterator[Event],
        on_end: Callable[[Run], Awaitable[None]] | None,
    ) -> None:
        try:
            async for event in events:
                run.emit(event)
        except asyncio.CancelledError:
            calls = run.partial()["calls"]
            run.emit(
                (
                    "cancelled",
                    {
                        "message": "stopped: the finished answers are kept",
                        "partial": run.partial(),
                        "summary": summary(calls, time.monotonic() - run.started),
                    },
                )
            )
        except Exception as exc:  # the events source never raises; a bug must not hang tabs
            message = scrub(f"the server could not run this turn: {type(exc).__name__}: {exc}")
            log.error("%s (run %s)", message, run.id)
            run.emit(("error", {"message": message, "partial": run.partial(), "summary": None}))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()
            if run.status not in TERMINAL:  # the source ended without saying how
                message = "the run ended without an answer"
                run.emit(("error", {"message": message, "partial": run.partial(), "summary": None}))
            run.finished = time.monotonic()
            run._wake.set()
            run.compact()
            if on_end is not None:
                try:
                    await on_end(run)
                except Exception as exc:  # recording the outcome failed: the run still ended
                    log.error("run %s: could not record its end: %s", run.id, scrub(str(exc)))

    def get(self, run_id: str) -> Run | None:
        self.prune()
        return self.runs.get(run_id)

    def running_on(self, thread_id: str) -> Run | None:
        """The run in progress on ``thread_id``, if any (one at a time per thread)."""
        return next((r for r in self.runs.values() if r.running and r.thread_id == thread_id), None)

    def prune(self) -> None:
        """Forget finished runs past their grace period, the oldest beyond ``max_kept``, and
        the oldest while every buffer together is over ``max_total_bytes``."""
        now = time.monotonic()
        finished = sorted(
            (r for r in self.runs.values() if r.finished is not None), key=lambda r: r.finished or 0
        )
        excess = len(finished) - self.max_kept
        total = sum(r.size for r in self.runs.values())
        for i, run in enumerate(finished):
            if (
                i < excess
                or now - (run.finished or now) > self.grace_s
                or total > self.max_total_bytes
            ):
                total -= run.size
                del self.runs[run.id]

    async def aclose(self, timeout: float = 10.0) -> None:
        """Cancel every running run and wait for them (the app is shutting down)."""
        tasks = [r.task for r in self.runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
