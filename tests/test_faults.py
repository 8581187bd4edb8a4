"""Reliability: real-HTTP fault injection against the fake OpenAI server on 127.0.0.1.

Every test checks two things: the run's outcome (answer, error) and that nothing computed was
lost (the successful proposers' answers are in ``answers``/``references`` and the ``calls``
records say exactly what happened to every model).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_moa.errors import LayerFailedError
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.nodes.budget import TRUNCATION_MARK
from langgraph_moa.testing import Behavior

Q = "What is 2+2?"


def calls_by_model(out: dict) -> dict[str, dict]:
    return {c["model"]: c for c in out["calls"]}


def assert_kept(out: dict, *proposers: str, layer: int = 1, question: str = Q) -> None:
    """The named proposers' answers survived into ``answers`` and ``references``."""
    for name in proposers:
        expected = f"{name} says: {question}"
        assert out["answers"][f"layer_{layer}/{name}"] == expected
        assert expected in out["references"]
        assert calls_by_model(out)[name]["status"] == "ok"


def requests_gap(log: list[dict]) -> list[float]:
    """Seconds between the end of each request and the start of the next one."""
    return [b["start"] - a["end"] for a, b in zip(log, log[1:], strict=False)]


# ------------------------------------------------------------------ retries


async def test_500_once_is_retried(server, model, collect):
    server.set_behavior("b", Behavior(fail_first=1))
    graph = create_moa({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})
    out, events, _ = await collect(graph, {"messages": [("user", Q)]})

    assert out["answer"] == f"agg says: {Q}"
    assert_kept(out, "a", "b")
    b = calls_by_model(out)["b"]
    assert b["attempts"] == 2 and b["error"] is None
    assert [r["outcome"] for r in server.log("b")] == ["500", "ok"]
    errors = [e for e in events if e["event"] == "call_error"]
    assert len(errors) == 1
    assert errors[0]["model"] == "b" and errors[0]["will_retry"] is True
    assert "500" in errors[0]["error"] and errors[0]["attempt"] == 1
    assert not [e for e in events if e["event"] == "call_failed"]


async def test_always_500_is_skipped_and_recorded(server, model, collect):
    server.set_behavior("b", Behavior(always_status=500))
    graph = create_moa({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})
    out, events, _ = await collect(graph, {"messages": [("user", Q)]})

    assert out["answer"] == f"agg says: {Q}"
    assert_kept(out, "a")
    assert out["references"] == [f"a says: {Q}"]
    assert "layer_1/b" not in out["answers"]
    b = calls_by_model(out)["b"]
    assert b["status"] == "failed" and b["attempts"] == 3 and "500" in b["error"]
    assert len(server.log("b")) == 3
    # The aggregator saw only the surviving reference.
    [agg_request] = server.log("agg")
    system = agg_request["messages"][0]["content"]
    assert f"1. a says: {Q}" in system and "2." not in system.split("Responses from models:")[1]

    retries = [e["will_retry"] for e in events if e["event"] == "call_error"]
    assert retries == [True, True, False]
    [failed] = [e for e in events if e["event"] == "call_failed"]
    assert failed["model"] == "b" and failed["attempts"] == 3 and "500" in failed["error"]


async def test_429_retry_after_is_honoured(server, model, run):
    server.set_behavior("b", Behavior(fail_first=1, fail_status=429, retry_after=0.5))
    out = await run({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})

    assert_kept(out, "a", "b")
    assert calls_by_model(out)["b"]["attempts"] == 2
    first, second = server.log("b")
    assert first["outcome"] == "429" and second["outcome"] == "ok"
    waited = second["start"] - first["end"]
    assert 0.45 <= waited < 1.0, waited


async def test_retry_after_is_capped_by_max_retry_after(server, model, run):
    server.set_behavior("b", Behavior(fail_first=1, fail_status=429, retry_after=30))
    spec = {
        "layers": [[model("a"), model("b", retry={"max_retry_after": 0.2})]],
        "aggregator": model("agg"),
    }
    out = await run(spec)
    assert_kept(out, "a", "b")
    [waited] = requests_gap(server.log("b"))
    assert 0.15 <= waited < 0.6, waited


async def test_client_error_is_not_retried(server, model, run):
    server.set_behavior("b", Behavior(always_status=404))
    out = await run({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})
    assert_kept(out, "a")
    b = calls_by_model(out)["b"]
    assert b["status"] == "failed" and b["attempts"] == 1 and "404" in b["error"]
    assert len(server.log("b")) == 1


# ------------------------------------------------------------------ timeouts and stragglers


