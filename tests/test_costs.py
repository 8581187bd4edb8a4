"""Cost guardrails (issue 15): the price table, ``moa estimate`` and ``max_cost``."""

from __future__ import annotations

import json

import pytest
import yaml

from langgraph_moa.cli import main
from langgraph_moa.costs import estimate
from langgraph_moa.errors import CostLimitError, SpecError
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.graphs.spec import load_preset, parse_spec
from langgraph_moa.graphs.state import Context
from langgraph_moa.testing import Behavior

PRICE = {"input": 1.0, "output": 2.0}  # USD per 1M tokens


def priced_spec(model, **extra):
    m = lambda n, **kw: model(n, price=PRICE, max_tokens=50, **kw)  # noqa: E731
    return {
        "layers": [[m("a"), m("b")], [m("c"), m("d")]],
        "aggregator": m("agg"),
        **extra,
    }


def test_price_table_fills_the_presets_known_prices_only():
    spec = load_preset("moa-gpt4o")
    assert spec.aggregator.price is not None
    assert (spec.aggregator.price.input, spec.aggregator.price.output) == (2.5, 10.0)
    assert spec.layers[0][0].price is None  # Together's 2024 prices are unconfirmed: unknown
    # The same id behind another server costs what that server charges: no table price.
    other = parse_spec(
        {
            "layers": [[{"model": "openai:gpt-4o", "base_url": "http://127.0.0.1:1/v1"}]],
            "aggregator": {"model": "openai:gpt-4o", "base_url": "http://127.0.0.1:1/v1"},
        }
    )
    assert other.aggregator.price is None


def test_estimate_counts_calls_growing_references_and_retries_separately(model):
    spec = parse_spec(priced_spec(model))
    est = estimate(spec, "What is 2+2?")
    t = est.totals()
    assert [c.node for c in est.calls] == [
        "layer_1/a",
        "layer_1/b",
        "layer_2/c",
        "layer_2/d",
        "aggregator",
    ]
    assert t["calls"] == 5 and t["output_tokens"] == 5 * 50
    first, second = est.calls[0], est.calls[2]
    # Layer 2 reads both layer-1 answers at their worst (50 tokens each) through the prompt.
    assert second.input_tokens > first.input_tokens + 2 * 50
    expected = sum((c.input_tokens * 1.0 + 50 * 2.0) / 1e6 for c in est.calls)
    assert t["cost_usd"] == pytest.approx(expected)
    assert t["worst_attempts"] == 5 * 3  # the fixture's retry.max_attempts
    assert t["worst_cost_usd"] == pytest.approx(3 * expected)


def test_estimate_counts_a_fallback_only_in_the_worst_case(model):
    data = priced_spec(model)
    data["aggregator"]["fallback"] = model("fb", price=PRICE, max_tokens=50)
    est = estimate(parse_spec(data))
    assert est.totals()["calls"] == 5
    assert [c.node for c in est.calls if c.fallback] == ["aggregator"]
    assert est.totals()["worst_attempts"] == 6 * 3


async def test_real_run_costs_at_most_the_estimate(model, server, run):
    """Every model writes its whole max_tokens: the real bill stays under the estimate."""
    server.set_behavior("*", Behavior(tokens=500))
    spec = priced_spec(model)
    out = await run(spec, "Explain MoA in detail")
    real = sum(c["cost_usd"] for c in out["calls"])
    assert len(out["calls"]) == 5 and all(c["output_tokens"] == 50 for c in out["calls"])
    assert 0 < real <= estimate(parse_spec(spec), "Explain MoA in detail").totals()["cost_usd"]


async def test_max_cost_stops_before_the_layer_that_would_pass_it(model, server):
    server.set_behavior("*", Behavior(tokens=500))
    spec = parse_spec(priced_spec(model))
    est = estimate(spec, "Q?")
    layer_1 = sum(c.cost_usd for c in est.calls[:2])
    limit = layer_1 + est.calls[2].cost_usd  # room for layer 1 and half of layer 2
    graph = create_moa(priced_spec(model, max_cost=limit))
    with pytest.raises(CostLimitError) as info:
        await graph.ainvoke({"messages": [("user", "Q?")]})
    err = info.value
    assert err.step == "layer_2" and err.limit == limit
    assert {r["model"] for r in server.log()} == {"a", "b"}  # nothing after the stop
    assert err.spent == pytest.approx(sum(c["cost_usd"] for c in err.partial["calls"]))
    assert 0 < err.spent <= layer_1
    assert set(err.partial["answers"]) == {"layer_1/a", "layer_1/b"}
    assert "max_cost" in str(err) and "layer_2" in str(err)


