"""Rank-then-fuse (issue 15): rankers order a layer's anonymised answers, the top k go on."""

from __future__ import annotations

import json
import re

import pytest

from langgraph_moa.costs import estimate, worst_calls
from langgraph_moa.errors import SpecError
from langgraph_moa.graphs.builder import build_graph, create_moa
from langgraph_moa.graphs.policy import RunPolicy
from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.nodes.rank import borda, label, parse_ranking, shuffled
from langgraph_moa.testing import Behavior, OpenAIServer, RecordingChatModel

LABELS = ["A", "B", "C"]


def test_parse_ranking_reads_the_last_ranking_line():
    text = "B is wrong.\nRANKING: A > B > C\nOn reflection:\n**RANKING:** C > A > B"
    assert parse_ranking(text, LABELS) == ["C", "A", "B"]
    assert parse_ranking("ranking: [B], [A], [C]", LABELS) == ["B", "A", "C"]
    assert parse_ranking("RANKING: B > C", LABELS) == ["B", "C", "A"]  # one missing: last


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("I like them all.", "no 'RANKING:' line"),
        ("RANKING: A > D > B", "unknown label 'D'"),
        ("RANKING: A > A > B", "twice"),
        ("RANKING: A", "misses B, C"),
    ],
)
def test_parse_ranking_refuses_garbage(text, why):
    with pytest.raises(ValueError, match=why):
        parse_ranking(text, LABELS)


def test_borda_is_mean_rank_with_ties_in_spec_order():
    nodes = ["a", "b", "c"]
    mean, order = borda(nodes, [["b", "a", "c"], ["c", "b", "a"]])
    assert mean == {"a": 2.5, "b": 1.5, "c": 2.0}
    assert order == ["b", "c", "a"]
    assert borda(nodes, [["c", "a", "b"], ["a", "c", "b"]])[1] == ["a", "c", "b"]  # a, c tie


def test_labels_are_shuffled_per_ranker_deterministically():
    nodes = [f"layer_1/p{i}" for i in range(6)]
    orders = {tuple(shuffled(nodes, f"layer_1/rank/p{i}")) for i in range(6)}
    assert len(orders) > 1  # rankers see different orders (position bias spreads)
    assert shuffled(nodes, "layer_1/rank/p0") == shuffled(nodes, "layer_1/rank/p0")
    assert [label(i) for i in (0, 25, 26, 27)] == ["A", "Z", "AA", "AB"]


def _peer(name: str, answer: str) -> RecordingChatModel:
    """A proposer that answers ``answer``, and as a ranker puts answers saying GOOD first
    (whatever label and position they have: rankers see a shuffled order)."""

    def reply(messages):
        text = messages[-1].text
        if "RANKING:" not in text:
            return answer
        blocks = re.findall(r"\[([A-Z])\]\n(.*)", text)
        best = sorted(blocks, key=lambda b: ("GOOD" not in b[1], b[0]))
        return f"{name} thinks GOOD ones are better.\nRANKING: " + " > ".join(b[0] for b in best)

    return RecordingChatModel(name=name, reply=reply)


async def test_peers_rank_anonymised_answers_and_only_the_top_k_go_on(model, collect):
    fakes = {
        "a": _peer("a", "plain answer from a"),
        "b": _peer("b", "GOOD answer from b"),
        "c": _peer("c", "GOOD answer from c"),
        "d": _peer("d", "plain answer from d"),
        "agg": RecordingChatModel(name="agg"),
    }
    spec = {
        "layers": [[model(n) for n in "abcd"]],
        "aggregator": model("agg"),
        "rank": {"top_k": 2},
    }
    graph = create_moa(spec, chat_models=fakes)
    final, events, _ = await collect(graph, {"messages": [("user", "Q?")]})
    assert final["references"] == ["GOOD answer from b", "GOOD answer from c"]
    [ranking] = final["rankings"]
    assert ranking["kept"] == ["layer_1/b", "layer_1/c"]
    assert set(ranking["order"][:2]) == {"layer_1/b", "layer_1/c"}
    mean = ranking["mean_rank"]
    assert mean["layer_1/b"] + mean["layer_1/c"] == 3.0  # every ranker put them 1st and 2nd
    assert min(mean["layer_1/a"], mean["layer_1/d"]) >= 3.0
    assert [r["ranker"] for r in ranking["rankers"]] == [f"layer_1/rank/{n}" for n in "abcd"]
    assert all(r["ok"] and r["reasons"].endswith("better.") for r in ranking["rankers"])
    # Anonymised: no ranker's prompt names a model; its own answer is among those it ranks.
    prompt = fakes["a"].received[-1][-1].text
    assert "from a" in prompt and "layer_1/" not in prompt and "agg" not in prompt
    # The aggregator read the two kept answers only.
    agg_prompt = fakes["agg"].received[0][0].text
    assert "GOOD answer from b" in agg_prompt and "plain answer" not in agg_prompt
    rankers = [c for c in final["calls"] if c["role"] == "ranker"]
    assert len(rankers) == 4 and all(c["status"] == "ok" for c in rankers)
    assert any(e["event"] == "layer_ranked" and e["kept"] == ranking["kept"] for e in events)