async def test_hanging_proposer_times_out(server, model, collect):
    server.set_behavior("b", Behavior(hang=True))
    spec = {
        "layers": [[model("a"), model("b", timeout=0.3, retry={"max_attempts": 2})]],
        "aggregator": model("agg"),
    }
    start = time.perf_counter()
    out, events, _ = await collect(create_moa(spec), {"messages": [("user", Q)]})
    elapsed = time.perf_counter() - start

    assert out["answer"] == f"agg says: {Q}"
    assert_kept(out, "a")
    b = calls_by_model(out)["b"]
    assert b["status"] == "timeout" and b["attempts"] == 2
    assert "timed out" in b["error"]
    assert len(server.log("b")) == 2
    assert 0.6 <= elapsed < 2.0, elapsed
    [failed] = [e for e in events if e["event"] == "call_failed"]
    assert failed["model"] == "b" and "timed out" in failed["error"]


async def _timed_run(spec: dict) -> tuple[dict, float]:
    graph = create_moa(spec)
    start = time.perf_counter()
    out = await graph.ainvoke({"messages": [("user", Q)]})
    return out, time.perf_counter() - start


@pytest.mark.parametrize("policy", [{"layer_deadline": 0.15}, {"layer_deadline_factor": 2.0}])
async def test_straggler_is_cut(server, model, policy):
    server.set_default(Behavior(latency=0.05))
    server.set_behavior("slow", Behavior(latency=3.0))
    fast = [model("a"), model("b")]
    # Warm up (imports, connections), then time the layer without the straggler.
    await _timed_run({"layers": [fast], "aggregator": model("agg")})
    _, baseline = await _timed_run({"layers": [fast], "aggregator": model("agg")})

    spec = {"layers": [[*fast, model("slow")]], "aggregator": model("agg"), **policy}
    out, elapsed = await _timed_run(spec)

    assert elapsed < baseline + 0.6, (elapsed, baseline)
    assert elapsed < 1.0  # the straggler alone takes 3 s
    assert out["answer"] == f"agg says: {Q}"
    assert_kept(out, "a", "b")
    slow = calls_by_model(out)["slow"]
    assert slow["status"] == "cut" and slow["error"] == "cut by the layer deadline"
    assert "layer_1/slow" not in out["answers"]
    assert len(out["references"]) == 2


async def test_deadline_waits_for_quorum(server, model):
    """The deadline starts once the quorum answered: a slow-but-needed proposer is awaited."""
    server.set_default(Behavior(latency=0.05))
    server.set_behavior("slow", Behavior(latency=0.6))
    spec = {
        "layers": [[model("a"), model("slow")]],
        "aggregator": model("agg"),
        "min_successful": 2,
        "layer_deadline": 0.05,
    }
    out, elapsed = await _timed_run(spec)
    assert_kept(out, "a", "slow")
    assert elapsed >= 0.6


# ------------------------------------------------------------------ bad bodies


@pytest.mark.parametrize(
    ("behavior", "reason"),
    [(Behavior(malformed=True), "malformed"), (Behavior(empty=True), "empty")],
    ids=["malformed", "empty"],
)
async def test_bad_body_is_a_failure(server, model, run, behavior, reason):
    server.set_behavior("b", behavior)
    out = await run({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})
    assert out["answer"] == f"agg says: {Q}"
    assert_kept(out, "a")
    b = calls_by_model(out)["b"]
    assert b["status"] == "failed" and reason in b["error"]
    assert "layer_1/b" not in out["answers"]


async def test_aggregator_stream_dropped_mid_way_is_retried_cleanly(server, model, collect):
    content = "The answer is four, because two plus two makes four."
    server.set_behavior("agg", Behavior(content=content, drop_mid_stream_first=1))
    graph = create_moa({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})
    out, _, chunks = await collect(graph, {"messages": [("user", Q)]}, ["values", "messages"])

    assert [r["outcome"] for r in server.log("agg")] == ["dropped", "ok"]
    assert out["answer"] == content
    ai = [m for m in out["messages"] if m.type == "ai"]
    assert [m.content for m in ai] == [content]
    assert calls_by_model(out)["agg"]["attempts"] == 2
    assert_kept(out, "a", "b")
    # Token streams: each attempt has its own message id; the one that counted spells the
    # clean answer exactly once, the dropped attempt only a prefix of it.
    streams: dict[str, str] = {}
    for _mode, (chunk, meta) in (c for c in chunks if c[0] == "messages"):
        if meta["langgraph_node"] == "aggregator":
            streams[chunk.id] = streams.get(chunk.id, "") + chunk.content
    assert streams.pop(ai[0].id) == content
    [partial] = streams.values()
    assert content.startswith(partial) and partial != content


