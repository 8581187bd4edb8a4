"""``moa serve`` takes what OpenAI clients send: the sampling fields (each applied where the
guide says, dropped and reported for a model whose provider cannot take it), ``max_tokens``
bounding the answer only, conversations OpenAI accepts (system-only, a prefill, empty
content), ``GET /v1/models/{id}`` and OpenAI-shaped 404/405. Driven with the ``openai`` client
and raw HTTP; the fake upstream's log shows what each model was sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from test_serve import Served, _spec

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.graphs.state import Context
from langgraph_moa.models import sampling
from langgraph_moa.serve import create_app
from langgraph_moa.testing import Behavior, OpenAIServer

Q = [{"role": "user", "content": "Is 221 prime?"}]
SAMPLING = {
    "top_p": 0.5,
    "frequency_penalty": 0.25,
    "presence_penalty": -0.5,
    "logit_bias": {"1734": -100},
    "seed": 7,
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Behavior(latency=0.01)) as srv:
        yield srv


@pytest.fixture(scope="module")
def served(upstream: OpenAIServer) -> Iterator[Served]:
    reasoning = _spec(upstream.base_url, "thinker")
    reasoning["aggregator"] = {
        **reasoning["aggregator"],
        "name": "o3-mini",
        "model": "openai:o3-mini",
    }
    everyone = {**_spec(upstream.base_url, "everyone"), "request_sampling": "all"}
    specs = {
        "tiny": parse_spec(_spec(upstream.base_url)),
        "thinker": parse_spec(reasoning),
        "everyone": parse_spec(everyone),
    }
    with Served(create_app(specs, include_ui=False)) as s:
        yield s


@pytest.fixture
def client(served: Served, upstream: OpenAIServer) -> openai.OpenAI:
    upstream.reset()
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


def _sent(upstream: OpenAIServer) -> dict[str, dict[str, Any]]:
    """Model -> the fields it was sent (``max_tokens`` however the client spelled it)."""
    return {r["model"]: {**r["params"], "max_tokens": r["max_tokens"]} for r in upstream.log()}


def test_sampling_fields_reach_the_answer_and_seed_every_model(
    client: openai.OpenAI, upstream: OpenAIServer
) -> None:
    out = client.chat.completions.create(
        model="tiny",
        messages=Q,
        max_completion_tokens=3,
        temperature=0.2,
        user="u1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        parallel_tool_calls=True,
        n=1,
        **SAMPLING,  # type: ignore[arg-type]
    )
    assert out.choices[0].finish_reason == "length"  # the answer is cut at 3 tokens
    sent = _sent(upstream)
    assert {k: sent["agg"].get(k) for k in SAMPLING} == SAMPLING
    assert sent["agg"]["max_tokens"] == 3 and sent["agg"]["temperature"] == 0.2
    for proposer in ("a", "b"):  # proposers keep their spec's settings, but the seed
        assert sent[proposer]["seed"] == 7 and sent[proposer]["temperature"] == 0.2
        assert not {"top_p", "frequency_penalty", "presence_penalty", "logit_bias"} & set(
            sent[proposer]
        )
        assert sent[proposer]["max_tokens"] == 512  # the spec's own, not the answer's 3
    assert "moa" not in (out.model_extra or {})  # nothing dropped: no report


@pytest.mark.parametrize("served_model", ["tiny", "everyone"])
def test_a_spec_opts_its_proposers_in_with_request_sampling_all(
    client: openai.OpenAI, upstream: OpenAIServer, served_model: str
) -> None:
    """``request_sampling: all`` ("everyone"): the proposers are sent the request's sampling
    fields and max_tokens too, and their dropped settings are reported; the default
    ("tiny", ``answer``) keeps the proposers' own. stop and tools stay the answer's."""
    out = client.chat.completions.create(
        model=served_model,
        messages=Q,
        max_tokens=40,
        reasoning_effort="low",
        stop=["zzz"],
        **SAMPLING,  # type: ignore[arg-type]
    )
    sent, stops = _sent(upstream), {r["model"]: r["stop"] for r in upstream.log()}
    opted_in = served_model == "everyone"
    assert {k: sent["agg"].get(k) for k in SAMPLING} == SAMPLING
    assert sent["agg"]["max_tokens"] == 40 and stops["agg"] == ["zzz"]
    for proposer in ("a", "b"):
        fields = {k: sent[proposer].get(k) for k in SAMPLING}
        if opted_in:
            assert fields == SAMPLING and sent[proposer]["max_tokens"] == 40
        else:
            assert fields == {k: (7 if k == "seed" else None) for k in SAMPLING}
            assert sent[proposer]["max_tokens"] == 512
        assert stops[proposer] is None and "reasoning_effort" not in sent[proposer]
    dropped = {"agg": ["reasoning_effort"]}
    if opted_in:  # the proposers would have been sent it too: reported for them as well
        dropped = {"a": ["reasoning_effort"], "b": ["reasoning_effort"], **dropped}
    assert (out.model_extra or {})["moa"] == {"dropped_params": dropped}


def test_a_setting_a_provider_cannot_take_is_dropped_and_reported(
    client: openai.OpenAI, upstream: OpenAIServer
) -> None:
    out = client.chat.completions.create(model="tiny", messages=Q, reasoning_effort="low")
    assert out.choices[0].message.content == "agg says: Is 221 prime?"
    assert "reasoning_effort" not in _sent(upstream)["agg"]  # gpt-4o-like "agg" refuses it
    assert (out.model_extra or {})["moa"] == {"dropped_params": {"agg": ["reasoning_effort"]}}
    upstream.reset()
    out = client.chat.completions.create(model="thinker", messages=Q, reasoning_effort="low")
    assert _sent(upstream)["o3-mini"]["reasoning_effort"] == "low"  # a reasoning model takes it
    assert "moa" not in (out.model_extra or {})


def test_streamed_requests_carry_the_settings_and_the_report(
    client: openai.OpenAI, upstream: OpenAIServer
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=Q,
            stream=True,
            stream_options={"include_usage": True},
            reasoning_effort="high",
            top_p=0.9,
        )
    )
    assert chunks[-1].usage is not None
    last = [c for c in chunks if c.choices][-1]
    assert (last.model_extra or {})["moa"]["dropped_params"] == {"agg": ["reasoning_effort"]}
    assert _sent(upstream)["agg"]["top_p"] == 0.9 and "top_p" not in _sent(upstream)["a"]


def test_which_providers_take_which_settings() -> None:
    """``dropped`` is decided from the spec alone (no model is built): the local llama model
    takes no logit_bias or reasoning_effort, Anthropic only top_p, other providers none."""
    spec = parse_spec(
        {
            "layers": [[{"model": "local:smollm2", "name": "p"}, {"model": "groq:llama3"}]],
            "aggregator": {
                "model": "local:smollm2",
                "name": "agg",
                "fallback": {"model": "anthropic:claude-x", "name": "fb"},
            },
        }
    )
    run = Context(top_p=0.5, logit_bias={"1": 1}, reasoning_effort="low", seed=3)
    assert sampling.dropped(spec, run) == {
        "llama3": ["seed"],
        "agg": ["logit_bias", "reasoning_effort"],
        "fb": ["logit_bias", "reasoning_effort", "seed"],
    }
    assert sampling.dropped(spec, Context(seed=2**40)) == {
        "p": ["seed"],
        "llama3": ["seed"],
        "agg": ["seed"],
        "fb": ["seed"],
    }


@pytest.mark.parametrize(
    ("messages", "agg_sees"),
    [
        ([{"role": "system", "content": "Say hi."}], ["system"]),
        (
            [*Q, {"role": "assistant", "content": "No: 221 = 13 x"}],
            ["system", "user", "assistant"],
        ),
        ([{"role": "user", "content": ""}], ["system", "user"]),
        ([{"role": "developer", "content": "Be brief."}, *Q], ["system", "user"]),
    ],
    ids=["system-only", "prefill", "empty-content", "developer"],
)
def test_conversations_openai_accepts_are_answered(
    client: openai.OpenAI, upstream: OpenAIServer, messages: Any, agg_sees: list[str]
) -> None:
    out = client.chat.completions.create(model="tiny", messages=messages)
    assert out.choices[0].finish_reason == "stop"
    log = {r["model"]: r for r in upstream.log()}
    assert [m["role"] for m in log["agg"]["messages"]] == agg_sees  # references in a system turn
    assert log["agg"]["messages"][-1]["content"] == messages[-1]["content"] or agg_sees == [
        "system"
    ]


def test_errors_name_roles_as_openai_does(served: Served) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = {
        "model": "tiny",
        "messages": [*Q, {"role": "assistant", "content": None, "tool_calls": [call]}],
    }
    r = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "'assistant' message with tool_calls" in message and "'ai'" not in message


def test_model_by_id(client: openai.OpenAI) -> None:
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nope")
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/v1/nothing", 404, "Invalid URL (POST /v1/nothing)"),
        ("GET", "/v1/chat/completions", 405, "Invalid method for URL (GET /v1/chat/completions)"),
        ("DELETE", "/v1/models", 405, "Invalid method"),
        ("GET", "/nowhere", 404, "Invalid URL"),
    ],
)
def test_unknown_routes_and_methods_are_openai_shaped(
    served: Served, method: str, path: str, status: int, message: str
) -> None:
    # A POST carries JSON, as every client sends it (the guard answers 415 to anything else).
    body = {"json": {}} if method == "POST" else {}
    r = httpx.request(method, f"{served.url}{path}", timeout=10, **body)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["message"].startswith(message) and error["type"] == "invalid_request_error"


async def test_the_answers_max_tokens_counts_against_max_cost(server: Any, model: Any) -> None:
    """A request's max_tokens may raise the answer's limit: the cost guard prices it so."""
    from langgraph_moa.errors import CostLimitError
    from langgraph_moa.graphs.builder import create_moa

    price = {"input": 1.0, "output": 1000.0}  # USD per 1M tokens: 0.001 per output token
    spec = {
        "layers": [[model("a", price=price, max_tokens=10)]],
        "aggregator": model("agg", price=price, max_tokens=10),
        "max_cost": 0.5,
    }
    graph = create_moa(spec)
    question = {"messages": [("user", "Is 221 prime?")]}
    out = await graph.ainvoke(question, context=Context(answer_max_tokens=5))
    assert out["answer"]
    server.reset()
    with pytest.raises(CostLimitError, match="aggregator"):
        await graph.ainvoke(question, context=Context(answer_max_tokens=1000))
    assert [r["model"] for r in server.log()] == ["a"]  # stopped before the answer
