"""Early stopping (issue 15): the layer stack ends early when consecutive layers agree or a
judge says the answers are final; the layers and calls saved are recorded."""

from __future__ import annotations

import itertools

import pytest

from langgraph_moa.costs import estimate, worst_calls
from langgraph_moa.errors import SpecError
from langgraph_moa.graphs.builder import build_graph, create_moa
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.nodes.stop import agreement, jaccard, parse_verdict, words
from langgraph_moa.testing import Behavior, RecordingChatModel


def test_agreement_is_mean_best_match_jaccard():
    assert jaccard(words("The cat sat."), words("the CAT sat")) == 1.0
    assert jaccard(words("a b"), words("c d")) == 0.0
    assert agreement(["a b c d"], ["a b c x"]) == 0.6  # 3 shared of 5
    # A diverse layer that stopped changing agrees fully with the one before it...
    diverse = ["red apples grow", "blue sky above", "cold rain falls"]
    assert agreement(diverse, list(reversed(diverse))) == 1.0
    # ...while mean pairwise similarity would call it 1/3 converged.
    pairs = [jaccard(words(a), words(b)) for a in diverse for b in diverse]
    assert sum(pairs) / len(pairs) == pytest.approx(1 / 3)
    assert agreement([], diverse) == 0.0


def test_verdicts_are_read_from_the_last_verdict_line():
    assert parse_verdict("Good.\nVERDICT: FINAL") == "final"
    assert parse_verdict("VERDICT: FINAL\nwait, no.\n**VERDICT:** continue") == "continue"
    assert parse_verdict("It is final.") is None
    assert parse_verdict(None) is None


def _layers(model, n=3):
    return [[model("a"), model("b")] for _ in range(n)]


async def test_agreeing_layers_skip_the_rest_straight_to_the_aggregator(model, server, run):
    # The server answers every layer the same: layer 2 agrees with layer 1 completely.
    spec = {
        "layers": _layers(model, 4),
        "aggregator": model("agg"),
        "early_stop": {"similarity": 0.9},
    }
    out = await run(spec)
    assert len(server.log("a")) == 2 and len(server.log("b")) == 2  # layers 3, 4 skipped
    assert out["early_stop"] == {
        "layer": 2,
        "reason": "similarity",
        "layers_saved": 2,
        "calls_saved": 4,
    }
    first, second = out["stop_checks"]
    assert first["similarity"] is None and not first["stop"]  # nothing to compare after 1
    assert second["similarity"] == 1.0 and second["stop"] and second["reason"] == "similarity"
    assert out["answer"] == "agg says: What is 2+2?"
    [agg] = server.log("agg")
    assert "a says: What is 2+2?" in agg["messages"][0]["content"]
    assert [c["layer"] for c in out["calls"]] == [1, 1, 2, 2, 5]


async def test_changing_answers_run_every_layer(model, collect):
    counter = itertools.count()

    def fresh(messages):  # new words every call: the layers never agree
        n = next(counter)
        return f"draft{n} alpha{n} beta{n}"

    fakes = {name: RecordingChatModel(name=name, reply=fresh) for name in ("a", "b")}
    spec = {
        "layers": _layers(model, 3),
        "aggregator": model("agg"),
        "early_stop": {"similarity": 0.5},
    }
    graph = create_moa(spec, chat_models={**fakes, "agg": RecordingChatModel(name="agg")})
    final, events, _ = await collect(graph, {"messages": [("user", "Q?")]})
    assert final.get("early_stop") is None
    assert [c["layer"] for c in final["stop_checks"]] == [1, 2]  # none after the last layer
    assert final["stop_checks"][1]["similarity"] == 0.0
    assert len(fakes["a"].received) == 3
    assert [e["layer"] for e in events if e["event"] == "layer_stop_check"] == [1, 2]


async def test_a_judge_saying_final_stops_after_the_first_layer(model, server, run):
    server.set_behavior("judge", Behavior(content="All correct and consistent.\nVERDICT: FINAL"))
    spec = {
        "layers": _layers(model, 3),
        "aggregator": model("agg"),
        "early_stop": {"judge": model("judge", price={"input": 1, "output": 1})},
    }
    out = await run(spec)
    assert out["early_stop"] == {"layer": 1, "reason": "judge", "layers_saved": 2, "calls_saved": 5}
    [check] = out["stop_checks"]
    assert check["verdict"] == "final" and check["judge_raw"].endswith("VERDICT: FINAL")
    [judge] = server.log("judge")
    assert "a says: What is 2+2?" in judge["messages"][0]["content"]
    [rec] = [c for c in out["calls"] if c["role"] == "judge"]
    assert rec["node"] == "layer_1/stop/judge" and rec["cost_usd"] is not None
    assert len(server.log("a")) == 1 and len(server.log("agg")) == 1


