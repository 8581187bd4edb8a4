"""The LangGraph server as a team relies on it (issue 21), through ``langgraph dev`` and the SDK:
errors clients can read, threads that keep their topology, review that can reject or answer,
resume after a failed run, and what Studio reads (graph view, context form, streams).

One ``langgraph dev`` per module (slow to start). The operator registers a spec file
(``MOA_SPECS``) with ``review: true`` whose models point at a fake OpenAI server started
first, on a port known before the server starts; whole client specs are accepted too
(``MOA_TRUST_RUN_SPECS=1``) but only aimed at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from test_langgraph_dev import ROOT, DevServer, free_port, start_dev

from langgraph_moa.testing import Behavior, OpenAIServer

pytestmark = pytest.mark.slow

Q = "What is 2+2?"
ASK = {"messages": [{"role": "user", "content": Q}]}
FAST = {"max_attempts": 2, "initial_interval": 0.01, "max_interval": 0.02, "jitter": False}


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    with OpenAIServer(port=free_port()) as srv:
        yield srv


@pytest.fixture
def fake(upstream: OpenAIServer) -> Iterator[OpenAIServer]:
    upstream.reset()
    upstream.set_behaviors({}, default=Behavior())
    yield upstream


def m(srv: OpenAIServer, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": f"openai:{name}",
        "base_url": srv.base_url,
        "max_tokens": 64,
        "timeout": 10,
        "retry": FAST,
        **kw,
    }


def spec(srv: OpenAIServer, *proposers: str, **extra: Any) -> dict[str, Any]:
    names = proposers or ("a", "b")
    return {"layers": [[m(srv, n) for n in names]], "aggregator": m(srv, "agg"), **extra}


AUTH = """
from langgraph_sdk import Auth

from langgraph_moa.graphs.studio import refuse_invalid_assistant

auth = Auth()


@auth.authenticate
async def everyone(headers: dict) -> str:
    return "tester"


