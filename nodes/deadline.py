"""The straggler deadline: once a layer's quorum has answered, wait a bounded time for the rest.

Proposers of one layer run as parallel tasks of one LangGraph super-step, in one event loop.
A ``LayerClock`` shared by those tasks (found by the step's checkpoint id, so it is per run
and per layer) counts finished proposers; when the quorum is reached it starts a timer, and
when the timer fires every proposer still waiting on its model is cancelled and recorded as
``cut``. Nothing in graph state: a clock is a timer, not data.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class StragglerCut(Exception):
    """The layer went on without this proposer."""


class LayerClock:
    def __init__(
        self, key: str, size: int, quorum: int, deadline: float | None, factor: float | None
    ):
        self.key = key
        self.size = size
        self.quorum = quorum
        self.deadline = deadline
        self.factor = factor
        self.latencies: list[float] = []
        self.reported = 0
        self.cut = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    def wait_after_quorum(self) -> float:
        waits = []
        if self.deadline is not None:
            waits.append(self.deadline)
        if self.factor is not None:
            waits.append(self.factor * statistics.median(self.latencies))
        return min(waits)

    def report(self, ok: bool, latency: float = 0.0) -> None:
        self.reported += 1
        if ok:
            self.latencies.append(latency)
        if self.reported >= self.size:  # the whole layer is in: forget the clock
            if self._timer:
                self._timer.cancel()
            _clocks.pop(self.key, None)
            return
        if len(self.latencies) >= self.quorum and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.wait_after_quorum(), self.cut.set)

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless the layer's deadline passes first (then ``StragglerCut``)."""
        if self.cut.is_set():
            raise StragglerCut
        task = asyncio.ensure_future(work)
        cutter = asyncio.ensure_future(self.cut.wait())
        try:
            await asyncio.wait({task, cutter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cutter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        raise StragglerCut


MAX_CLOCKS = 4096
"""Clocks kept at most. A clock leaves when its whole layer has reported; one whose run
ended mid-layer (an error, a cancelled caller) is forgotten oldest-first past this bound, so a
long-running server never grows. Tasks still holding an evicted clock keep using it."""

_clocks: OrderedDict[str, LayerClock] = OrderedDict()


def layer_clock(
    key: str, size: int, quorum: int, deadline: float | None, factor: float | None
) -> LayerClock | None:
    """The clock of one layer in one run, or None when the spec sets no deadline."""
    if deadline is None and factor is None:
        return None
    clock = _clocks.get(key)
    if clock is None:
        clock = _clocks[key] = LayerClock(key, size, quorum, deadline, factor)
        while len(_clocks) > MAX_CLOCKS:
            _clocks.popitem(last=False)
    return clock
