"""The graph against a real OpenAI-compatible HTTP server on 127.0.0.1: parallel fan-out,
spec-ordered references, multi-turn conversations, the Mermaid picture."""

from __future__ import annotations

import asyncio
import time

import pytest

from langgraph_moa.graphs.builder import build_graph, create_moa
from langgraph_moa.graphs.state import Context
from langgraph_moa.models.factory import aclose_clients
from langgraph_moa.testing import Behavior, OpenAIServer


@pytest.fixture
async def srv():
    async with OpenAIServer(default=Behavior()) as server:
        yield server
    await aclose_clients()


def spec_for(srv, layers: list[list[str]], aggregator: str = "agg", **extra) -> dict:
    def model(name: str) -> dict:
        return {"name": name, "model": f"openai:{name}", "base_url": srv.base_url}

    return {
        "layers": [[model(n) for n in layer] for layer in layers],
        "aggregator": model(aggregator),
        **extra,
    }


async def test_proposers_of_a_layer_run_in_parallel(srv):
    srv.set_default(Behavior(latency=0.3))
    names = ["p1", "p2", "p3", "p4"]
    graph = create_moa(spec_for(srv, [names, names]))
    await graph.ainvoke({"messages": [("user", "warm up")]})  # connections, imports
    srv.reset()
    start = time.perf_counter()
    out = await graph.ainvoke({"messages": [("user", "Why is the sky blue?")]})
    elapsed = time.perf_counter() - start

    log = srv.log()
    assert len(log) == 9 and {r["outcome"] for r in log} == {"ok"}
    for layer in (log[:4], log[4:8]):
        starts = [r["start"] for r in layer]
        ends = [r["end"] for r in layer]
        assert max(starts) < min(ends), "every proposer started before the first one finished"
    # 2 layers + aggregator at 0.3 s each: sequential calls would take 9 x 0.3 = 2.7 s
    assert elapsed < 3 * 0.3 + 0.6, elapsed
    assert out["answer"] == "agg says: Why is the sky blue?"


async def test_references_follow_spec_order_not_completion_order(srv):
    names = ["slowest", "slow", "fast", "fastest"]
    for i, name in enumerate(names):  # the first in the spec finishes last
        srv.set_behavior(name, Behavior(latency=0.05 * (len(names) - i)))
    out = await create_moa(spec_for(srv, [names])).ainvoke({"messages": [("user", "Q")]})
    finish = [r["model"] for r in sorted(srv.log()[:4], key=lambda r: r["end"])]
    assert finish == names[::-1]
    assert out["references"] == [f"{n} says: Q" for n in names]
    system = srv.log()[-1]["messages"][0]["content"]
    assert system.endswith("".join(f"\n{i}. {n} says: Q" for i, n in enumerate(names, 1)))


