"""In-process checks of what the LangGraph server relies on (issue 21): a failed run resumed
calls only what failed; the review interrupt's payload and every resume value; errors whose
message the server passes on; node updates that are plain data."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from langgraph_moa.errors import (
    CostLimitError,
    InvalidInputError,
    LayerFailedError,
    ModelCallError,
    SpecError,
)
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.testing import Behavior

Q = "What is 2+2?"


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}}


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def saver(request, tmp_path) -> AsyncIterator[Any]:
    """The failure is read back from the checkpoint on resume: in memory, and serialised."""
    if request.param == "memory":
        yield InMemorySaver()
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.sqlite")) as s:
        await s.setup()
        yield s


def two_layers(model, **extra: Any) -> dict[str, Any]:
    return {
        "layers": [[model("a"), model("b")], [model("a"), model("b")]],
        "aggregator": model("agg"),
        **extra,
    }


def test_run_errors_subclass_builtins_the_langgraph_server_shows():
    """The server blanks the message of exceptions outside its allowlist (ValueError,
    RuntimeError, ...); every project error is one of those."""
    serde = pytest.importorskip("langgraph_api.serde")  # the server's own encoder of errors
    default = serde.default

    errors: list[Exception] = [
        LayerFailedError(1, {"a": "HTTP 500: boom"}, 2, 1),
        CostLimitError(0.01, 0.02, 0.5, "aggregator"),
        ModelCallError("agg", "HTTP 503: overloaded"),
        SpecError("context.preset: unknown 'x'"),
        InvalidInputError("the question is empty"),
    ]
    for error in errors:
        encoded = default(error)
        assert encoded == {"error": type(error).__name__, "message": str(error)}
        assert encoded["message"] != "An internal error occurred"


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("layer", [1, 2])
async def test_resume_after_layer_failure_calls_only_the_failed_proposer(
    server, model, saver, layer
):
    """Proposer ``c`` of layer ``layer`` answers 500 on every attempt, so the layer loses
    its quorum and the run fails. The model recovers; resuming the thread (``invoke(None)``)
    calls c once more and nothing that had answered, and the run finishes."""
    layers = [[model("a"), model("b")], [model("a"), model("b")]]
    layers[layer - 1][1] = model("c")
    spec = {"layers": layers, "aggregator": model("agg"), "min_successful": 2}
    attempts = model("c")["retry"]["max_attempts"]
    server.set_behavior("c", Behavior(always_status=500))
    graph = create_moa(spec, checkpointer=saver)
    config = thread()
    with pytest.raises(LayerFailedError, match="c: HTTP 500"):
        await graph.ainvoke({"messages": [("user", Q)]}, config)
    state = await graph.aget_state(config)
    assert state.next == (f"layer_{layer}/aggregate",)
    before = {m: len(server.log(m)) for m in ("a", "b", "c", "agg")}
    assert before["c"] == attempts and before["agg"] == 0

    server.set_behavior("c", None)  # the outage is over
    out = await graph.ainvoke(None, config)
    assert out["answer"] == f"agg says: {Q}"
    after = {m: len(server.log(m)) for m in ("a", "b", "c", "agg")}
    # c once; a (and b) only in the layers that had not run yet; the aggregator once.
    later = 2 - layer
    assert after == {
        "a": before["a"] + later,
        "b": before["b"] + later,
        "c": before["c"] + 1,
        "agg": 1,
    }
    failed = [c["node"] for c in out["calls"] if c["status"] == "failed"]
    assert failed == [f"layer_{layer}/c"]  # the failed call stays on the record
    assert (await graph.aget_state(config)).next == ()


async def test_resume_that_fails_again_fails_with_the_layer_error(server, model):
    spec = two_layers(model, min_successful=2)
    server.set_behavior("b", Behavior(always_status=503))
    graph = create_moa(spec, checkpointer=InMemorySaver())
    config = thread()
    with pytest.raises(LayerFailedError):
        await graph.ainvoke({"messages": [("user", Q)]}, config)
    with pytest.raises(LayerFailedError, match="b: HTTP 503"):
        await graph.ainvoke(None, config)
    # still resumable, and a new turn works as before
    server.set_behavior("b", None)
    out = await graph.ainvoke(None, config)
    assert out["answer"] == f"agg says: {Q}"


async def test_a_new_turn_updates_carry_no_overwrite_markers(server, model):
    graph = create_moa(two_layers(model), checkpointer=InMemorySaver())
    config = thread()
    await graph.ainvoke({"messages": [("user", Q)]}, config)
    updates = [u async for u in graph.astream({"messages": [("user", "And 3+3?")]}, config)]
    entry = next(u["layer_1"] for u in updates if "layer_1" in u)
    assert entry["answers"] is None and entry["calls"] is None  # plain data: "empty these"
    state = await graph.aget_state(config)
    assert len(state.values["calls"]) == 5  # this turn's calls only


async def test_resume_after_aggregator_failure_calls_only_the_aggregator(server, model, saver):
    graph = create_moa(two_layers(model), checkpointer=saver)
    config = thread()
    server.set_behavior("agg", Behavior(always_status=500))
    with pytest.raises(ModelCallError, match="agg: HTTP 500"):
        await graph.ainvoke({"messages": [("user", Q)]}, config)
    before = {m: len(server.log(m)) for m in ("a", "b", "agg")}
    server.set_behavior("agg", None)
    out = await graph.ainvoke(None, config)
    assert out["answer"] == f"agg says: {Q}"
    after = {m: len(server.log(m)) for m in ("a", "b", "agg")}
    assert after == {**before, "agg": before["agg"] + 1}


# --------------------------------------------------------------------------- review


async def _paused(server, model) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    graph = create_moa(two_layers(model, review=True), checkpointer=InMemorySaver())
    config = thread()
    out = await graph.ainvoke({"messages": [("user", Q)]}, config)
    [pause] = out["__interrupt__"]
    return graph, config, pause.value


async def test_review_payload_is_a_human_interrupt_with_labelled_references(server, model):
    _, _, value = await _paused(server, model)
    refs = [f"a says: {Q}", f"b says: {Q}"]
    assert value["references"] == refs  # the plain list stays for older clients
    assert value["action_request"] == {
        "action": "review_references",
        "args": {"question": Q, "a": refs[0], "b": refs[1]},
    }
    assert value["config"] == {
        "allow_accept": True,
        "allow_edit": True,
        "allow_respond": True,
        "allow_ignore": True,
    }
    assert isinstance(value["description"], str) and value["description"]


@pytest.mark.parametrize(
    ("decision", "references"),
    [
        (True, None),
        ({"type": "accept"}, None),
        ([{"type": "accept", "args": None}], None),
        ({"approved": True}, None),
        (["edited"], ["edited"]),
        ({"references": ["x", "y"]}, ["x", "y"]),
        ({"type": "edit", "args": {"question": Q, "b": "only b"}}, ["only b"]),
        (
            [{"type": "edit", "args": {"action": "review_references", "args": {"a": "A!"}}}],
            ["A!"],
        ),
    ],
    ids=["true", "accept", "inbox-accept", "approved", "list", "refs", "edit", "inbox-edit"],
)
async def test_review_accept_and_edit_aggregate(server, model, decision, references):
    graph, config, value = await _paused(server, model)
    out = await graph.ainvoke(Command(resume=decision), config)
    assert out["answer"] == f"agg says: {Q}"
    expected = references or value["references"]
    assert out["references"] == expected
    [agg] = server.log("agg")
    assert agg["messages"][0]["content"].endswith(
        "".join(f"\n{i}. {r}" for i, r in enumerate(expected, 1))
    )
    assert out["review"]["decision"] == ("accept" if references is None else "edit")


@pytest.mark.parametrize(
    "decision", [False, {"type": "ignore"}, {"approved": False}, [{"type": "ignore"}]]
)
async def test_review_reject_ends_the_turn_without_the_aggregator(server, model, decision):
    graph, config, _ = await _paused(server, model)
    out = await graph.ainvoke(Command(resume=decision), config)
    assert server.log("agg") == []
    assert out["answer"] == "" and out["review"] == {"decision": "ignore"}
    assert [m.type for m in out["messages"]] == ["human"]
    state = await graph.aget_state(config)
    assert state.next == ()
    # the thread goes on: the next turn is an ordinary run
    again = await graph.ainvoke({"messages": [("user", "And 3+3?")]}, config)
    assert again["__interrupt__"] and again["answer"] == ""


async def test_review_response_is_the_answer(server, model):
    graph, config, _ = await _paused(server, model)
    out = await graph.ainvoke(Command(resume={"type": "response", "args": "It is 4."}), config)
    assert server.log("agg") == []
    assert out["answer"] == "It is 4."
    assert out["messages"][-1].content == "It is 4." and out["messages"][-1].name == "reviewer"
    assert out["review"] == {"decision": "response", "text": "It is 4."}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ([], "non-empty list"),
        (["ok", 3], r"the list\[1\] is int"),
        ({"type": "nope"}, "unknown type 'nope'"),
        ({"type": "response", "args": ""}, "response args"),
        ({"type": "edit", "args": {"zed": "x"}}, r"unknown label\(s\) \['zed'\]"),
        ({"approved": "yes"}, "approved must be true or false"),
        ("go", "got str"),
        (42, "got int"),
    ],
)
async def test_bad_resume_values_are_refused_and_the_thread_stays_paused(server, model, bad, why):
    """Refused: the thread pauses again with the reason (and what is accepted), and the
    next valid value goes on."""
    graph, config, first = await _paused(server, model)
    out = await graph.ainvoke(Command(resume=bad), config)
    [again] = out["__interrupt__"]
    assert again.value == {**first, "error": again.value["error"]}
    assert re.search(why, again.value["error"])
    assert "accepted: true | false" in again.value["error"]
    assert server.log("agg") == []
    state = await graph.aget_state(config)
    assert state.next == ("review",)
    out = await graph.ainvoke(Command(resume=True), config)  # a valid value still works
    assert out["answer"] == f"agg says: {Q}"
    assert len(server.log("agg")) == 1
