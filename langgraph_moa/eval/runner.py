"""Run eval items with bounded concurrency, a progress bar with ETA (tqdm), and a write to
the result file as each item completes (not at the end)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

from langgraph_moa.eval.store import ResultStore

T = TypeVar("T")


async def run_items(
    items: Sequence[T],
    item_id: Callable[[T], str],
    work: Callable[[T], Awaitable[dict[str, Any]]],
    store: ResultStore,
    *,
    concurrency: int = 4,
    desc: str = "eval",
    progress: bool = True,
) -> int:
    """Run ``work`` on every item not done in ``store``; returns how many ran now."""
    todo = [item for item in items if not store.done(item_id(item))]
    gate = asyncio.Semaphore(max(1, concurrency))
    bar = tqdm(
        total=len(items),
        initial=len(items) - len(todo),
        desc=desc,
        unit="item",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )

    async def one(item: T) -> None:
        async with gate:
            record = await work(item)
        store.add({"id": item_id(item), **record})
        bar.update(1)

    try:
        await asyncio.gather(*(one(item) for item in todo))
    finally:
        bar.close()
    return len(todo)