async def test_multi_turn_keeps_earlier_turns(srv):
    from langgraph.checkpoint.memory import InMemorySaver

    graph = create_moa(spec_for(srv, [["a", "b"]]), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"messages": [("user", "My name is Ada.")]}, config)
    srv.reset()
    out = await graph.ainvoke({"messages": [("user", "What is my name?")]}, config)
    first = srv.log()[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant", "user"]
    assert (
        first[0]["content"] == "My name is Ada."
        and first[1]["content"] == "agg says: My name is Ada."
    )
    assert [m.type for m in out["messages"]] == ["human", "ai", "human", "ai"]
    # per-run records are reset each turn; the conversation is not
    assert len(out["calls"]) == 3 and set(out["answers"]) == {"layer_1/a", "layer_1/b"}


async def test_usage_recorded_per_call(srv):
    srv.set_default(Behavior(latency=0.1, token_delay=0.01, tokens=8))
    out = await create_moa(spec_for(srv, [["a"]])).ainvoke({"messages": [("user", "Q")]})
    for call in out["calls"]:
        assert call["status"] == "ok" and call["output_tokens"] == 8
        assert call["input_tokens"] > 0 and call["latency_s"] >= 0.1


def _streamed(srv) -> dict[str, bool]:
    """Model name -> whether every request for it asked for a stream (server's log)."""
    seen: dict[str, set[bool]] = {}
    for record in srv.requests:
        seen.setdefault(record["model"], set()).add(bool(record["stream"]))
    assert all(len(v) == 1 for v in seen.values()), seen
    return {name: flags.pop() for name, flags in seen.items()}


async def test_a_run_nobody_streams_makes_only_non_streaming_calls(srv):
    """ainvoke reads no tokens: every request is a plain JSON completion, ttft_s is None."""
    srv.set_default(Behavior(latency=0.05, token_delay=0.005, tokens=8))
    out = await create_moa(spec_for(srv, [["a", "b"], ["a", "b"]])).ainvoke(
        {"messages": [("user", "Q")]}
    )
    assert _streamed(srv) == {"a": False, "b": False, "agg": False}
    assert len(srv.requests) == 5
    assert all(c["ttft_s"] is None for c in out["calls"])
    assert out["answer"].startswith("agg says")


@pytest.mark.parametrize("stream_proposers", [False, True])
async def test_messages_mode_streams_the_aggregator_and_proposers_on_request(srv, stream_proposers):
    srv.set_default(Behavior(latency=0.1, token_delay=0.01, tokens=8))
    graph = create_moa(spec_for(srv, [["a", "b"]]))
    tokens: dict[str, list[str]] = {}
    final: dict = {}
    async for mode, chunk in graph.astream(
        {"messages": [("user", "Q")]},
        stream_mode=["messages", "values"],
        context=Context(stream_proposers=stream_proposers),
    ):
        if mode == "messages":
            token, meta = chunk
            tokens.setdefault(meta["langgraph_node"], []).append(token.text)
        else:
            final = chunk
    assert _streamed(srv) == {"a": stream_proposers, "b": stream_proposers, "agg": True}
    # The aggregator's answer arrives token by token, and exactly once.
    assert "".join(tokens["aggregator"]) == final["answer"]
    assert len([t for t in tokens["aggregator"] if t]) == 8
    proposer_nodes = {"layer_1/a", "layer_1/b"}
    assert proposer_nodes.issubset(tokens) == stream_proposers
    for call in final["calls"]:
        streamed = call["role"] == "aggregator" or stream_proposers
        if streamed:
            assert 0.1 <= call["ttft_s"] < call["latency_s"]
        else:
            assert call["ttft_s"] is None


def test_graph_shape_reads_like_the_paper():
    from langgraph_moa.graphs.spec import load_preset

    graph = build_graph(preset="moa").compile()
    nodes = set(graph.get_graph().nodes)
    spec = load_preset("moa")
    for k, layer in enumerate(spec.layers, 1):
        assert {f"layer_{k}", f"layer_{k}/aggregate"} <= nodes
        assert {f"layer_{k}/{m.name}" for m in layer} <= nodes
    assert "aggregator" in nodes
    assert len(spec.layers) == 2 and all(len(layer) == 6 for layer in spec.layers)


async def test_compiling_needs_no_key_and_no_network(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    graph = create_moa(preset="moa")  # would fail if a client or key were needed here
    assert graph.name == "moa"
    await asyncio.sleep(0)


def test_sync_invoke_and_stream_work_and_stay_parallel():
    from langgraph_moa.testing import RecordingChatModel

    fakes = {n: RecordingChatModel(name=n, delay=0.3) for n in ["a", "b", "c", "agg"]}
    model = lambda n: {"name": n, "model": f"openai:{n}", "base_url": "http://127.0.0.1:9"}  # noqa: E731
    graph = create_moa(
        {"layers": [[model("a"), model("b"), model("c")]], "aggregator": model("agg")},
        chat_models=fakes,
    )
    start = time.perf_counter()
    out = graph.invoke({"messages": [("user", "Q?")]})
    assert out["answer"] == "agg: Q?"
    assert time.perf_counter() - start < 3 * 0.3  # 2 x 0.3 s when the layer runs in parallel
    tokens = [
        chunk[0].content
        for mode, chunk in graph.stream({"messages": [("user", "Q2?")]}, stream_mode=["messages"])
        if chunk[1]["langgraph_node"] == "aggregator"
    ]
    assert "".join(tokens) == "agg: Q2?"


async def test_response_cache_reuses_identical_prompts_only(srv):
    from langgraph.cache.memory import InMemoryCache

    srv.set_behavior("flaky", Behavior(always_status=500))
    spec = spec_for(srv, [["a", "flaky"], ["a"]], cache=True)
    spec["layers"][0][1]["retry"] = {"max_attempts": 1}
    graph = create_moa(spec, cache=InMemoryCache())
    first = await graph.ainvoke({"messages": [("user", "Q1")]})
    assert len(srv.log()) == 4  # a, flaky (failed), layer-2 a, agg
    srv.reset()
    again = await graph.ainvoke({"messages": [("user", "Q1")]})
    assert [r["model"] for r in srv.log()] == ["flaky"]  # a failure is never cached
    assert again["answer"] == first["answer"] and again["references"] == first["references"]
    srv.reset()
    await graph.ainvoke({"messages": [("user", "Q2")]})
    assert len(srv.log()) == 4  # a new question is a new prompt