async def test_a_garbage_or_failing_judge_means_go_on(model, server, run):
    server.set_behavior("judge", Behavior(content="Hard to say."))
    spec = {
        "layers": _layers(model, 2),
        "aggregator": model("agg"),
        "early_stop": {"judge": model("judge")},
    }
    out = await run(spec)
    assert out.get("early_stop") is None and out["stop_checks"][0]["verdict"] is None
    assert len(server.log("a")) == 2

    server.reset()
    server.set_behavior("judge", Behavior(always_status=500))
    out = await run(spec)
    assert out.get("early_stop") is None and len(server.log("a")) == 2
    [rec] = [c for c in out["calls"] if c["role"] == "judge"]
    assert rec["status"] == "failed" and rec["attempts"] == 3  # retried like any call


async def test_the_judge_is_not_asked_when_the_layers_already_agree(model, server, run):
    server.set_behavior("judge", Behavior(content="VERDICT: CONTINUE"))
    spec = {
        "layers": _layers(model, 3),
        "aggregator": model("agg"),
        "early_stop": {"judge": model("judge"), "similarity": 0.9},
    }
    out = await run(spec)
    assert len(server.log("judge")) == 1  # after layer 1 only; layer 2 agreed with layer 1
    assert out["early_stop"]["reason"] == "similarity" and out["early_stop"]["layer"] == 2


def test_early_stop_is_validated_drawn_and_estimated(model):
    base = {"layers": _layers(model, 3), "aggregator": model("agg", max_tokens=100)}
    with pytest.raises(SpecError, match="early_stop: .*give a judge, a similarity"):
        parse_spec({**base, "early_stop": {}})
    with pytest.raises(SpecError, match=r"early_stop\.similarity"):
        parse_spec({**base, "early_stop": {"similarity": 1.5}})
    spec = parse_spec({**base, "early_stop": {"judge": model("judge"), "similarity": 0.8}})
    graph = build_graph(spec).compile().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    assert {("layer_1/stop", "layer_2"), ("layer_1/stop", "aggregator")} <= edges
    assert ("layer_1/stop/judge", "layer_1/stop") in edges and "layer_3/stop" not in graph.nodes
    nodes = [c.node for c in estimate(spec).calls]
    assert nodes.count("layer_1/stop/judge") == 1 and "layer_3/stop/judge" not in nodes
    assert worst_calls(spec) == 6 + 2 + 1


async def test_max_cost_counts_a_layers_rankers_before_it_runs(model, server, run):
    from langgraph_moa.errors import CostLimitError

    price = {"input": 1000, "output": 1000}  # USD per 1M tokens: a call of ~600 tokens ~ $0.6
    spec = {
        "layers": [[model(n, max_tokens=100, price=price) for n in "abc"]] * 2,
        "aggregator": model("agg", max_tokens=100, price=price),
    }
    layer_1 = sum(c.cost_usd for c in estimate(parse_spec(spec), "What is 2+2?").calls[:3])
    ranked = {**spec, "rank": {"top_k": 1}}
    with_rankers = sum(c.cost_usd for c in estimate(parse_spec(ranked), "What is 2+2?").calls[:6])
    limit = (layer_1 + with_rankers) / 2  # layer 1 alone fits, layer 1 + its rankers not
    await run({**spec, "max_cost": limit * 10})  # sanity: the unranked run is affordable
    server.reset()
    with pytest.raises(CostLimitError) as err:
        await run({**ranked, "max_cost": limit})
    assert err.value.step == "layer_1" and server.log() == []


def test_a_client_judge_is_checked_like_any_model(model):
    from langgraph_moa.graphs.policy import RunPolicy

    policy = RunPolicy(trust_specs=True, base_urls=("http://127.0.0.1:*",))
    base = {"layers": [[model("a", max_tokens=64)]], "aggregator": model("agg", max_tokens=64)}
    judge = model("judge", max_tokens=64, api_key_env="HOME")
    with pytest.raises(SpecError, match=r"context\.spec\.early_stop\.judge\.api_key_env"):
        policy.check_spec({**base, "layers": base["layers"] * 2, "early_stop": {"judge": judge}})
    with pytest.raises(SpecError, match=r"context\.spec\.rank\.judge\.params\.base_url"):
        policy.check_spec(
            {
                **base,
                "layers": [[model("a", max_tokens=64), model("b", max_tokens=64)]],
                "rank": {"top_k": 1, "judge": {**judge, "params": {"base_url": "http://x"}}},
            }
        )
