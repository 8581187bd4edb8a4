"""ChatMoA: a mixture as a LangChain chat model, against the test server or per-name fakes.

The server's request log is the witness: which model got which messages, tools, stop
sequences and settings, streamed or not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import make_model
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from langgraph_moa import ChatMoA
from langgraph_moa.errors import (
    InvalidInputError,
    LayerFailedError,
    SpecError,
    ToolCallingUnsupportedError,
)
from langgraph_moa.graphs.state import Context
from langgraph_moa.nodes.tools import tool_turns_as_text
from langgraph_moa.testing import Behavior, OpenAIServer, RecordingChatModel
from langgraph_moa.testing.behavior import tool_call


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return f"It's sunny in {location}."


@tool
def magic_function(input: int) -> int:
    """Apply a magic function to an input."""
    return input + 2


def spec(model: Any, **extra: Any) -> dict[str, Any]:
    return {
        "name": "chat",
        "layers": [[model("p1"), model("p2")]],
        "aggregator": model("agg"),
        **extra,
    }


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    """The test server on a thread of its own: sync calls (invoke, stream, an agent) block
    the test's thread, so the server cannot share the test's event loop here."""
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def model(server: OpenAIServer) -> Callable[..., dict[str, Any]]:
    return lambda name, **kw: make_model(server.base_url, name, **kw)


@pytest.fixture
def llm(server: OpenAIServer, model: Any) -> ChatMoA:
    server.set_behavior("agg", Behavior(tool_calls=True))
    return ChatMoA(spec=spec(model))


def by_model(server: OpenAIServer) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in server.log():
        out.setdefault(record["model"], []).append(record)
    return out


# --------------------------------------------------------------------------- one run


async def test_ainvoke_is_one_mixture_run_with_summed_usage_and_its_record(
    llm: ChatMoA, server: OpenAIServer
) -> None:
    answer = await llm.ainvoke("What is MoA?")
    assert answer.content == "agg says: What is MoA?"
    log = server.log()
    assert sorted(r["model"] for r in log) == ["agg", "p1", "p2"]
    assert not any(r["stream"] for r in log)  # nobody read tokens: plain requests
    # usage = every call of the run, as the server counted it
    assert answer.usage_metadata == {
        "input_tokens": sum(r["prompt_tokens"] for r in log),
        "output_tokens": sum(r["completion_tokens"] for r in log),
        "total_tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in log),
    }
    meta = answer.response_metadata
    assert meta["model_name"] == "moa:chat" and llm.model_name == "moa:chat"
    assert meta["finish_reason"] == "stop"
    moa = meta["moa"]
    assert moa["references"] == ["p1 says: What is MoA?", "p2 says: What is MoA?"]
    assert [c["node"] for c in moa["calls"]][-1] == "aggregator"
    assert {c["node"] for c in moa["calls"]} == {"layer_1/p1", "layer_1/p2", "aggregator"}
    agg = next(r for r in log if r["model"] == "agg")
    assert moa["usage_by_model"]["agg"] == {
        "model_id": "openai:agg",
        "calls": 1,
        "input_tokens": agg["prompt_tokens"],
        "output_tokens": agg["completion_tokens"],
        "total_tokens": agg["prompt_tokens"] + agg["completion_tokens"],
    }


def test_invoke_and_batch_answer_each_question(llm: ChatMoA, server: OpenAIServer) -> None:
    assert llm.invoke("one?").content == "agg says: one?"
    answers = llm.batch(["two?", "three?", "four?"])
    assert [a.content for a in answers] == ["agg says: two?", "agg says: three?", "agg says: four?"]
    assert server.call_count("agg") == 4 and server.call_count("p1") == 4


async def test_abatch_answers_each_question(llm: ChatMoA) -> None:
    answers = await llm.abatch([f"q{i}?" for i in range(4)])
    assert [a.content for a in answers] == [f"agg says: q{i}?" for i in range(4)]
    assert all(a.usage_metadata and a.usage_metadata["total_tokens"] > 0 for a in answers)


async def test_per_proposer_fakes_answer_deterministically() -> None:
    fakes = {
        "a": RecordingChatModel(name="a", reply=lambda m: "A thinks 4"),
        "b": RecordingChatModel(name="b", reply=lambda m: "B thinks 5"),
        "agg": RecordingChatModel(name="agg", reply=lambda m: "It is 4."),
    }
    url = "http://127.0.0.1:9/v1"  # never called: the fakes answer
    spec = {
        "layers": [[make_model(url, "a"), make_model(url, "b")]],
        "aggregator": make_model(url, "agg"),
    }
    llm = ChatMoA(spec=spec, chat_models=fakes)
    answer = await llm.ainvoke([HumanMessage("2+2?")])
    assert answer.content == "It is 4."
    assert answer.response_metadata["moa"]["references"] == ["A thinks 4", "B thinks 5"]
    system = fakes["agg"].received[0][0]  # the references reach the aggregator only
    assert "A thinks 4" in system.text and "B thinks 5" in system.text
    assert all("A thinks" not in m.text for m in fakes["b"].received[0])


def test_lcel_chain(llm: ChatMoA) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "Tell {x}")])
    chain = prompt | llm | StrOutputParser()
    assert chain.invoke({"x": "a joke"}) == "agg says: Tell a joke"


# --------------------------------------------------------------------------- streaming


def test_stream_yields_the_answer_tokens_only(llm: ChatMoA, server: OpenAIServer) -> None:
    chunks = list(llm.stream("Hello there"))
    text = "".join(c.text for c in chunks)
    assert text == "agg says: Hello there"
    assert len([c for c in chunks if c.text]) > 1  # token by token, not one blob
    assert "p1" not in text and "p2" not in text
    last = chunks[-1]
    assert last.chunk_position == "last" and last.response_metadata["model_name"] == "moa:chat"
    assert last.usage_metadata and last.usage_metadata["input_tokens"] > 0
    assert sum(bool(c.usage_metadata) for c in chunks) == 1  # usage once, for the whole run
    streamed = {r["model"]: r["stream"] for r in server.log()}
    assert streamed == {"p1": False, "p2": False, "agg": True}  # proposers: plain requests


async def test_astream_matches_ainvoke(llm: ChatMoA) -> None:
    full = None
    async for chunk in llm.astream("Hi"):
        full = chunk if full is None else full + chunk
    assert full is not None and full.text == "agg says: Hi"
    assert full.response_metadata["moa"]["references"] == ["p1 says: Hi", "p2 says: Hi"]


# --------------------------------------------------------------------------- parameters


def test_standard_params_map_onto_the_run(server: OpenAIServer, model: Any) -> None:
    llm = ChatMoA(
        spec=spec(model),
        temperature=0.2,
        max_tokens=64,
        timeout=7.0,
        max_retries=4,
        stop=["STOP"],
    )
    assert {m.timeout for m in llm.moa_spec.models()} == {7.0}
    assert {m.retry.max_attempts for m in llm.moa_spec.models()} == {5}
    llm.invoke("hi")
    for record in server.log():  # temperature: every model; max_tokens: the answer's only
        assert record["temperature"] == 0.2
        assert (record["max_tokens"] == 64) == (record["model"] == "agg")
    stops = {r["model"]: r["stop"] for r in server.log()}
    assert stops == {"p1": None, "p2": None, "agg": ["STOP"]}  # the answer's own stop
    server.reset()
    llm.invoke("hi", stop=["END"])  # a call's stop wins
    assert by_model(server)["agg"][0]["stop"] == ["END"]


def test_spec_file_preset_and_bad_values(tmp_path: Any, model: Any) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(spec(model, name="filed")))
    assert ChatMoA(spec=str(path)).model_name == "moa:filed"
    assert ChatMoA(preset="moa-lite").model_name == "moa:moa-lite"
    assert ChatMoA(preset="moa-lite", model="my-moa").model_name == "my-moa"
    with pytest.raises(InvalidInputError, match="temperature"):
        ChatMoA(spec=spec(model), temperature=3)
    with pytest.raises(SpecError, match="timeout"):
        ChatMoA(spec=spec(model), timeout=-1)
    with pytest.raises(SpecError, match="unknown preset"):
        ChatMoA(preset="nope")
    with pytest.raises(InvalidInputError, match="unsupported call parameter 'foo'"):
        ChatMoA(spec=spec(model)).invoke("hi", foo=1)


def test_a_cache_true_spec_reuses_answers(
    server: OpenAIServer, model: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    llm = ChatMoA(spec=spec(model, cache=True))
    first = llm.invoke("same?")
    assert llm.invoke("same?").content == first.content
    assert server.call_count("p1") == 1 and server.call_count("agg") == 1
    tools = llm.bind_tools([get_weather])
    tools.invoke("same?")  # tools change the answer, not what the proposers are asked
    assert server.call_count("agg") == 2 and server.call_count("p1") == 1


def test_errors_propagate_as_moa_errors(server: OpenAIServer, model: Any) -> None:
    for name in ("p1", "p2"):
        server.set_behavior(name, Behavior(always_status=500))
    llm = ChatMoA(spec=spec(model))
    with pytest.raises(LayerFailedError, match="layer 1 failed") as err:
        llm.invoke("hi")
    assert set(err.value.failures) == {"p1", "p2"}
    with pytest.raises(LayerFailedError):
        list(llm.stream("hi"))


def test_callbacks_see_one_chat_model_run(llm: ChatMoA) -> None:
    """Usage counters must not count the mixture's calls twice (ChatMoA's usage sums them)."""
    counter = UsageMetadataCallbackHandler()
    answer = llm.invoke("hi", config={"callbacks": [counter]})
    assert counter.usage_metadata == {"moa:chat": answer.usage_metadata}


# --------------------------------------------------------------------------- tools


async def test_tools_reach_the_aggregator_only(llm: ChatMoA, server: OpenAIServer) -> None:
    bound = llm.bind_tools([magic_function, get_weather], tool_choice="any")
    answer = await bound.ainvoke("What is magic_function(3)?")
    assert isinstance(answer, AIMessage)
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("magic_function", {"input": 3})]
    assert answer.response_metadata["finish_reason"] == "tool_calls"
    log = by_model(server)
    assert log["agg"][0]["tools"] == ["magic_function", "get_weather"]
    assert log["agg"][0]["tool_choice"] == "required"  # "any", as the OpenAI client maps it
    assert log["p1"][0]["tools"] is None and log["p2"][0]["tools"] is None


def test_streamed_tool_call_arrives_as_tool_call_chunks(llm: ChatMoA, server: OpenAIServer) -> None:
    bound = llm.bind_tools([magic_function], tool_choice="magic_function")
    chunks = list(bound.stream("Use it on 7"))
    assert any(c.tool_call_chunks for c in chunks)
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("magic_function", {"input": 7})]
    agg = by_model(server)["agg"][0]
    assert agg["stream"] and agg["tool_choice"] == {
        "type": "function",
        "function": {"name": "magic_function"},
    }


def test_proposers_see_tool_turns_as_text(llm: ChatMoA, server: OpenAIServer) -> None:
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage(
            "Let me check.",
            tool_calls=[{"name": "get_weather", "args": {"location": "Paris"}, "id": "c1"}],
        ),
        ToolMessage("It's sunny in Paris.", tool_call_id="c1"),
    ]
    answer = llm.bind_tools([get_weather]).invoke(history)
    assert answer.content and not answer.tool_calls  # after the result: a text answer
    log = by_model(server)
    agg_messages = log["agg"][0]["messages"]
    assert [m["role"] for m in agg_messages][-3:] == ["user", "assistant", "tool"]
    assert agg_messages[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    for name in ("p1", "p2"):
        messages = log[name][0]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert not any("tool_calls" in m for m in messages)
        assert messages[1]["content"] == (
            'Let me check.\n[called tool get_weather with {"location": "Paris"}]'
        )
        assert messages[2]["content"] == "[tool get_weather returned]: It's sunny in Paris."


def test_the_fallback_answer_gets_the_tools(server: OpenAIServer, model: Any) -> None:
    """A failed layer sends the run to the aggregator's fallback, which answers the user
    directly: it is an answer node, so it is handed the tools."""
    for name in ("p1", "p2"):
        server.set_behavior(name, Behavior(always_status=500))
    server.set_behavior("backup", Behavior(tool_calls=True))
    aggregator = model("agg", fallback=model("backup"))
    llm = ChatMoA(spec={"layers": [[model("p1"), model("p2")]], "aggregator": aggregator})
    answer = llm.bind_tools([get_weather]).invoke("Weather in 'Oslo'?")
    assert answer.tool_calls[0]["args"] == {"location": "Oslo"}
    assert "layer 1 failed" in answer.response_metadata["moa"]["fallback_reason"]
    log = by_model(server)
    assert log["backup"][0]["tools"] == ["get_weather"] and "agg" not in log


def test_with_structured_output(llm: ChatMoA) -> None:
    class Weather(BaseModel):
        """A weather report."""

        city: str
        degrees: int

    out = llm.with_structured_output(Weather).invoke("'Oslo' is at 12 degrees")
    assert out == Weather(city="Oslo", degrees=12)


def test_an_answer_cut_at_max_tokens_says_so(server: OpenAIServer, model: Any) -> None:
    cut = ChatMoA(spec=spec(model), max_tokens=2).invoke("Tell me a long story please")
    assert cut.response_metadata["finish_reason"] == "length"
    whole = ChatMoA(spec=spec(model)).invoke("Tell me a long story please")
    assert whole.response_metadata["finish_reason"] == "stop"
    streamed = [c for c in ChatMoA(spec=spec(model), max_tokens=2).stream("Tell me a story")]
    assert streamed[-1].response_metadata["finish_reason"] == "length"


JSON_OBJECT = {"type": "json_object"}


def test_a_bound_response_format_reaches_the_aggregator_only(
    server: OpenAIServer, model: Any
) -> None:
    server.set_behavior("agg", Behavior(content='{"city": "Oslo"}'))
    llm = ChatMoA(spec=spec(model)).bind(response_format=JSON_OBJECT)
    assert json.loads(llm.invoke("Where?").content) == {"city": "Oslo"}
    assert json.loads("".join(c.text for c in llm.stream("Where?"))) == {"city": "Oslo"}
    log = by_model(server)
    assert [r["response_format"] for r in log["agg"]] == [JSON_OBJECT, JSON_OBJECT]
    assert {str(r["response_format"]) for r in log["p1"] + log["p2"]} == {"None"}


def test_a_response_format_needs_openai_compatible_answer_models(model: Any) -> None:
    from langgraph_moa.graphs.builder import create_moa

    proposer = RecordingChatModel(name="p1")
    local = spec(model) | {"aggregator": {"name": "agg", "model": "local:smollm2"}}
    graph = create_moa(local, chat_models={"p1": proposer, "p2": RecordingChatModel(name="p2")})
    with pytest.raises(InvalidInputError, match=r"context.response_format: .*agg \(local"):
        graph.invoke({"messages": [("user", "hi")]}, context=Context(response_format=JSON_OBJECT))
    assert proposer.received == []  # refused before any model was called


def test_bind_tools_refuses_an_aggregator_that_cannot_call_tools(model: Any) -> None:
    with pytest.raises(ToolCallingUnsupportedError, match=r"local:smollm2.*cannot call tools"):
        ChatMoA(preset="local").bind_tools([get_weather])
    fake = {"agg": RecordingChatModel(name="agg")}  # a chat model without bind_tools
    with pytest.raises(ToolCallingUnsupportedError, match="agg"):
        ChatMoA(spec=spec(model), chat_models=fake).bind_tools([get_weather])


def test_a_run_offered_tools_checks_its_answer_models_before_any_call(model: Any) -> None:
    from langgraph_moa.graphs.builder import create_moa

    proposer = RecordingChatModel(name="p1")
    fakes = {"p1": proposer, "p2": RecordingChatModel(name="p2"), "agg": RecordingChatModel()}
    graph = create_moa(spec(model), chat_models=fakes)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(ToolCallingUnsupportedError):
        graph.invoke({"messages": [("user", "hi")]}, context=Context(tools=tools))
    assert proposer.received == []


def test_agent_loop_calls_a_tool_through_chatmoa(llm: ChatMoA, server: OpenAIServer) -> None:
    from langchain.agents import create_agent

    agent = create_agent(llm, tools=[get_weather])
    out = agent.invoke({"messages": [("user", "What is the weather in 'Oslo'?")]})
    kinds = [m.type for m in out["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"]
    assert out["messages"][2].content == "It's sunny in Oslo."
    assert out["messages"][-1].content == "agg says: What is the weather in 'Oslo'?"
    assert server.call_count("agg") == 2 and server.call_count("p1") == 2  # two MoA turns
    second = by_model(server)["p1"][1]["messages"]
    result = "[tool get_weather returned]: It's sunny in Oslo."
    assert second[-1] == {"role": "user", "content": result}


async def test_async_agent_streams_through_chatmoa(llm: ChatMoA, server: OpenAIServer) -> None:
    from langchain.agents import create_agent

    agent = create_agent(llm, tools=[get_weather])
    text = ""
    async for chunk, meta in agent.astream(
        {"messages": [("user", "Weather in 'Lima'?")]}, stream_mode="messages"
    ):
        assert meta["langgraph_node"] in ("model", "tools")
        if meta["langgraph_node"] == "model":
            text += chunk.text
    assert text == "agg says: Weather in 'Lima'?"
    assert [r["stream"] for r in by_model(server)["agg"]] == [True, True]


async def test_the_graph_takes_tools_from_its_context(server: OpenAIServer, model: Any) -> None:
    """Any face can offer tools: they are part of the run's Context, not of ChatMoA."""
    from langgraph_moa.graphs.builder import create_moa

    server.set_behavior("agg", Behavior(tool_calls=True))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    out = await create_moa(spec(model)).ainvoke(
        {"messages": [("user", "look it up")]}, context=Context(tools=tools)
    )
    assert out["messages"][-1].tool_calls[0]["name"] == "lookup"
    assert out["answer"] == ""


