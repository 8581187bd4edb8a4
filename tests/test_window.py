"""Self-MoA-Seq (issue 15): references that do not fit one aggregation call are aggregated in
a sliding window (the running synthesis + the next references) instead of being truncated."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from langgraph_moa.costs import estimate, worst_calls
from langgraph_moa.errors import SpecError
from langgraph_moa.graphs.builder import build_graph
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.nodes.budget import TRUNCATION_MARK
from langgraph_moa.nodes.window import plan
from langgraph_moa.testing import Behavior

NAMES = [f"p{i}" for i in range(1, 7)]


def _spec(model, **extra):
    return {
        "layers": [[model(n, max_tokens=200) for n in NAMES]],
        # room for about two 100-word answers next to the prompt and a 50-token answer
        "aggregator": model("agg", max_tokens=50, context_window=800),
        **extra,
    }


def _answer(name: str) -> str:
    return f"{name}-fact " + " ".join(f"{name}w{i}" for i in range(99))


async def test_every_reference_is_read_whole_by_some_window_and_the_last_one_answers(
    model, server, run
):
    for name in NAMES:
        server.set_behavior(name, Behavior(content=_answer(name)))
    # Without a window the aggregator's one call reads truncated references.
    out = await run(_spec(model))
    [single] = server.log("agg")
    assert TRUNCATION_MARK in single["messages"][0]["content"]

    server.reset()
    for name in NAMES:
        server.set_behavior(name, Behavior(content=_answer(name)))
    out = await run(_spec(model, aggregate_window=3))
    agg = sorted(server.log("agg"), key=lambda r: r["seq"])
    prompts = [r["messages"][0]["content"] for r in agg]
    assert len(agg) >= 3  # six 100-word answers do not fit two windows of this size
    for name in NAMES:  # every answer was read whole, by exactly one call
        assert sum(_answer(name) in p for p in prompts) == 1
    assert all(TRUNCATION_MARK not in p for p in prompts)
    # From the second call on, reference 1 is the running synthesis.
    assert all("\n1. agg says: What is 2+2?\n2. " in p for p in prompts[1:])
    assert "agg says:" not in prompts[0]
    # The last window is the aggregator node's call: the answer and the final message.
    nodes = [c["node"] for c in out["calls"] if c["role"] == "aggregator"]
    assert nodes == ["aggregator/window"] * (len(agg) - 1) + ["aggregator"]
    assert _answer("p6") in prompts[-1]
    assert out["answer"] == "agg says: What is 2+2?" and out["messages"][-1].text == out["answer"]
    assert out["references"] == [_answer(n) for n in NAMES]  # state keeps them all


def test_plan_uses_windows_of_k_fewer_when_they_do_not_fit(model):
    state = {"messages": [HumanMessage("Q?")], "references": ["x" * 600] * 5}
    roomy = parse_spec(
        {"layers": [[model("a")]], "aggregator": model("agg"), "aggregate_window": 2}
    )
    assert plan(state, roomy) == [[0, 1], [2, 3], [4]]
    tight = parse_spec(_spec(model, aggregate_window=4))
    windows = plan(state, tight)
    assert [i for w in windows for i in w] == [0, 1, 2, 3, 4]
    assert max(len(w) for w in windows) < 4
    assert plan(state, roomy.model_copy(update={"aggregate_window": None})) == [[0, 1, 2, 3, 4]]


def test_estimate_counts_every_window_call(model):
    spec = parse_spec(
        {
            "layers": [[model(n, max_tokens=100) for n in NAMES]],
            "aggregator": model("agg", max_tokens=100),
            "aggregate_window": 2,
        }
    )
    nodes = [c.node for c in estimate(spec).calls]
    assert nodes[6:] == ["aggregator/window", "aggregator/window", "aggregator"]
    assert worst_calls(spec) == 9
    graph = build_graph(spec).compile().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    loop = {("aggregator/window", "aggregator/window"), ("aggregator/window", "aggregator")}
    assert loop <= edges
    with pytest.raises(SpecError, match="aggregate_window"):
        parse_spec({"layers": [[model("a")]], "aggregator": model("agg"), "aggregate_window": 0})


@pytest.mark.parametrize(
    ("name", "calls"),
    [("ranked-moa-lite", 13), ("self-moa-seq", 8), ("early-stop-moa", 21)],
)
def test_the_example_specs_load_build_and_count_their_calls(name, calls):
    from pathlib import Path

    from langgraph_moa.graphs.spec import load_spec

    spec = load_spec(Path(__file__).parents[1] / "examples" / f"{name}.yaml")
    build_graph(spec).compile()
    assert estimate(spec).totals()["calls"] == calls <= worst_calls(spec)


def test_a_window_as_large_as_the_layer_slides_only_when_the_references_do_not_fit(model):
    spec = parse_spec(_spec(model, aggregate_window=32))
    short = {"messages": [HumanMessage("Q?")], "references": ["x" * 90] * 6}
    assert plan(short, spec) == [[0, 1, 2, 3, 4, 5]]  # they fit: one call
    long = {**short, "references": ["x" * 600] * 6}
    assert len(plan(long, spec)) > 1
