"""A run of ``moa serve`` lives only as long as the client that asked for it.

A mixture pays for several upstream calls per request; a client that gave up (a timeout, a
closed tab, Ctrl-C) must not keep them running. Starlette does not cancel a plain handler when
its client disconnects, and a streamed response notices only when it next writes (which a
mixture does not do while its proposers think). So the run is a task of its own, raced against
the ASGI ``http.disconnect`` message: the first to finish wins, and a disconnect cancels the
run, which cancels every in-flight model call (LangGraph cancels its node tasks, the HTTP
client closes their connections, the upstream sees its client leave).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its run finished (the run was cancelled)."""


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (its request body is already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` once each and wait for them to unwind.

    Once: a graph run cancelled a second time while it unwinds (by ``await task`` in a caller
    that is itself being cancelled, e.g. by Starlette's own disconnect watch) stops cleaning
    up halfway and leaves its model calls running. ``asyncio.wait`` never cancels what it
    waits for, so the caller's cancellation stays the caller's."""
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait(tasks)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled (``ClientGone``) the moment the client disconnects."""
    run = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler cancelled (server shutdown): the run goes too
        await _cancel(run, gone)
        raise
    if run.done():
        await _cancel(gone)
        return run.result()
    await _cancel(run)
    raise ClientGone


async def stream_unless_disconnected(
    request: Request, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``events`` (a streamed run), ended the moment the client disconnects, even while the
    run is between two writes (proposers thinking)."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put((False, event))
        except Exception as exc:  # re-raised to the response
            await queue.put((True, exc))
            return
        await queue.put((True, None))

    run = asyncio.ensure_future(pump())
    gone = asyncio.ensure_future(_disconnected(request))
    get: asyncio.Future[tuple[bool, Any]] | None = None
    try:
        while True:
            get = asyncio.ensure_future(queue.get())
            await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                return  # the client left: the finally below cancels the run
            done, item = get.result()
            if done:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        await _cancel(run, gone, *([get] if get is not None else []))