def _judge_spec(model, **rank):
    return {
        "layers": [[model("a"), model("b"), model("c")]],
        "aggregator": model("agg"),
        "rank": {"judge": model("judge", price={"input": 1, "output": 2}), "top_k": 1, **rank},
    }


async def test_a_judge_ranks_over_the_wire_and_its_call_is_recorded(model, server, run):
    ranker = "layer_1/rank/judge"
    order = shuffled(["layer_1/a", "layer_1/b", "layer_1/c"], ranker)  # what it saw as A, B, C
    server.set_behavior(  # ...after one retried 500
        "judge", Behavior(fail_first=1, content="C is the most complete.\nRANKING: C > A > B")
    )
    out = await run(_judge_spec(model))
    best = order[2]
    [ranking] = out["rankings"]
    assert ranking["kept"] == [best]
    assert out["references"] == [f"{best.split('/')[1]} says: What is 2+2?"]
    [rec] = [c for c in out["calls"] if c["role"] == "ranker"]
    assert rec["node"] == ranker and rec["attempts"] == 2 and rec["cost_usd"] > 0
    assert ranking["rankers"][0]["labels"] == dict(zip(LABELS, order, strict=True))
    assert ranking["rankers"][0]["reasons"] == "C is the most complete."
    [agg] = server.log("agg")
    assert out["references"][0] in agg["messages"][0]["content"]
    assert len(server.log("judge")) == 2


async def test_failed_and_garbage_rankers_are_ignored_and_all_failing_keeps_every_answer(
    model, server, run
):
    server.set_behavior("judge", Behavior(content="They are all fine."))
    out = await run(_judge_spec(model))
    [ranking] = out["rankings"]
    assert ranking["rankers"][0]["ok"] is False
    assert ranking["rankers"][0]["error"] == "no 'RANKING:' line"
    assert ranking["rankers"][0]["raw"] == "They are all fine."
    assert ranking["kept"] == ["layer_1/a", "layer_1/b", "layer_1/c"]  # spec order
    assert len(out["references"]) == 3

    server.reset()
    server.set_behavior("judge", Behavior(always_status=401))
    out = await run(_judge_spec(model))
    [ranking] = out["rankings"]
    assert ranking["rankers"][0]["ok"] is False and "401" in ranking["rankers"][0]["error"]
    [rec] = [c for c in out["calls"] if c["role"] == "ranker"]
    assert rec["status"] == "failed"
    assert len(out["references"]) == 3 and out["answer"]


async def test_nothing_to_drop_calls_no_ranker(model, server, run):
    server.set_behavior("b", Behavior(always_status=401))
    server.set_behavior("c", Behavior(always_status=401))
    spec = {**_judge_spec(model), "rank": {"judge": model("judge"), "top_k": 1}}
    out = await run(spec)
    assert server.log("judge") == [] and out.get("rankings") == []
    assert out["references"] == ["a says: What is 2+2?"]