def test_agent_structured_response_through_the_aggregator(
    llm: ChatMoA, server: OpenAIServer
) -> None:
    from langchain.agents import create_agent

    class Weather(BaseModel):
        city: str
        degrees: int

    agent = create_agent(llm, tools=[], response_format=Weather)
    out = agent.invoke({"messages": [("user", "'Oslo' is 12 degrees")]})
    assert out["structured_response"] == Weather(city="Oslo", degrees=12)
    log = by_model(server)
    assert log["agg"][0]["tools"] == ["Weather"] and log["p1"][0]["tools"] is None


def test_agent_stream_shows_only_the_agents_own_nodes(llm: ChatMoA) -> None:
    """ChatMoA inside a graph is one model call: its inner nodes never leak into the
    outer graph's messages stream, checkpoints or namespaces."""
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    agent = create_agent(llm, tools=[get_weather], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    nodes = set()
    text = ""
    for chunk, meta in agent.stream(
        {"messages": [("user", "Weather in 'Rome'?")]}, config, stream_mode="messages"
    ):
        nodes.add(meta["langgraph_node"])
        if meta["langgraph_node"] == "model":
            text += chunk.text
    assert nodes == {"model", "tools"}
    assert text.endswith("agg says: Weather in 'Rome'?")
    history = agent.get_state_history(config)
    namespaces = {c.config["configurable"]["checkpoint_ns"] for c in history}
    assert namespaces == {""}


# --------------------------------------------------------------------------- pieces


def test_tool_turns_as_text_leaves_no_orphans() -> None:
    calls = [
        {"name": "a", "args": {"x": 1}, "id": "1"},
        {"name": "b", "args": {}, "id": "2"},
    ]
    messages = [
        HumanMessage("q"),
        AIMessage("", tool_calls=calls),
        ToolMessage("r1", tool_call_id="1"),
        ToolMessage("boom", tool_call_id="2", status="error"),
        AIMessage("done"),
        HumanMessage("next"),
    ]
    out = tool_turns_as_text(messages)
    assert [(m.type, m.text) for m in out] == [
        ("human", "q"),
        ("ai", '[called tool a with {"x": 1}]\n[called tool b with {}]'),
        ("human", "[tool a returned]: r1\n[tool b returned an error]: boom"),
        ("ai", "done"),
        ("human", "next"),
    ]
    assert not any(getattr(m, "tool_calls", None) for m in out)
    plain = [HumanMessage("hi")]
    assert tool_turns_as_text(plain) is plain


def test_context_refuses_bad_tools_and_stop() -> None:
    with pytest.raises(InvalidInputError, match=r"context.tools\[0\]"):
        Context(tools=[{"name": "no-type"}])
    with pytest.raises(InvalidInputError, match="context.tool_choice"):
        Context(tool_choice="any")
    with pytest.raises(InvalidInputError, match="context.stop"):
        Context(stop=["x"] * 5)
    with pytest.raises(InvalidInputError, match=r"context.response_format:"):
        Context(response_format={"type": "yaml"})
    with pytest.raises(InvalidInputError, match=r"context.response_format.json_schema:"):
        Context(response_format={"type": "json_schema", "json_schema": {"name": "has space"}})
    with pytest.raises(InvalidInputError, match="larger than"):
        big = {"type": "object", "description": "x" * 70_000}
        Context(
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": big}}
        )


def test_server_tool_call_rules() -> None:
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}},
        {
            "type": "function",
            "function": {
                "name": "g",
                "parameters": {
                    "properties": {"n": {"type": "integer"}, "s": {"type": "string"}},
                    "required": ["n", "s"],
                },
            },
        },
    ]
    user = {"role": "user", "content": "call g on 42 for 'x y'"}
    assert tool_call({"messages": [user], "tools": tools}) == ("g", '{"n": 42, "s": "x y"}')
    forced = {"type": "function", "function": {"name": "f"}}
    assert tool_call({"messages": [user], "tools": tools, "tool_choice": forced}) == ("f", "{}")
    assert tool_call({"messages": [user], "tools": tools, "tool_choice": "none"}) is None
    after = [user, {"role": "tool", "content": "1", "tool_call_id": "c"}]
    assert tool_call({"messages": after, "tools": tools}) is None
    assert tool_call({"messages": after, "tools": tools, "tool_choice": "required"}) is not None
    assert tool_call({"messages": [user]}) is None


