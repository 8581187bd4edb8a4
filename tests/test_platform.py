"""LangGraph platform integration: server factories, streaming, embedding, tracing metadata.

Fast tests (a few seconds in all) against the in-process fake OpenAI server (``server`` and
``model`` fixtures from conftest). ``test_langgraph_dev.py`` runs the real ``langgraph dev``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command
from langgraph_sdk.runtime import _ExecutionRuntime, _ReadRuntime
from typing_extensions import TypedDict

from langgraph_moa.errors import MissingAPIKeyError, SpecError
from langgraph_moa.graphs import studio
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.graphs.spec import load_preset, preset_names
from langgraph_moa.graphs.state import Context
from langgraph_moa.testing import Behavior

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What is 2+2?"
AGGREGATE_MARK = "Responses from models:"
"""The aggregate prompt's last line: present in layer-2+ and aggregator requests only."""


def build(factory: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a (coroutine) graph factory as the server does, from a test with no loop."""
    return asyncio.run(factory(*args, **kwargs))


def two_layer_spec(model, **extra: Any) -> dict[str, Any]:
    return {
        "layers": [[model("a"), model("b")], [model("a"), model("b")]],
        "aggregator": model("agg"),
        **extra,
    }


def proposer_nodes(graph) -> set[str]:
    return {n for n in graph.nodes if n.startswith("layer_") and "/" in n and "aggregate" not in n}


@pytest.fixture
def trusted(monkeypatch, server) -> None:
    """The operator accepts whole client specs aimed at the test server (the run policy)."""
    monkeypatch.setenv("MOA_TRUST_RUN_SPECS", "1")
    monkeypatch.setenv("MOA_RUN_BASE_URLS", server.base_url)


def execution(context: Any) -> _ExecutionRuntime:
    return _ExecutionRuntime(
        access_context="threads.create_run", store=InMemoryStore(), context=context
    )


# --------------------------------------------------------------------------- langgraph.json


def test_langgraph_json_is_valid_and_registers_factories():
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["$schema"] == "https://langgra.ph/schema.json"
    assert config["dependencies"] == ["."]
    assert config["python_version"] == "3.11"
    assert set(config["graphs"]) >= {"moa", "moa_local"}
    for graph_id, target in config["graphs"].items():
        path, _, name = target.partition(":")
        assert (ROOT / path).is_file()
        assert callable(getattr(studio, name)), graph_id
    cli_config = pytest.importorskip("langgraph_cli.config")
    validated = cli_config.validate_config_file(ROOT / "langgraph.json")
    assert validated["graphs"] == config["graphs"]
    # The server classifies them as (config, runtime: ServerRuntime) factories.
    factory_utils = pytest.importorskip("langgraph_api._factory_utils")
    for fn in (studio.moa, studio.moa_local):
        kwargs = factory_utils._classify_factory(fn)("CONFIG", "RUNTIME")
        assert kwargs == {"config": "CONFIG", "runtime": "RUNTIME"}


def test_factories_default_topologies_without_checkpointer():
    paper = build(studio.moa)
    assert paper.name == "moa" and paper.checkpointer is None
    preset = load_preset("moa")
    assert proposer_nodes(paper) == {
        f"layer_{k}/{m.name}" for k, layer in enumerate(preset.layers, 1) for m in layer
    }
    assert len(proposer_nodes(paper)) == 12 and "aggregator" in paper.nodes
    local = build(studio.moa_local)
    assert local.name == "moa_local" and local.checkpointer is None
    assert proposer_nodes(local) == {
        f"layer_{k}/{n}" for k in (1, 2) for n in ("precise", "creative", "teacher")
    }
    # What Studio's assistant panel shows: the Context fields (no ``spec``: this server
    # runs only its presets and registered specs).
    props = local.get_context_jsonschema()["properties"]
    assert set(props) == {
        "temperature",
        "max_tokens",
        "stop",
        "max_cost",
        "preset",
        "stream_proposers",
        "tools",
        "tool_choice",
        "response_format",
        # the answer's sampling settings (and seed), as moa serve's request fields
        "answer_max_tokens",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "reasoning_effort",
        "seed",
    }
    assert props["stream_proposers"]["default"] is True  # Studio shows proposers typing


def test_context_schema_for_studio_forms(monkeypatch, tmp_path, server, model):
    """Presets and registered specs as a select, bounds on numbers, descriptions for users,
    ``spec`` only when the server trusts run specs."""
    import yaml

    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump({"layers": [[model("a")]], "aggregator": model("agg")}))
    monkeypatch.setenv("MOA_SPECS", str(path))
    schema = build(studio.moa).get_context_jsonschema()
    props = schema["properties"]
    [choices, _null] = props["preset"]["anyOf"]
    assert set(choices["enum"]) == {*preset_names(), "team"}
    ui = props["preset"]["x_oap_ui_config"]
    assert ui["type"] == "select" and {"label": "team", "value": "team"} in ui["options"]
    assert "spec" not in props
    temperature = props["temperature"]["anyOf"][0]
    assert (temperature["minimum"], temperature["maximum"]) == (0, 2)
    assert props["temperature"]["x_oap_ui_config"]["type"] == "slider"
    tokens = props["max_tokens"]["anyOf"][0]
    assert (tokens["minimum"], tokens["maximum"]) == (1, 4096)  # the run policy's cap
    assert props["max_cost"]["anyOf"][0]["minimum"] == 0
    assert "``" not in schema["description"] and "LangGraph" not in schema["description"]
    for name, prop in props.items():
        assert prop.get("description") and "``" not in prop["description"], name
    monkeypatch.setenv("MOA_TRUST_RUN_SPECS", "1")
    assert "spec" in build(studio.moa).get_context_jsonschema()["properties"]
    outputs = build(studio.moa).get_output_jsonschema()["properties"]
    for name in ("answer", "messages", "references", "answers", "calls", "review"):
        assert outputs[name].get("description"), name


def test_an_edited_registered_spec_is_read_again(monkeypatch, tmp_path, server, model):
    import yaml

    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump({"layers": [[model("a")]], "aggregator": model("agg")}))
    monkeypatch.setenv("MOA_SPECS", str(path))
    assert proposer_nodes(build(studio.moa, None, execution({"preset": "team"}))) == {"layer_1/a"}
    spec = {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    path.write_text(yaml.safe_dump(spec))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    graph = build(studio.moa, None, execution({"preset": "team"}))
    assert proposer_nodes(graph) == {"layer_1/a", "layer_1/b"}


def test_a_run_missing_a_key_is_refused_without_naming_the_variable(monkeypatch, caplog):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        build(studio.moa, runtime=execution({"preset": "moa-lite"}))
    assert "not configured on this server" in str(info.value)
    assert "qwen1.5-72b-chat" in str(info.value)
    assert "TOGETHER_API_KEY" not in str(info.value)
    assert "TOGETHER_API_KEY" in caplog.text  # the operator's log names it
    # reads (Studio's graph view, thread state) still work without the key
    read = _ReadRuntime(access_context="assistants.read", store=InMemoryStore())
    assert (
        len(proposer_nodes(build(studio.moa, {"configurable": {"preset": "moa-lite"}}, read))) == 6
    )


def test_check_context_refuses_what_a_run_would(server, model):
    studio.check_context({"preset": "moa-lite", "temperature": 0.5})
    for bad, why in (
        ({"preset": "nope"}, "unknown 'nope'"),
        ({"temperature": 5}, "temperature"),
        ({"spec": {"layers": []}}, "registered specs"),
        ({"colour": "red"}, "colour"),
    ):
        with pytest.raises(SpecError, match=why):
            studio.check_context(bad)


def test_factory_builds_the_topology_the_run_context_asks_for(model, trusted, monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", "test-key")  # a run checks keys (next test)
    spec = {"layers": [[model("x"), model("y"), model("z")]], "aggregator": model("agg")}
    for context in ({"spec": spec}, Context(spec=spec)):
        graph = build(studio.moa, config={}, runtime=execution(context))
        assert proposer_nodes(graph) == {"layer_1/x", "layer_1/y", "layer_1/z"}
        assert graph.name == "moa"
    lite = build(studio.moa, runtime=execution({"preset": "moa-lite"}))
    assert len(proposer_nodes(lite)) == 6 and "layer_2" not in lite.nodes
    # Introspection / thread reads carry no context: the assistant's context, mirrored into
    # config["configurable"] by the server, decides (so Studio draws the assistant's graph).
    read = _ReadRuntime(access_context="assistants.read", store=InMemoryStore())
    from_config = build(studio.moa, {"configurable": {"preset": "self-moa"}}, read)
    assert {n.split("/")[1] for n in proposer_nodes(from_config)} == {
        f"sample-{i}" for i in range(1, 7)
    }
    assert len(proposer_nodes(build(studio.moa, {}, read))) == 12  # the default preset
    # Same spec -> the same compiled graph (cached), different name -> different graph.
    assert build(studio.moa, runtime=execution({"spec": spec})) is graph
    assert build(studio.moa_local, runtime=execution({"spec": spec})) is not graph


def test_factory_rejects_paths_and_key_exfiltration(model, monkeypatch, server):
    monkeypatch.delenv("MOA_TRUST_RUN_SPECS", raising=False)
    plain = {"layers": [[model("a")]], "aggregator": model("agg")}
    with pytest.raises(SpecError, match="registered specs"):  # default: presets by name only
        build(studio.moa, runtime=execution({"spec": plain}))
    with pytest.raises(SpecError, match="registered specs"):  # an assistant's stored context
        build(studio.moa, {"configurable": {"spec": plain}}, None)
    with pytest.raises(SpecError, match="preset"):
        build(studio.moa, runtime=execution({"preset": "nope"}))
    monkeypatch.setenv("MOA_TRUST_RUN_SPECS", "1")
    with pytest.raises(SpecError, match="not a path"):
        build(studio.moa, runtime=execution({"spec": "/etc/passwd"}))
    leaky = {"layers": [[model("a", api_key_env="OPENAI_API_KEY")]], "aggregator": model("agg")}
    with pytest.raises(SpecError, match="api_key_env") as refused:
        build(studio.moa, runtime=execution({"spec": leaky}))
    assert "OPENAI_API_KEY" not in str(refused.value)
    redirected = {
        "layers": [[{"model": "openai:gpt-4o", "params": {"base_url": "http://evil.test"}}]],
        "aggregator": model("agg"),
    }
    with pytest.raises(SpecError, match="endpoint/client"):
        build(studio.moa, runtime=execution({"spec": redirected}))
    with pytest.raises(SpecError, match=r"layers\[0\]\[0\]\.base_url"):  # not allowlisted
        build(studio.moa, runtime=execution({"spec": plain}))
    monkeypatch.setenv("MOA_RUN_BASE_URLS", server.base_url)
    assert "layer_1/a" in build(studio.moa, runtime=execution({"spec": plain})).nodes


async def test_factory_graph_runs_with_per_run_context(server, model, trusted):
    """The context both builds the graph (factory) and reaches the nodes (overrides)."""
    context = {"spec": two_layer_spec(model), "temperature": 0.1, "max_tokens": 3}
    graph = await studio.moa(runtime=execution(context))
    out = await graph.ainvoke({"messages": [("user", QUESTION)]}, context=context)
    assert out["answer"] == "agg says: What"  # truncated to max_tokens=3 by the server
    log = server.log()
    assert len(log) == 5
    assert all(r["temperature"] == 0.1 and r["max_tokens"] == 3 for r in log)


# --------------------------------------------------------------------------- streaming


async def test_stream_messages_custom_updates(server, model):
    server.set_default(Behavior(latency=0.02, token_delay=0.005))
    graph = create_moa(two_layer_spec(model))
    chunks: dict[str, list[str]] = defaultdict(list)
    names: dict[str, set[str | None]] = defaultdict(set)
    meta: dict[str, dict[str, Any]] = {}
    whole: list[AIMessage] = []
    events: list[dict[str, Any]] = []
    updated: list[str] = []
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        {"messages": [("user", QUESTION)]},
        stream_mode=["messages", "custom", "updates", "values"],
        context=Context(stream_proposers=True),
    ):
        if mode == "messages":
            message, metadata = chunk
            if isinstance(message, AIMessageChunk):
                chunks[message.id].append(message.text)
                meta[message.id] = metadata
                names[message.id].add(message.name)
            else:
                whole.append(message)
        elif mode == "custom":
            events.append(chunk)
        elif mode == "updates":
            updated.extend(chunk)
        else:
            final = chunk

    # One streamed message per model call, tagged with the node and its MoA role, every
    # chunk named after its model (a chat view shows who speaks).
    by_node = {m["langgraph_node"]: mid for mid, m in meta.items()}
    assert {node: names[mid] for node, mid in by_node.items()} == {
        "layer_1/a": {"a"},
        "layer_1/b": {"b"},
        "layer_2/a": {"a"},
        "layer_2/b": {"b"},
        "aggregator": {"agg"},
    }
    assert set(by_node) == {"layer_1/a", "layer_1/b", "layer_2/a", "layer_2/b", "aggregator"}
    assert len(meta) == 5
    agg = meta[by_node["aggregator"]]
    assert (agg["moa_role"], agg["moa_layer"], agg["moa_model"]) == ("aggregator", 3, "agg")
    for node in ("layer_1/a", "layer_2/b"):
        m = meta[by_node[node]]
        assert (m["moa_role"], m["moa_layer"]) == ("proposer", int(node[6]))
        assert m["moa_model"] == node.split("/")[1]
        assert m["langgraph_checkpoint_ns"].startswith(node)
    # Every text arrives exactly once: the chunks of a message add up to its answer, and the
    # final AIMessage is not re-emitted whole after its chunks.
    assert "".join(chunks[by_node["aggregator"]]) == final["answer"] == "agg says: What is 2+2?"
    for node in ("layer_1/a", "layer_1/b", "layer_2/a", "layer_2/b"):
        assert "".join(chunks[by_node[node]]) == final["answers"][node]
        assert sum(1 for c in chunks[by_node[node]] if c) == 5  # 5 words, 5 content chunks
    assert not [m for m in whole if m.id in chunks]
    assert final["messages"][-1].id == by_node["aggregator"]
    # Progress events and one update per node.
    kinds = [e["event"] for e in events]
    assert kinds.count("layer_started") == 2 and kinds.count("layer_finished") == 2
    finished = {e["node"] for e in events if e["event"] == "call_finished"}
    assert finished == set(by_node)
    assert all(e["ttft_s"] is not None for e in events if e["event"] == "call_finished")
    assert sorted(updated) == sorted(
        ["layer_1", "layer_1/a", "layer_1/b", "layer_1/aggregate"]
        + ["layer_2", "layer_2/a", "layer_2/b", "layer_2/aggregate", "aggregator"]
    )


async def test_first_aggregator_token_arrives_before_the_end(server, model):
    """TTFT of the whole MoA = the proposer layer + the aggregator's own TTFT, not the run."""
    spec = {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}
    graph = create_moa(spec)
    graph_input = {"messages": [("user", QUESTION)]}
    await graph.ainvoke(graph_input)  # warm up imports and the connection pool (fast server)
    server.set_default(Behavior(latency=0.3))
    server.set_behavior("agg", Behavior(latency=0.2, token_delay=0.1, tokens=10))

    start = time.perf_counter()
    layer_done = first_token = None
    n_tokens = 0
    async for mode, chunk in graph.astream(graph_input, stream_mode=["messages", "custom"]):
        now = time.perf_counter() - start
        if mode == "custom" and chunk["event"] == "layer_finished":
            layer_done = now
        elif mode == "messages" and chunk[1]["langgraph_node"] == "aggregator" and chunk[0].text:
            n_tokens += 1
            first_token = first_token or now
    end = time.perf_counter() - start
    print(f"layer {layer_done:.3f}s first aggregator token {first_token:.3f}s end {end:.3f}s")
    assert n_tokens == 10
    assert 0.3 <= layer_done < 0.8  # the proposers' 0.3 s (plus overhead)
    assert 0.2 <= first_token - layer_done < 0.6  # then only the aggregator's own 0.2 s TTFT
    assert end - first_token >= 0.85  # 9 gaps of 0.1 s were still to come


# --------------------------------------------------------------------------- embedding


class Ask(TypedDict, total=False):
    question: str
    route: str
    draft: str
    n_references: int
    final: str


def parent_graph(moa_graph, checkpointer):
    """router -> ask_moa (the MoA graph as a subgraph) -> post, with its own schema."""

    def router(state: Ask) -> dict[str, Any]:
        question = state["question"].strip()
        return {"question": question, "route": "moa" if question else "empty"}

    async def ask_moa(state: Ask) -> dict[str, Any]:
        out = await moa_graph.ainvoke({"messages": [HumanMessage(state["question"])]})
        return {"draft": out["answer"], "n_references": len(out["references"])}

    def post(state: Ask) -> dict[str, Any]:
        return {"final": f"Final: {state.get('draft') or 'nothing to answer'}"}

    builder = StateGraph(Ask)
    builder.add_node("router", router)
    builder.add_node("ask_moa", ask_moa)
    builder.add_node("post", post)
    builder.add_edge(START, "router")
    builder.add_conditional_edges(
        "router", lambda s: s["route"], {"moa": "ask_moa", "empty": "post"}
    )
    builder.add_edge("ask_moa", "post")
    builder.add_edge("post", END)
    return builder.compile(checkpointer=checkpointer)


async def test_moa_as_subgraph_inherits_checkpointer_and_streams_namespaces(server, model):
    moa_graph = create_moa(two_layer_spec(model, review=True))  # no checkpointer of its own
    saver = InMemorySaver()
    parent = parent_graph(moa_graph, saver)
    config = {"configurable": {"thread_id": "embed-1"}}

    seen: list[tuple[tuple[str, ...], str]] = []
    async for ns, _mode, chunk in parent.astream(
        {"question": f"  {QUESTION} "}, config, stream_mode=["updates"], subgraphs=True
    ):
        seen.extend((ns, key) for key in chunk)
    parent_nodes = [key for ns, key in seen if ns == ()]
    sub = [(ns, key) for ns, key in seen if ns]
    assert parent_nodes[0] == "router" and "__interrupt__" in parent_nodes
    assert {ns[0].split(":")[0] for ns, _ in sub} == {"ask_moa"}
    assert {"layer_1/a", "layer_2/b", "layer_2/aggregate"} <= {key for _, key in sub}
    assert "aggregator" not in {key for _, key in sub}

    # The subgraph's interrupt is checkpointed by the parent's saver (inherited).
    state = await parent.aget_state(config, subgraphs=True)
    assert state.next == ("ask_moa",)
    [task] = state.tasks
    assert task.state.next == ("review",)
    assert task.interrupts[0].value["references"] == [
        "a says: What is 2+2?",
        "b says: What is 2+2?",
    ]
    namespaces = {c.config["configurable"]["checkpoint_ns"] async for c in saver.alist(None)}
    assert any(ns.startswith("ask_moa:") for ns in namespaces)

    out = await parent.ainvoke(Command(resume=["edited ref"]), config)
    assert out["final"] == "Final: agg says: What is 2+2?"
    assert out["n_references"] == 1
    [agg_request] = server.log("agg")
    assert "1. edited ref" in agg_request["messages"][0]["content"]
    # Proposers ran once each: resuming the parent did not re-run the subgraph's layers.
    assert len(server.log("a")) == 2 and len(server.log("b")) == 2


class Chat(MessagesState):
    answer: str
    final: str


async def test_moa_added_directly_as_a_node_shares_messages(server, model):
    moa_graph = create_moa(two_layer_spec(model))
    builder = StateGraph(Chat)
    builder.add_node("moa", moa_graph)
    builder.add_node("post", lambda s: {"final": s["answer"].upper()})
    builder.add_edge(START, "moa")
    builder.add_edge("moa", "post")
    parent = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "chat-1"}}
    out = await parent.ainvoke({"messages": [("user", QUESTION)]}, config)
    assert out["final"] == "AGG SAYS: WHAT IS 2+2?"
    assert [m.type for m in out["messages"]] == ["human", "ai"]
    out = await parent.ainvoke({"messages": [("user", "And 3+3?")]}, config)
    assert [m.type for m in out["messages"]] == ["human", "ai", "human", "ai"]
    # The second turn's proposers saw the whole conversation.
    second = server.log("a")[2]["messages"]
    assert [(m["role"], m["content"]) for m in second] == [
        ("user", QUESTION),
        ("assistant", "agg says: What is 2+2?"),
        ("user", "And 3+3?"),
    ]