async def test_max_cost_checks_the_aggregator_and_the_context_overrides(model, server):
    data = priced_spec(model)
    data["aggregator"]["price"] = {"input": 100.0, "output": 200.0}  # an expensive aggregator
    est = estimate(parse_spec(data), "Q?")
    graph = create_moa({**data, "max_cost": est.totals()["cost_usd"]})
    out = await graph.ainvoke({"messages": [("user", "Q?")]})  # fits: runs to the end
    assert out["answer"].startswith("agg says")
    server.reset()
    with pytest.raises(CostLimitError) as info:  # the run's own, smaller limit
        await graph.ainvoke(
            {"messages": [("user", "Q?")]}, context=Context(max_cost=est.calls[0].cost_usd)
        )
    assert info.value.step == "layer_1" and server.log() == []
    server.reset()
    proposers = sum(c.cost_usd for c in est.calls[:4])
    limit = proposers + est.calls[4].cost_usd / 2  # room for every proposer, not the aggregator
    with pytest.raises(CostLimitError) as info:
        await graph.ainvoke({"messages": [("user", "Q?")]}, context=Context(max_cost=limit))
    assert info.value.step == "aggregator"
    assert "agg" not in {r["model"] for r in server.log()}
    assert len(info.value.partial["calls"]) == 4


async def test_max_cost_without_prices_fails_before_any_call(model, server):
    data = priced_spec(model, max_cost=1.0)
    del data["layers"][1][0]["price"]
    with pytest.raises(SpecError, match="price for every model; none for: c"):
        await create_moa(data).ainvoke({"messages": [("user", "Q?")]})
    assert server.log() == []


def test_cli_estimate_and_max_cost(tmp_path, capsys):
    """`moa estimate` and `moa --max-cost`, in this process."""
    m = lambda n: {  # noqa: E731
        "name": n,
        "model": f"openai:{n}",
        "base_url": "http://127.0.0.1:9/v1",
        "price": PRICE,
        "max_tokens": 50,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"layers": [[m("a"), m("b")]], "aggregator": m("agg")}))
    assert main(["estimate", "--spec", str(path), "--json", "Hi"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["totals"]["calls"] == 3 and result["totals"]["cost_usd"] > 0
    assert main(["estimate", "--spec", str(path)]) == 0
    text = capsys.readouterr().out
    assert "total: 3 calls" in text
    assert "with every retry and fallback: 9 calls" in text
    # A limit below layer 1's worst case stops before any call (the server does not exist).
    assert main(["--spec", str(path), "--max-cost", "0.0000001", "Hi"]) == 2
    err = capsys.readouterr().err
    assert "error: max_cost $0.000000 reached: spent $0.000000; layer_1" in err


async def test_max_cost_checks_the_fallback_that_would_answer_a_failed_layer(model, server):
    """A whole layer failed: the aggregator's fallback is next, and it is checked too."""
    server.set_behavior("a", Behavior(always_status=400))
    data = {
        "layers": [[model("a", price=PRICE, max_tokens=50)]],
        "aggregator": model(
            "agg",
            price=PRICE,
            max_tokens=50,
            fallback=model("fb", price={"input": 1000.0, "output": 1000.0}, max_tokens=50),
        ),
        "max_cost": 0.01,
    }
    with pytest.raises(CostLimitError) as info:
        await create_moa(data).ainvoke({"messages": [("user", "Q?")]})
    assert info.value.step == "fallback" and info.value.spent == 0
    assert {r["model"] for r in server.log()} == {"a"}


@pytest.mark.parametrize(
    ("scope", "step", "called"), [("answer", "aggregator", ["a"]), ("all", "layer_1", [])]
)
async def test_max_cost_prices_the_answers_limit_where_it_reaches(
    model, server, scope, step, called
):
    """A run's answer_max_tokens bounds the proposers too under ``request_sampling: all``:
    the guard prices them so and stops before the layer, not only before the aggregator."""
    price = {"input": 1.0, "output": 1000.0}  # USD per 1M tokens: 0.001 per output token
    spec = {
        "layers": [[model("a", price=price, max_tokens=10)]],
        "aggregator": model("agg", price=price, max_tokens=10),
        "max_cost": 0.5,
        "request_sampling": scope,
    }
    with pytest.raises(CostLimitError, match=step):
        await create_moa(spec).ainvoke(
            {"messages": [("user", "Is 221 prime?")]}, context=Context(answer_max_tokens=1000)
        )
    assert [r["model"] for r in server.log()] == called
