"""GC tuning (langgraph_moa/tuning.py): importing the library changes no process setting;
``tune_gc()`` freezes what is alive and raises the young threshold; ``moa serve`` applies it
when its app starts. (Its speed effect is measured in benchmarks/, not here.)"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.tuning import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_importing_the_library_changes_no_gc_setting() -> None:
    code = (
        "import gc; d = gc.get_threshold();"
        "import langgraph_moa, langgraph_moa.tuning, langgraph_moa.graphs.builder;"
        "from langgraph_moa import create_moa; create_moa(preset='local');"
        "assert gc.get_threshold() == d and gc.get_freeze_count() == 0, gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tune_gc_freezes_what_is_alive_and_sets_the_thresholds(restore_gc: None) -> None:
    class Node:
        pass

    garbage = Node()
    garbage.me = garbage  # type: ignore[attr-defined]  # a cycle only the collector frees
    ref = weakref.ref(garbage)
    del garbage
    gc.unfreeze()
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert ref() is None  # collected before the freeze, not frozen forever


def test_serve_tunes_gc_when_its_app_starts(restore_gc: None) -> None:
    from langgraph_moa.serve import create_app

    gc.set_threshold(700, 10, 10)
    model = {"model": "openai:a", "base_url": "http://127.0.0.1:9/v1"}
    spec = parse_spec({"layers": [[model]], "aggregator": model})
    app = create_app({"moa": spec}, include_ui=False)
    assert gc.get_threshold() == (700, 10, 10)  # building the app changes nothing

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == GC_THRESHOLDS
            assert gc.get_freeze_count() > 0

    asyncio.run(start_and_stop())