async def test_moa_graph_in_an_lcel_chain(server, model):
    moa_graph = create_moa(two_layer_spec(model))
    chain = (
        RunnableLambda(lambda q: {"messages": [("user", q)]})
        | moa_graph
        | RunnableLambda(lambda s: s["answer"])
    )
    assert await chain.ainvoke(QUESTION) == "agg says: What is 2+2?"
    answers = await chain.abatch(["one?", "two?"])
    assert answers == ["agg says: one?", "agg says: two?"]
    assert len(server.log()) == 5 * 3


# --------------------------------------------------------------------------- tracing


async def test_node_metadata_and_tracing_stays_off(server, model, monkeypatch, trusted):
    """Nodes carry MoA metadata; no LangSmith tracer unless the user's environment asks."""
    import langsmith.utils
    from langchain_core.tracers.langchain import LangChainTracer

    for var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING_V2"):
        monkeypatch.delenv(var, raising=False)
    langsmith.utils.get_env_var.cache_clear()  # langsmith caches the variables it read
    before = {k: v for k, v in os.environ.items() if k.startswith(("LANGSMITH", "LANGCHAIN"))}
    created: list[Any] = []
    init = LangChainTracer.__init__

    def spy(self, *args: Any, **kwargs: Any) -> None:
        created.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(LangChainTracer, "__init__", spy)

    graph = await studio.moa(runtime=execution({"spec": two_layer_spec(model)}))
    nodes = graph.get_graph().nodes
    assert nodes["layer_2/b"].metadata == {
        "moa_role": "proposer",
        "moa_layer": 2,
        "moa_model": "b",
        "moa_model_id": "openai:b",
    }
    assert nodes["aggregator"].metadata["moa_role"] == "aggregator"
    assert nodes["aggregator"].metadata["moa_layer"] == 3
    out = await graph.ainvoke({"messages": [("user", QUESTION)]})
    assert out["answer"] == "agg says: What is 2+2?"
    assert created == []
    assert not langsmith.utils.tracing_is_enabled()
    after = {k: v for k, v in os.environ.items() if k.startswith(("LANGSMITH", "LANGCHAIN"))}
    assert after == before
    langsmith.utils.get_env_var.cache_clear()


