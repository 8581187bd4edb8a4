"""Reference caps (issue 15): long answers are shortened once, where they become references."""

from __future__ import annotations

from langgraph_moa.costs import estimate
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.nodes.budget import TRUNCATION_MARK, estimate_tokens
from langgraph_moa.nodes.caps import cap_reference
from langgraph_moa.testing import Behavior


def test_cap_keeps_short_text_and_marks_a_cut():
    assert cap_reference("short answer", 10) == ("short answer", False)
    assert cap_reference("x" * 1000, None) == ("x" * 1000, False)
    text, cut = cap_reference(" ".join(["word"] * 200), 20)
    assert cut and text.endswith(TRUNCATION_MARK)
    assert estimate_tokens(text.removesuffix(TRUNCATION_MARK)) <= 20
    assert set(text.removesuffix(TRUNCATION_MARK).split()) == {"word"}  # no half word


async def test_spec_and_model_caps_shorten_what_the_next_layer_and_aggregator_read(
    model, server, collect
):
    server.set_behavior("*", Behavior(tokens=300))
    spec = {
        "layers": [
            [model("a", max_tokens=300), model("b", max_tokens=300, reference_max_tokens=10)]
        ],
        "aggregator": model("agg", max_tokens=300),
        "reference_max_tokens": 40,
    }
    final, events, _ = await collect(create_moa(spec), {"messages": [("user", "Q?")]})
    a, b = final["references"]
    assert a.endswith(TRUNCATION_MARK) and b.endswith(TRUNCATION_MARK)
    assert estimate_tokens(a.removesuffix(TRUNCATION_MARK)) <= 40
    assert estimate_tokens(b.removesuffix(TRUNCATION_MARK)) <= 10
    assert len(final["answers"]["layer_1/a"].split()) == 300  # the full answer is kept
    [finished] = [e for e in events if e["event"] == "layer_finished"]
    assert finished["capped"] == 2
    # The aggregator's request carried the capped references, not the 300-token answers.
    [agg] = server.log("agg")
    prompt = " ".join(m["content"] for m in agg["messages"])
    assert a in prompt and final["answers"]["layer_1/a"] not in prompt


def test_caps_lower_the_estimate(model):
    base = {
        "layers": [[model("a", max_tokens=500), model("b", max_tokens=500)]],
        "aggregator": model("agg"),
    }
    uncapped = estimate(parse_spec(base)).calls[-1].input_tokens
    capped = estimate(parse_spec({**base, "reference_max_tokens": 100})).calls[-1].input_tokens
    assert uncapped - capped >= 2 * (500 - 100 - 5)


def test_the_example_spec_loads_and_fits_its_own_max_cost():
    from pathlib import Path

    from langgraph_moa.graphs.spec import load_spec

    spec = load_spec(Path(__file__).parents[1] / "examples" / "guarded-moa-lite.yaml")
    assert spec.cache and spec.reference_max_tokens == 300
    assert spec.layers[0][5].reference_max_tokens == 150
    assert spec.max_cost is not None
    assert estimate(spec).totals()["cost_usd"] <= spec.max_cost