# ------------------------------------------------------------------ whole-layer failures


async def test_all_proposers_fail_raises_layer_failed(server, model):
    server.set_behavior("a", Behavior(always_status=500))
    server.set_behavior("b", Behavior(empty=True))
    graph = create_moa(
        {"layers": [[model("a"), model("b")]], "aggregator": model("agg")},
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(LayerFailedError) as info:
        await graph.ainvoke({"messages": [("user", Q)]}, config)

    err = info.value
    assert err.layer == 1 and err.needed == 1 and err.got == 0
    assert set(err.failures) == {"a", "b"}
    assert "500" in err.failures["a"] and "empty" in err.failures["b"]
    assert "a: HTTP 500" in str(err) and "b: empty" in str(err)
    assert server.log("agg") == []
    state = (await graph.aget_state(config)).values
    assert {c["model"]: c["status"] for c in state["calls"]} == {"a": "failed", "b": "failed"}


async def test_quorum_not_met_raises_and_keeps_the_answer(server, model):
    server.set_behavior("b", Behavior(always_status=500))
    server.set_behavior("c", Behavior(always_status=503))
    spec = {
        "layers": [[model("a"), model("b"), model("c")]],
        "aggregator": model("agg"),
        "min_successful": 2,
    }
    graph = create_moa(spec, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "q"}}
    with pytest.raises(LayerFailedError) as info:
        await graph.ainvoke({"messages": [("user", Q)]}, config)
    err = info.value
    assert (err.needed, err.got) == (2, 1)
    assert set(err.failures) == {"b", "c"}
    assert "500" in err.failures["b"] and "503" in err.failures["c"]
    assert "1 of the 2 required" in str(err)
    # The answer that was computed is checkpointed, not lost.
    state = (await graph.aget_state(config)).values
    assert state["answers"] == {"layer_1/a": f"a says: {Q}"}
    assert server.log("agg") == []


async def test_layer_failure_lists_only_seats_without_an_answer(server, model):
    """A seat answered by its fallback counts toward the quorum and is not named a failure."""
    server.set_behavior("b", Behavior(always_status=500))
    server.set_behavior("c", Behavior(always_status=500))
    spec = {
        "layers": [[model("a"), model("b", fallback=model("b2")), model("c")]],
        "aggregator": model("agg"),
        "min_successful": 3,
    }
    with pytest.raises(LayerFailedError) as info:
        await create_moa(spec).ainvoke({"messages": [("user", Q)]})
    assert (info.value.needed, info.value.got) == (3, 2)
    assert list(info.value.failures) == ["c"]


async def test_all_proposers_fail_with_aggregator_fallback(server, model, collect):
    server.set_behavior("a", Behavior(always_status=500))
    server.set_behavior("b", Behavior(hang=True))
    spec = {
        "layers": [[model("a"), model("b", timeout=0.2, retry={"max_attempts": 1})]],
        "aggregator": model("agg", fallback=model("fb")),
    }
    graph = create_moa(spec)
    out, events, _ = await collect(graph, {"messages": [("user", Q)]})

    assert out["answer"] == f"fb says: {Q}"
    assert out["references"] == []
    calls = calls_by_model(out)
    assert calls["a"]["status"] == "failed" and calls["b"]["status"] == "timeout"
    fb = calls["fb"]
    assert fb["role"] == "aggregator" and fb["node"] == "fallback"
    assert fb["status"] == "fallback"
    assert "layer 1 failed" in fb["error"] and "a: HTTP 500" in fb["error"]
    assert "agg" not in calls and server.log("agg") == []
    # The fallback answers the user directly: no references were injected.
    [fb_request] = server.log("fb")
    assert [m["role"] for m in fb_request["messages"]] == ["user"]
    layer_done = [e for e in events if e["event"] == "layer_finished"]
    assert layer_done == [{"event": "layer_finished", "layer": 1, "answers": 0, "of": 2}]


async def test_fallback_turn_does_not_stick_to_the_thread(server, model):
    """After a turn answered by the fallback, the next turn on the thread aggregates again."""
    server.set_behavior("a", Behavior(fail_first=1, retry_after=None))
    spec = {
        "layers": [[model("a", retry={"max_attempts": 1})]],
        "aggregator": model("agg", fallback=model("fb")),
    }
    graph = create_moa(spec, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "turns"}}
    first = await graph.ainvoke({"messages": [("user", "first?")]}, config)
    assert first["answer"] == "fb says: first?"
    second = await graph.ainvoke({"messages": [("user", "second?")]}, config)
    assert second["answer"] == "agg says: second?"
    assert {c["model"]: c["status"] for c in second["calls"]} == {"a": "ok", "agg": "ok"}
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]


