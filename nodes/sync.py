"""Let ``graph.invoke`` / ``graph.stream`` run the async nodes.

Every node is written once, async. For the sync API each node also gets a sync twin that
runs the coroutine on one background event loop per process: the proposers of a layer then
still overlap, share one HTTP pool and one straggler clock, and the caller's context
(callbacks, tracing, stream writer) travels with the coroutine. LangGraph's node timeouts
apply to the async API only; sync runs are bounded by the client timeout.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from langgraph._internal._runnable import RunnableCallable

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="moa-sync", daemon=True).start()
    return _loop


def with_sync(afunc: Callable[..., Coroutine[Any, Any, Any]], name: str) -> RunnableCallable:
    """The async node ``afunc`` as a LangGraph runnable with a sync twin (same signature,
    so LangGraph injects ``runtime`` / ``NodeError`` into both)."""

    @functools.wraps(afunc)
    def func(*args: Any, **kwargs: Any) -> Any:
        # run_coroutine_threadsafe creates the task in a copy of this thread's context.
        return asyncio.run_coroutine_threadsafe(afunc(*args, **kwargs), _background_loop()).result()

    return RunnableCallable(func, afunc, name=name, trace=False)