def test_sampling_parameters_reach_the_answer_and_bind_overrides_them(
    server: OpenAIServer, model: Any
) -> None:
    """As ``moa serve``'s request fields: top_p & co. for the answer, seed for every model;
    a setting the answer model cannot take is dropped and named in the metadata."""
    llm = ChatMoA(spec=spec(model), top_p=0.5, seed=3, presence_penalty=1.0, reasoning_effort="low")
    out = llm.bind(top_p=0.25, max_tokens=50).invoke("hi")
    sent = {r["model"]: {**r["params"], "max_tokens": r["max_tokens"]} for r in server.log()}
    assert sent["agg"]["top_p"] == 0.25 and sent["agg"]["presence_penalty"] == 1.0
    assert sent["agg"]["max_tokens"] == 50 and sent["agg"]["seed"] == 3
    assert (
        sent["p1"]["seed"] == 3
        and "top_p" not in sent["p1"]
        and "presence_penalty" not in sent["p1"]
    )
    assert "reasoning_effort" not in sent["agg"]  # "agg" is no OpenAI reasoning model
    assert out.response_metadata["moa"]["dropped_params"] == {"agg": ["reasoning_effort"]}
    plain = ChatMoA(spec=spec(model)).invoke("hi", reasoning_effort="high")  # a call's own
    assert plain.response_metadata["moa"]["dropped_params"] == {"agg": ["reasoning_effort"]}
    assert "dropped_params" not in ChatMoA(spec=spec(model)).invoke("hi").response_metadata["moa"]
    with pytest.raises(InvalidInputError, match=r"ChatMoA\.top_p: must be a number from 0 to 1"):
        ChatMoA(spec=spec(model), top_p=3)


@pytest.mark.parametrize("scope", ["answer", "all"])
def test_request_sampling_all_sends_the_parameters_to_the_proposers_too(
    server: OpenAIServer, model: Any, scope: str
) -> None:
    """A spec's ``request_sampling``: ``answer`` (the default) keeps the proposers' own
    settings, ``all`` sends them ChatMoA's top_p & co. and max_tokens as well."""
    llm = ChatMoA(spec=spec(model, request_sampling=scope), top_p=0.5, frequency_penalty=0.5)
    llm.invoke("hi", max_tokens=30, logit_bias={"12": 5})
    sent = {r["model"]: {**r["params"], "max_tokens": r["max_tokens"]} for r in server.log()}
    wanted = {"top_p": 0.5, "frequency_penalty": 0.5, "logit_bias": {"12": 5}, "max_tokens": 30}
    assert {k: sent["agg"].get(k) for k in wanted} == wanted
    for proposer in ("p1", "p2"):
        got = {k: sent[proposer].get(k) for k in wanted}
        own = {"top_p": None, "frequency_penalty": None, "logit_bias": None, "max_tokens": 512}
        assert got == (wanted if scope == "all" else own)