async def test_aggregator_fails_fallback_answers(server, model, collect):
    server.set_behavior("agg", Behavior(always_status=500))
    spec = {
        "layers": [[model("a"), model("b")]],
        "aggregator": model("agg", fallback=model("fb")),
    }
    out, events, _ = await collect(create_moa(spec), {"messages": [("user", Q)]})

    assert out["answer"] == f"fb says: {Q}"
    assert_kept(out, "a", "b")
    [agg_call] = [c for c in out["calls"] if c["role"] == "aggregator"]
    assert agg_call["model"] == "fb" and agg_call["status"] == "fallback"
    assert agg_call["node"] == "aggregator"
    assert "agg failed" in agg_call["error"] and "500" in agg_call["error"]
    assert len(server.log("agg")) == 3
    # The fallback got the same references the aggregator would have.
    [fb_request] = server.log("fb")
    system = fb_request["messages"][0]["content"]
    assert f"1. a says: {Q}" in system and f"2. b says: {Q}" in system
    kinds = [e["event"] for e in events if e.get("role") == "aggregator"]
    assert kinds[-2:] == ["call_failed", "call_fallback"]


async def test_aggregator_fails_without_fallback_raises(server, model):
    from langgraph_moa.errors import ModelCallError

    server.set_behavior("agg", Behavior(always_status=502))
    graph = create_moa(
        {"layers": [[model("a")]], "aggregator": model("agg")}, checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "x"}}
    with pytest.raises(ModelCallError, match=r"agg: HTTP 502"):
        await graph.ainvoke({"messages": [("user", Q)]}, config)
    state = (await graph.aget_state(config)).values
    assert state["references"] == [f"a says: {Q}"]


async def test_proposer_fallback_answers_in_its_seat(server, model):
    server.set_behavior("b", Behavior(always_status=500))
    spec = {
        "layers": [[model("a"), model("b", fallback=model("b2"))]],
        "aggregator": model("agg"),
    }
    out = await create_moa(spec).ainvoke({"messages": [("user", Q)]})
    assert out["answers"]["layer_1/b"] == f"b2 says: {Q}"
    assert out["references"] == [f"a says: {Q}", f"b2 says: {Q}"]
    b2 = calls_by_model(out)["b2"]
    assert b2["status"] == "fallback" and b2["node"] == "layer_1/b"
    assert "b failed" in b2["error"]


# ------------------------------------------------------------------ context window


async def test_references_are_fitted_to_the_context_window(server, model):
    server.set_behavior("a", Behavior(tokens=300))
    server.set_behavior("b", Behavior(tokens=300))
    server.set_behavior("agg", Behavior(context_window=600))
    spec = {
        "layers": [[model("a"), model("b")]],
        "aggregator": model("agg", context_window=600, max_tokens=50),
    }
    out = await create_moa(spec).ainvoke({"messages": [("user", Q)]})

    assert out["answer"] == f"agg says: {Q}"
    # Nothing computed is lost: the full answers are kept, only the prompt was fitted.
    assert len(out["answers"]["layer_1/a"].split()) == 300
    assert len(out["references"][0].split()) == 300
    agg = calls_by_model(out)["agg"]
    assert agg["truncated"] == 2 and agg["status"] == "ok"
    [request] = server.log("agg")
    assert request["outcome"] == "ok"
    assert request["prompt_tokens"] + request["max_tokens"] <= 600
    system = request["messages"][0]["content"]
    assert system.count(TRUNCATION_MARK.strip()) == 2


async def test_context_length_400_refits_once(server, model, collect):
    server.set_behavior("a", Behavior(tokens=300))
    server.set_behavior("b", Behavior(tokens=300))
    server.set_behavior("agg", Behavior(context_window=400))
    spec = {
        "layers": [[model("a"), model("b")]],
        "aggregator": model("agg", context_window=4000, max_tokens=50),
    }
    out, events, _ = await collect(create_moa(spec), {"messages": [("user", Q)]})

    assert out["answer"] == f"agg says: {Q}"
    first, second = server.log("agg")
    assert first["outcome"] == "context_length" and second["outcome"] == "ok"
    assert second["prompt_tokens"] + second["max_tokens"] <= 400
    agg = calls_by_model(out)["agg"]
    assert agg["status"] == "ok" and agg["attempts"] == 1 and agg["truncated"] > 0
    [refit] = [e for e in events if e["event"] == "call_refit"]
    assert refit["model"] == "agg" and refit["window"] < 4000
    assert not [e for e in events if e["event"] == "call_error"]


