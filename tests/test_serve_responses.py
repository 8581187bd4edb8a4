"""``POST /v1/responses`` with the clients that speak it: the ``openai`` SDK's
``responses.create`` / ``responses.stream`` / ``responses.parse``, ``ChatOpenAI`` in
Responses mode (plain, streamed, tools, structured output), and raw HTTP for what a
stateless server refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel
from test_serve import WEATHER_TOOL, Served, _spec

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.serve import create_app
from langgraph_moa.testing import Behavior, OpenAIServer

FUNCTION_TOOL = {"type": "function", **WEATHER_TOOL["function"]}  # the Responses tool shape


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Behavior(latency=0.01)) as srv:
        yield srv


@pytest.fixture(scope="module")
def served(upstream: OpenAIServer) -> Iterator[Served]:
    specs = {"tiny": parse_spec(_spec(upstream.base_url))}
    with Served(create_app(specs, include_ui=False)) as s:
        yield s


@pytest.fixture
def client(served: Served, upstream: OpenAIServer) -> openai.OpenAI:
    upstream.reset()
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def agg_behaves(upstream: OpenAIServer) -> Iterator[Any]:
    def behave(behavior: Behavior) -> None:
        upstream.set_behavior("agg", behavior)

    yield behave
    upstream.set_behavior("agg", None)


def test_create_with_instructions_and_usage(client: openai.OpenAI, upstream: OpenAIServer) -> None:
    out = client.responses.create(
        model="tiny",
        instructions="Answer briefly.",
        input="Is 221 prime?",
        temperature=0.3,
        top_p=0.5,
        max_output_tokens=100,
    )
    assert out.status == "completed" and out.output_text == "agg says: Is 221 prime?"
    log = {r["model"]: r for r in upstream.log()}
    assert out.usage is not None and out.usage.output_tokens == sum(
        r["completion_tokens"] for r in log.values()
    )
    assert [m["role"] for m in log["a"]["messages"]] == ["system", "user"]
    assert log["agg"]["params"]["top_p"] == 0.5 and log["agg"]["max_tokens"] == 100
    assert log["a"]["max_tokens"] == 512  # the references keep their spec's limit


def test_input_items_and_a_cut_answer(client: openai.OpenAI) -> None:
    out = client.responses.create(
        model="tiny",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Tell me a long story"}]},
        ],
        max_output_tokens=2,
    )
    assert out.status == "incomplete" and out.incomplete_details is not None
    assert out.incomplete_details.reason == "max_output_tokens"


def test_stream_events(client: openai.OpenAI) -> None:
    with client.responses.stream(model="tiny", input="Stream it") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.completed"
    assert final.output_text == "agg says: Stream it" and final.usage is not None


def test_function_tools_and_their_outputs(
    client: openai.OpenAI, upstream: OpenAIServer, agg_behaves: Any
) -> None:
    agg_behaves(Behavior(latency=0.01, tool_calls=True))
    question = {"role": "user", "content": "Weather in 'Oslo'?"}
    out = client.responses.create(model="tiny", input=[question], tools=[FUNCTION_TOOL])
    call = out.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert {r["model"]: r["tools"] for r in upstream.log()}["agg"] == ["get_weather"]
    upstream.reset()
    follow = [
        question,
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    out = client.responses.create(model="tiny", input=follow, tools=[FUNCTION_TOOL])
    assert out.output_text == "agg says: Weather in 'Oslo'?"
    agg = {r["model"]: r for r in upstream.log()}["agg"]
    assert [m["role"] for m in agg["messages"]][-2:] == ["assistant", "tool"]


def test_streamed_function_call(client: openai.OpenAI, agg_behaves: Any) -> None:
    agg_behaves(Behavior(latency=0.01, tool_calls=True))
    with client.responses.stream(
        model="tiny", input="Weather in 'Rome'?", tools=[FUNCTION_TOOL], tool_choice="required"
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Rome"}


class City(BaseModel):
    city: str


def test_structured_output_with_parse(
    client: openai.OpenAI, upstream: OpenAIServer, agg_behaves: Any
) -> None:
    agg_behaves(Behavior(latency=0.01, content='{"city": "Oslo"}'))
    out = client.responses.parse(model="tiny", input="Where?", text_format=City)
    assert out.output_parsed == City(city="Oslo")
    fmt = {r["model"]: r["response_format"] for r in upstream.log()}
    assert fmt["agg"]["type"] == "json_schema" and fmt["a"] is None


def test_chat_openai_in_responses_mode(served: Served, agg_behaves: Any) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="tiny", base_url=f"{served.url}/v1", api_key="unused", use_responses_api=True
    )
    assert llm.invoke("Hello").text == "agg says: Hello"
    assert "".join(c.text for c in llm.stream("Hi there")) == "agg says: Hi there"
    agg_behaves(Behavior(latency=0.01, tool_calls=True))
    call = llm.bind_tools([WEATHER_TOOL]).invoke("Weather in 'Oslo'?").tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Oslo"}
    agg_behaves(Behavior(latency=0.01, content='{"city": "Oslo"}'))
    structured = llm.with_structured_output(City, method="json_schema").invoke("Where?")
    assert structured == City(city="Oslo")


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "stores no responses"),
        ({"store": True}, "store", "store: false"),
        ({"conversation": "conv_1"}, "conversation", "keeps no conversations"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "only function tools"),
        ({"input": [{"type": "image_generation_call"}]}, "input[0].type", "not supported"),
        ({"frob": 1}, "frob", "not supported"),
        ({"max_output_tokens": 0}, "max_output_tokens", "greater than or equal to 1"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort", "one of none"),
    ],
)
def test_what_a_stateless_server_refuses(
    served: Served, extra: dict[str, Any], param: str, words: str
) -> None:
    body = {"model": "tiny", "input": "hi", **extra}
    r = httpx.post(f"{served.url}/v1/responses", json=body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"], error


def test_a_streamed_answer_cut_at_its_limit_ends_incomplete(client: openai.OpenAI) -> None:
    """As OpenAI: the last event is ``response.incomplete`` (the SDK's helper then has no
    "final response": it waits for ``response.completed`` only)."""
    with client.responses.stream(
        model="tiny", input="Tell me a long story", max_output_tokens=2
    ) as stream:
        events = list(stream)
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete" and last.response.output_text == "agg says:"
    assert last.response.incomplete_details is not None


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_mixture(client: openai.OpenAI, upstream: OpenAIServer, stream: bool) -> None:
    """A 502 the SDK does not replay; streamed, an ``error`` event the SDK raises."""
    upstream.set_behavior("agg", Behavior(always_status=500))
    try:
        with pytest.raises(openai.APIError) as failed:
            if stream:
                with client.responses.stream(model="tiny", input="hi") as events:
                    for _ in events:
                        pass
            else:
                openai.OpenAI(base_url=str(client.base_url), api_key="unused").responses.create(
                    model="tiny", input="hi"
                )  # default max_retries
    finally:
        upstream.set_behavior("agg", None)
    assert "upstream model agg failed" in str(failed.value)
    assert [r["model"] for r in upstream.log()].count("agg") == 1  # never replayed


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_mixture_reports_its_calls_when_asked(
    served: Served, upstream: OpenAIServer, stream: bool
) -> None:
    """``moa.include: ["calls"]``: the error (the 502's body, the stream's ``error`` event)
    carries every call the run made, the failed aggregator's included."""
    upstream.set_behavior("agg", Behavior(always_status=500))
    body = {"model": "tiny", "input": "hi", "stream": stream, "moa": {"include": ["calls"]}}
    try:
        r = httpx.post(f"{served.url}/v1/responses", json=body, timeout=30)
    finally:
        upstream.set_behavior("agg", None)
    if stream:
        events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
        out = events[-1]
        assert out["type"] == "error"
    else:
        assert r.status_code == 502
        out = r.json()
    calls = out["moa"]["calls"]
    assert [(c["model"], c["status"]) for c in calls] == [
        ("a", "ok"),
        ("b", "ok"),
        ("agg", "failed"),
    ]