def test_rank_spec_is_validated_naming_the_field(model):
    base = {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    with pytest.raises(SpecError, match=r"rank\.top_k: .*nothing to drop"):
        parse_spec({**base, "rank": {"top_k": 2}})
    with pytest.raises(SpecError, match=r"rank\.layers: 3 is not a layer"):
        parse_spec({**base, "rank": {"top_k": 1, "layers": [3]}})
    with pytest.raises(SpecError, match=r"rank\.top_k"):
        parse_spec({**base, "rank": {"top_k": 0}})
    with pytest.raises(SpecError, match=r"rank\.judge"):
        parse_spec({**base, "rank": {"top_k": 1, "judge": "everyone"}})
    with pytest.raises(SpecError, match=r"layers\[0\]\[1\]\.name: 'rank' is reserved"):
        parse_spec({**base, "layers": [[model("a"), model("rank")]]})


def test_the_graph_shows_rankers_as_a_fan_out(model):
    spec = {"layers": [[model("a"), model("b"), model("c")]], "aggregator": model("agg")}
    graph = build_graph({**spec, "rank": {"top_k": 2}}).compile().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    for name in "abc":
        assert ("layer_1/aggregate", f"layer_1/rank/{name}") in edges
        assert (f"layer_1/rank/{name}", "layer_1/rank") in edges
    assert ("layer_1/rank", "aggregator") in edges
    assert graph.nodes["layer_1/rank/a"].metadata["moa_role"] == "ranker"


def test_estimate_and_the_policy_count_ranker_calls(model):
    spec = parse_spec(
        {
            "layers": [[model(n, max_tokens=100) for n in "abc"]],
            "aggregator": model("agg", max_tokens=100),
            "rank": {"top_k": 1},
        }
    )
    calls = estimate(spec).calls
    assert [c.node for c in calls] == [
        *(f"layer_1/{n}" for n in "abc"),
        *(f"layer_1/rank/{n}" for n in "abc"),
        "aggregator",
    ]
    assert worst_calls(spec) == 7
    # The aggregator reads one (the longest) reference, not three.
    unranked = estimate(spec.model_copy(update={"rank": None})).calls[-1].input_tokens
    assert calls[-1].input_tokens < unranked - 150
    # A client may not double a run's calls past the layer caps with peer ranking.
    policy = RunPolicy(trust_specs=True, base_urls=("http://127.0.0.1:*",))
    big = {
        "layers": [[model(f"m{i}", max_tokens=64) for i in range(8)] for _ in range(4)],
        "aggregator": model("agg", max_tokens=64),
    }
    policy.check_spec(big)
    with pytest.raises(SpecError, match="at most 33 model calls per run"):
        policy.check_spec({**big, "rank": {"top_k": 4}})


def test_the_cli_shows_rankings_and_the_early_stop(tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    with OpenAIServer() as server:
        server.set_behavior("judge", Behavior(content="B is best.\nRANKING: B > A > C"))
        model = lambda n: {"name": n, "model": f"openai:{n}", "base_url": server.base_url}  # noqa: E731
        layer = [model("a"), model("b"), model("c")]
        spec = {
            "layers": [layer, layer, layer],
            "aggregator": model("agg"),
            "rank": {"judge": model("judge"), "top_k": 2},
            "early_stop": {"similarity": 0.9},
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))

        def moa(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "langgraph_moa.cli", "--spec", str(path), *args]
            return subprocess.run(
                command, capture_output=True, text=True, timeout=60, env=os.environ
            )

        out = moa("--json", "Q?")
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert [r["layer"] for r in result["rankings"]] == [1, 2]
        assert result["rankings"][0]["rankers"][0]["reasons"] == "B is best."
        assert result["early_stop"]["layer"] == 2 and result["early_stop"]["layers_saved"] == 1
        assert [c["similarity"] for c in result["stop_checks"]] == [None, 1.0]
        assert "ranker" in {c["role"] for c in result["calls"]}
        progress = moa("Q?").stderr
        assert (
            "layer 1 ranked: kept" in progress
            and "layer 2: stopping early (similarity)" in progress
        )


def test_node_names_of_the_new_steps_parse():
    from langgraph_moa.graphs import names

    assert names.parse(names.ranker(2, "qwen")) == ("ranker", 2, "qwen")
    assert names.parse(names.rank(2)) == ("rank", 2, None)
    assert names.parse(names.judge(1, "gpt-4o")) == ("judge", 1, "gpt-4o")
    assert names.parse(names.stop(1)) == ("stop", 1, None)
    assert names.parse(names.WINDOW) == ("window", None, None)
    assert names.parse("layer_1/qwen") == ("proposer", 1, "qwen")


def test_moa_serve_extension_can_include_the_ranking():
    from langgraph_moa.serve import openai_api as oa

    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Q"}],
        "moa": {"include": ["rankings", "early_stop"]},
    }
    request = oa.parse_request(body, max_messages=10, max_tokens_cap=100)
    out = {"answer": "x", "calls": [], "rankings": [{"layer": 1}], "early_stop": None}
    completion = oa.completion("id", "m", out, request.moa.include if request.moa else [])
    assert completion["moa"] == {"rankings": [{"layer": 1}], "early_stop": None}
    with pytest.raises(oa.APIError, match="unknown item"):
        oa.parse_request(
            {**body, "moa": {"include": ["answers"]}}, max_messages=10, max_tokens_cap=100
        )


async def test_a_peer_whose_answer_failed_is_not_asked_to_rank(model, server, run):
    for name, ranking in (("a", "A > B > C"), ("b", "B > C > A"), ("c", "C > A > B")):
        server.set_behavior(name, Behavior(content=f"{name} ok. RANKING: {ranking}"))
    server.set_behavior("d", Behavior(always_status=401))
    spec = {
        "layers": [[model(n) for n in "abcd"]],
        "aggregator": model("agg"),
        "rank": {"top_k": 2},
    }
    out = await run(spec)
    assert len(server.log("d")) == 1  # its proposer call (401: not retried), no ranker call
    [ranking] = out["rankings"]
    assert [r["ranker"] for r in ranking["rankers"]] == [f"layer_1/rank/{n}" for n in "abc"]
    assert all(r["ok"] for r in ranking["rankers"]) and len(out["references"]) == 2