# ------------------------------------------------------------------ reasoning and concurrency


async def test_think_blocks_are_stripped_from_references(server, model):
    server.set_behavior(
        "a", Behavior(content="<think>\nlet me add: secret reasoning\n</think>\nIt is 4.")
    )
    out = await create_moa(
        {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    ).ainvoke({"messages": [("user", Q)]})
    assert out["references"] == ["It is 4.", f"b says: {Q}"]
    assert "<think>" in out["answers"]["layer_1/a"]  # the raw answer is kept in state
    [request] = server.log("agg")
    assert "secret reasoning" not in str(request["messages"])


async def test_answer_that_is_only_reasoning_is_a_failure(server, model):
    server.set_behavior("a", Behavior(content="<think>all of it was reasoning</think>\n"))
    out = await create_moa(
        {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    ).ainvoke({"messages": [("user", Q)]})
    assert out["references"] == [f"b says: {Q}"]  # no empty reference
    a = calls_by_model(out)["a"]
    assert a["status"] == "failed" and a["error"] == "empty response (only reasoning)"


async def test_unclosed_think_block_is_stripped(server, model):
    server.set_behavior("a", Behavior(content="The answer: <think>ran out of tokens while"))
    out = await create_moa(
        {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    ).ainvoke({"messages": [("user", Q)]})
    assert out["references"][0] == "The answer:"


async def test_unreachable_provider_is_a_connection_failure(server, model, run):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    spec = {"layers": [[model("a"), model("b", base_url=dead)]], "aggregator": model("agg")}
    out = await run(spec)
    assert_kept(out, "a")
    b = calls_by_model(out)["b"]
    assert b["status"] == "failed" and b["attempts"] == 3
    assert b["error"].startswith("connection error")


async def test_256_concurrent_runs(server, model):
    spec = {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    graph = create_moa(spec)
    questions = [f"Question number {i}: what is {i} squared?" for i in range(256)]
    outs = await asyncio.gather(*(graph.ainvoke({"messages": [("user", q)]}) for q in questions))

    for q, out in zip(questions, outs, strict=True):
        assert out["answer"] == f"agg says: {q}"
        assert out["references"] == [f"a says: {q}", f"b says: {q}"]
        assert [c["status"] for c in out["calls"]] == ["ok"] * 3
    log = server.log()
    assert len(log) == 3 * 256
    assert all(r["outcome"] == "ok" for r in log)


async def test_retry_after_wait_is_cut_by_the_layer_deadline(server, model):
    """A proposer told to come back in 5 s does not hold the layer past its deadline."""
    server.set_default(Behavior(latency=0.05))
    server.set_behavior("b", Behavior(always_status=429, retry_after=5))
    spec = {
        "layers": [[model("a"), model("b")]],
        "aggregator": model("agg"),
        "layer_deadline": 0.2,
    }
    out, elapsed = await _timed_run(spec)
    assert elapsed < 1.5, elapsed
    assert_kept(out, "a")
    b = calls_by_model(out)["b"]
    assert b["status"] == "cut" and b["attempts"] == 1
    assert len(server.log("b")) == 1


async def test_failed_first_layer_with_fallback_skips_later_layers(server, model):
    """A failed layer goes to the fallback only: no later layer, no second fallback call."""
    for name in ("a", "b"):
        server.set_behavior(name, Behavior(always_status=500))
    spec = {
        "layers": [[model("a"), model("b")], [model("c"), model("d")]],
        "aggregator": {**model("agg"), "fallback": model("fb")},
    }
    out = await create_moa(spec).ainvoke({"messages": [("user", Q)]})
    called = [r["model"] for r in server.log()]
    assert called.count("fb") == 1 and not {"c", "d", "agg"} & set(called)
    assert out["answer"] == f"fb says: {Q}" and "layer 1 failed" in out["fallback_reason"]


async def test_a_failed_run_keeps_what_it_computed(server, model):
    """No checkpointer, the aggregator fails for good: the answers travel with the error."""
    from langgraph_moa.errors import ModelCallError

    server.set_behavior("agg", Behavior(always_status=500))
    spec = {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    with pytest.raises(ModelCallError) as info:
        await create_moa(spec).ainvoke({"messages": [("user", Q)]})
    partial = info.value.partial
    assert partial["references"] == [f"a says: {Q}", f"b says: {Q}"]
    assert set(partial["answers"]) == {"layer_1/a", "layer_1/b"}