async def test_factories_build_graphs_off_the_event_loop(model, trusted, monkeypatch):
    """Policy checks and graph building run in a worker thread, never on the server's loop."""
    import threading

    seen: list[threading.Thread] = []
    real = studio.build_graph

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(studio, "build_graph", spy)
    spec = two_layer_spec(model, name="off-loop")
    graph = await studio.moa(runtime=execution({"spec": spec}))
    assert proposer_nodes(graph) == {"layer_1/a", "layer_1/b", "layer_2/a", "layer_2/b"}
    assert seen and threading.main_thread() not in seen


async def test_a_thread_keeps_the_topology_its_first_run_chose(model, trusted, server):
    """The factory reads the topology the thread's first run recorded: reads and resumes
    without a context get that graph (a review pause shows next == review), a later turn
    without a context runs it, and a run asking for another one is refused."""
    from langgraph.constants import CONFIG_KEY_CHECKPOINTER

    saver = InMemorySaver()
    spec = two_layer_spec(model, review=True)
    config = {"configurable": {"thread_id": "t-1", CONFIG_KEY_CHECKPOINTER: saver}}
    thread = {"configurable": {"thread_id": "t-1"}}

    async def graph(runtime: Any) -> Any:
        return (await studio.moa(config, runtime)).copy(update={"checkpointer": saver})

    first = await graph(execution({"spec": spec}))
    await first.ainvoke({"messages": [("user", "Hi")]}, thread)
    read = _ReadRuntime(access_context="threads.read", store=InMemoryStore())
    state = await (await graph(read)).aget_state(thread)
    assert state.next == ("review",) and state.tasks[0].interrupts
    assert state.values["topology"] == {"spec": spec}
    out = await (await graph(execution({}))).ainvoke(Command(resume=True), thread)
    assert out["answer"] == "agg says: Hi"
    # a later turn, no context: the thread's graph, not the default preset
    second = await (await graph(execution(None))).ainvoke({"messages": [("user", "Yo")]}, thread)
    assert second["__interrupt__"]
    with pytest.raises(SpecError, match="cannot switch to preset 'moa-lite'"):
        await graph(execution({"preset": "moa-lite"}))
    # the same spec again is fine; a forged topology is checked like a run's context
    await graph(execution({"spec": spec}))
    await (await graph(read)).aupdate_state(thread, {"topology": {"spec": {"layers": []}}})
    monkey_untrusted = os.environ.pop("MOA_TRUST_RUN_SPECS")
    try:
        with pytest.raises(SpecError, match="no longer available"):
            await graph(execution(None))
    finally:
        os.environ["MOA_TRUST_RUN_SPECS"] = monkey_untrusted


async def test_an_auth_handler_refuses_invalid_assistant_contexts():
    """The LangGraph server checks no assistant context itself; a custom auth handler can."""
    from langgraph_sdk import Auth

    await studio.refuse_invalid_assistant(None, {"graph_id": "moa", "context": {"preset": "moa"}})
    await studio.refuse_invalid_assistant(None, {"graph_id": "moa"})  # no context: nothing to do
    for context in ({"preset": "nope"}, {"temperature": 5}, {"spec": {"layers": []}}):
        with pytest.raises(Auth.exceptions.HTTPException) as info:
            await studio.refuse_invalid_assistant(None, {"graph_id": "moa", "context": context})
        assert info.value.status_code == 422 and "context" in info.value.detail