auth.on.assistants.create(refuse_invalid_assistant)
auth.on.assistants.update(refuse_invalid_assistant)
"""


@pytest.fixture(scope="module")
def dev(upstream: OpenAIServer, tmp_path_factory) -> Iterator[DevServer]:
    folder = tmp_path_factory.mktemp("platform-server")
    team = folder / "team_review.yaml"
    team.write_text(yaml.safe_dump(spec(upstream, review=True)))
    # The repo's graphs, plus a custom auth that lets everyone in and checks assistant
    # contexts when they are stored (the server's only hook for that).
    (folder / "auth.py").write_text(AUTH)
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["graphs"] = {k: str(ROOT / v.removeprefix("./")) for k, v in config["graphs"].items()}
    config["dependencies"] = [str(ROOT)]
    config["auth"] = {"path": str(folder / "auth.py") + ":auth"}
    (folder / "langgraph.json").write_text(json.dumps(config))
    log = folder / "server.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "MOA_SPECS": str(team),
        "MOA_TRUST_RUN_SPECS": "1",
        "MOA_RUN_BASE_URLS": "http://127.0.0.1:*",
    }
    with start_dev(env, log, folder / "langgraph.json") as server:
        yield server


@pytest.fixture
def client(dev: DevServer):
    from langgraph_sdk import get_client

    start = dev.log.stat().st_size
    yield get_client(url=dev.url, timeout=60)
    print(f"--- langgraph dev log:\n{dev.log_text(start)[-20000:]}")


async def new_thread(client) -> str:
    return str((await client.threads.create())["thread_id"])


def error_of(out: Any) -> dict[str, Any]:
    assert isinstance(out, dict) and "__error__" in out, out
    return dict(out["__error__"])


# --------------------------------------------------------------------------- 1. errors


async def test_a_failed_layer_reaches_the_client_with_its_reason_and_resumes(client, fake):
    """runs.wait, the stream's error event and the thread state all say why; resuming the
    thread (input None) once the model answers calls only the model that failed."""
    fake.set_behavior("c", Behavior(always_status=500))
    context = {"spec": spec(fake, "a", "c", min_successful=2)}
    thread = await new_thread(client)
    # runs.wait raises the error by default ("<type>: <message>"); its body carries both.
    with pytest.raises(Exception, match=r"^LayerFailedError: layer 1 failed.*c: HTTP 500"):
        await client.runs.wait(thread, "moa", input=ASK, context=context)
    out = await client.runs.wait(thread, "moa", input=ASK, context=context, raise_error=False)
    error = error_of(out)
    assert error["error"] == "LayerFailedError"
    assert "layer 1 failed: 1 of the 2 required answers arrived" in error["message"]
    assert "c: HTTP 500" in error["message"]

    events = [
        part
        async for part in client.runs.stream(thread, "moa", input=ASK, context=context)
        if part.event == "error"
    ]
    assert [e.data["error"] for e in events] == ["LayerFailedError"]
    assert "c: HTTP 500" in events[0].data["message"]

    state = await client.threads.get_state(thread)
    assert state["next"] == ["layer_1/aggregate"]
    [task] = state["tasks"]
    assert "c: HTTP 500" in json.dumps(task["error"])
    thread_info = await client.threads.get(thread)
    assert thread_info["status"] == "error"

    before = {n: len(fake.log(n)) for n in ("a", "c", "agg")}
    fake.set_behavior("c", None)  # the outage is over
    out = await client.runs.wait(thread, "moa", input=None)
    assert out["answer"] == f"agg says: {Q}", out
    after = {n: len(fake.log(n)) for n in ("a", "c", "agg")}
    assert after == {"a": before["a"], "c": before["c"] + 1, "agg": 1}


async def test_model_errors_and_missing_keys_are_readable(client, fake):
    fake.set_behavior("agg", Behavior(always_status=503))
    out = await client.runs.wait(
        None, "moa", input=ASK, context={"spec": spec(fake)}, raise_error=False
    )
    error = error_of(out)
    assert error["error"] == "ModelCallError" and "agg: HTTP 503" in error["message"]
    # A preset whose key the server lacks: the models are named, the variable is not.
    error = error_of(
        await client.runs.wait(
            None, "moa", input=ASK, context={"preset": "moa-lite"}, raise_error=False
        )
    )
    assert error["error"] == "MissingAPIKeyError"
    assert "not configured on this server" in error["message"]
    assert "TOGETHER_API_KEY" not in error["message"]


# --------------------------------------------------------------------------- 2+3. topology, review


async def test_a_registered_review_spec_keeps_its_topology(client, fake):
    thread = await new_thread(client)
    context = {"preset": "team_review"}
    await client.runs.wait(thread, "moa", input=ASK, context=context)
    state = await client.threads.get_state(thread)
    assert state["next"] == ["review"]
    [interrupt] = state["tasks"][0]["interrupts"]
    value = interrupt["value"]
    assert value["references"] == [f"a says: {Q}", f"b says: {Q}"]
    assert value["action_request"]["args"] == {
        "question": Q,
        "a": f"a says: {Q}",
        "b": f"b says: {Q}",
    }
    assert value["config"]["allow_ignore"] and value["description"]
    assert fake.log("agg") == []

    # Resume with no context: the thread's graph, the review decision applies.
    out = await client.runs.wait(thread, "moa", command={"resume": {"type": "accept"}})
    assert out["answer"] == f"agg says: {Q}" and out["review"] == {"decision": "accept"}
    # A later turn without the context still runs the thread's spec (it pauses again) ...
    await client.runs.wait(thread, "moa", input={"messages": [{"role": "user", "content": "2"}]})
    assert (await client.threads.get_state(thread))["next"] == ["review"]
    # ... and update_state as the review node works on it.
    await client.threads.update_state(
        thread, {"references": ["only this"], "review": {"decision": "edit"}}, as_node="review"
    )
    out = await client.runs.wait(thread, "moa", input=None)
    assert out["answer"] == "agg says: 2" and out["references"] == ["only this"]
    assert fake.log("agg")[-1]["messages"][0]["content"].endswith("\n1. only this")
    # Another topology on this thread is refused, clearly.
    error = error_of(
        await client.runs.wait(
            thread, "moa", input=ASK, context={"spec": spec(fake, "x")}, raise_error=False
        )
    )
    assert error["error"] == "SpecError"
    assert "this thread runs preset 'team_review'" in error["message"]
    assert "cannot switch to a whole spec" in error["message"]
    assert "start a new thread" in error["message"]


@pytest.mark.parametrize(
    ("decision", "answer", "outcome"),
    [
        ({"type": "ignore"}, "", {"decision": "ignore"}),
        (False, "", {"decision": "ignore"}),
        ({"approved": False}, "", {"decision": "ignore"}),
        (
            [{"type": "response", "args": "Four."}],
            "Four.",
            {"decision": "response", "text": "Four."},
        ),
    ],
    ids=["ignore", "false", "not-approved", "response"],
)
async def test_review_reject_or_answer_without_the_aggregator(
    client, fake, decision, answer, outcome
):
    thread = await new_thread(client)
    await client.runs.wait(thread, "moa", input=ASK, context={"preset": "team_review"})
    out = await client.runs.wait(thread, "moa", command={"resume": decision})
    assert out["answer"] == answer and out["review"] == outcome
    assert fake.log("agg") == []
    assert (await client.threads.get_state(thread))["next"] == []


async def test_a_bad_resume_value_is_refused_and_the_thread_stays_paused(client, fake):
    thread = await new_thread(client)
    await client.runs.wait(thread, "moa", input=ASK, context={"preset": "team_review"})
    await client.runs.wait(thread, "moa", command={"resume": []})
    state = await client.threads.get_state(thread)
    assert state["next"] == ["review"]
    [interrupt] = state["tasks"][0]["interrupts"]
    assert "non-empty list of strings" in interrupt["value"]["error"]
    assert "accepted: true | false" in interrupt["value"]["error"]
    out = await client.runs.wait(thread, "moa", command={"resume": True})
    assert out["answer"] == f"agg says: {Q}"


# --------------------------------------------------------------------------- 5. Studio


async def test_what_studio_reads(client, fake):
    assistants = await client.assistants.search(metadata={"created_by": "system"}, limit=50)
    moa = next(a for a in assistants if a["graph_id"] == "moa")["assistant_id"]
    view = await client.assistants.get_graph(moa)
    assert not [n["id"] for n in view["nodes"] if "__error_handler__" in n["id"]]
    schemas = await client.assistants.get_schemas(moa)
    props = schemas["context_schema"]["properties"]
    assert "team_review" in props["preset"]["anyOf"][0]["enum"]
    assert props["preset"]["x_oap_ui_config"]["type"] == "select"
    assert props["temperature"]["anyOf"][0]["maximum"] == 2
    assert schemas["output_schema"]["properties"]["answer"]["description"]

    names: dict[str, set[Any]] = {}
    updates = []
    async for part in client.runs.stream(
        None,
        "moa",
        input=ASK,
        context={"spec": spec(fake)},
        stream_mode=["messages-tuple", "updates"],
    ):
        if part.event == "messages":
            chunk, meta = part.data
            names.setdefault(meta["langgraph_node"], set()).add(chunk.get("name"))
        elif part.event == "updates":
            updates.append(part.data)
        assert part.event != "error", part.data
    assert names == {"layer_1/a": {"a"}, "layer_1/b": {"b"}, "aggregator": {"agg"}}
    assert "__overwrite__" not in json.dumps(updates)


async def test_an_invalid_assistant_context_is_refused_when_stored(client, fake):
    """With ``refuse_invalid_assistant`` on the deployment's auth, ``assistants.create`` and
    ``update`` refuse a context a run would refuse, with the run's message."""
    from langgraph_sdk.errors import UnprocessableEntityError

    for context, why in (({"preset": "nope"}, "unknown 'nope'"), ({"temperature": 5}, "0 to 2")):
        with pytest.raises(UnprocessableEntityError, match=why):
            await client.assistants.create("moa", context=context)
    good = await client.assistants.create("moa", context={"preset": "team_review"})
    try:
        with pytest.raises(UnprocessableEntityError, match="max_tokens"):
            await client.assistants.update(good["assistant_id"], context={"max_tokens": 0})
    finally:
        await client.assistants.delete(good["assistant_id"])


async def test_a_refused_context_fails_the_run_before_any_model_call(client, fake):
    """Without that handler an assistant's context is stored unchecked; its first run is
    refused like a run naming the same context, before any model is called."""
    out = await client.runs.wait(
        None, "moa", input=ASK, context={"preset": "nope"}, raise_error=False
    )
    error = error_of(out)
    assert error["error"] == "SpecError" and "unknown 'nope'" in error["message"]
    assert fake.log() == []
