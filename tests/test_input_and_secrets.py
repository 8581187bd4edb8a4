"""Bad input and bad specs fail clearly before any HTTP request; keys never leak.

Every input test asserts the fake server's request log is still empty: the error came from
validation, not from a model call.
"""

from __future__ import annotations

import json
import traceback

import pytest
from langchain_core.messages import AIMessage, ChatMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_moa.errors import (
    InvalidInputError,
    LayerFailedError,
    MissingAPIKeyError,
    ModelCallError,
    SpecError,
)
from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.testing import Behavior

SECRET = "sk-test-SECRET-1234567890abcdef"


@pytest.fixture
def spec(model) -> dict:
    return {"layers": [[model("a"), model("b")]], "aggregator": model("agg")}


# ------------------------------------------------------------------ input


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "no messages"),
        (
            [
                ("user", "Weather?"),
                AIMessage("", tool_calls=[{"name": "w", "args": {}, "id": "1"}]),
            ],
            r"messages\[1\]: an 'assistant' message with tool_calls must be followed by 'tool'",
        ),
        ([ChatMessage(role="bogus", content="hi")], "unsupported role 'chat'"),
    ],
    ids=["no-messages", "unanswered-tool-call", "chat-role"],
)
async def test_bad_input_fails_before_any_request(server, spec, messages, match):
    graph = create_moa(spec)
    with pytest.raises(InvalidInputError, match=match):
        await graph.ainvoke({"messages": messages})
    assert server.log() == []


async def test_missing_messages_key(server, spec):
    with pytest.raises(InvalidInputError, match="no messages"):
        await create_moa(spec).ainvoke({})
    assert server.log() == []


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"role": "bogus", "content": "hi"}], r"messages\[0\]: Unexpected message type: 'bogus'"),
        (
            [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}],
            r"messages\[1\]: missing 'tool_call_id'",
        ),
        ([42], r"messages\[0\]: Unsupported message type"),
    ],
    ids=["unknown-role", "tool-without-id", "not-a-message"],
)
async def test_unconvertible_messages_name_their_index(server, spec, messages, match):
    """What ``add_messages`` cannot convert is an ``InvalidInputError`` naming messages[i],
    not a raw KeyError from inside the conversion, and no model is called."""
    with pytest.raises(InvalidInputError, match=match):
        await create_moa(spec).ainvoke({"messages": messages})
    assert server.log() == []


@pytest.mark.parametrize("content", [42, {"text": "hi"}], ids=["int", "dict"])
async def test_non_text_content_is_rejected(server, spec, content):
    # Raised by the message model while add_messages coerces the input, named by field.
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.content"):
        await create_moa(spec).ainvoke({"messages": [{"role": "user", "content": content}]})
    assert server.log() == []


async def test_content_parts_are_accepted(server, spec):
    parts = [{"type": "text", "text": "What is 2+2?"}]
    out = await create_moa(spec).ainvoke({"messages": [{"role": "user", "content": parts}]})
    assert out["answer"] == "agg says: What is 2+2?"


# ------------------------------------------------------------------ spec


def _m(name: str, **kw) -> dict:
    return {"name": name, "model": f"openai:{name}", "base_url": "http://127.0.0.1:9/v1", **kw}


A, B = _m("a"), _m("b")
BAD_SPECS = {
    "negative-timeout": (
        {"layers": [[_m("a", timeout=-1)]], "aggregator": B},
        r"layers\[0\]\[0\]\.timeout",
    ),
    "quorum-too-big": ({"layers": [[A, B]], "aggregator": B, "min_successful": 3}, "min_succ"),
    "duplicate-name": ({"layers": [[A, _m("a")]], "aggregator": B}, "duplicate model name 'a'"),
    "unknown-provider": ({"layers": [[{"model": "nope:x"}]], "aggregator": B}, "unknown provid"),
    "no-layers": ({"layers": [], "aggregator": B}, "at least one proposer layer"),
    "empty-layer": ({"layers": [[A], []], "aggregator": B}, "layer 2 is empty"),
    "zero-deadline": ({"layers": [[A]], "aggregator": B, "layer_deadline": 0}, "layer_deadline"),
    "zero-attempts": (
        {"layers": [[_m("a", retry={"max_attempts": 0})]], "aggregator": B},
        "max_attempts",
    ),
    "no-provider": ({"layers": [[{"model": "gpt-4o"}]], "aggregator": B}, "not 'provider:model'"),
    "unknown-field": ({"layers": [[A]], "aggregator": B, "colour": "red"}, "colour"),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
async def test_bad_spec_is_a_spec_error(server, case):
    data, match = BAD_SPECS[case]
    with pytest.raises(SpecError, match=match):
        create_moa(data)
    assert server.log() == []


def test_unknown_preset():
    with pytest.raises(SpecError, match="unknown preset 'nope'; presets: .*moa"):
        create_moa(preset="nope")


def test_spec_with_a_key_in_params_is_refused(model):
    spec = {"layers": [[model("a", params={"api_key": SECRET})]], "aggregator": model("b")}
    with pytest.raises(SpecError) as info:
        create_moa(spec)
    assert SECRET not in str(info.value)


async def test_missing_keys_are_listed_all_at_once(server, model, monkeypatch):
    monkeypatch.delenv("MOA_TEST_KEY_A", raising=False)
    monkeypatch.delenv("MOA_TEST_KEY_B", raising=False)
    spec = {
        "layers": [[model("a", api_key_env="MOA_TEST_KEY_A"), model("b")]],
        "aggregator": model("agg", api_key_env="MOA_TEST_KEY_B"),
    }
    with pytest.raises(MissingAPIKeyError) as info:
        await create_moa(spec).ainvoke({"messages": [("user", "hi")]})
    assert info.value.missing == {"MOA_TEST_KEY_A": ["a"], "MOA_TEST_KEY_B": ["agg"]}
    assert "MOA_TEST_KEY_A (needed by a)" in str(info.value)
    assert "MOA_TEST_KEY_B (needed by agg)" in str(info.value)
    assert server.log() == []


# ------------------------------------------------------------------ secrets


def _text(obj) -> str:
    return repr(obj) + json.dumps(obj, default=repr)


@pytest.mark.parametrize("echo", [False, True], ids=["plain", "upstream-echoes-the-key"])
async def test_api_key_never_leaks(server, model, monkeypatch, tmp_path, echo):
    """Not in results, events, errors, tracebacks or checkpoint bytes: not even when a failing
    upstream quotes the Authorization header back in its error body."""
    monkeypatch.setenv("MOA_TEST_SECRET_KEY", SECRET)
    keyed = {"api_key_env": "MOA_TEST_SECRET_KEY"}
    spec = {
        "layers": [[model("a", **keyed), model("b", **keyed)], [model("a", **keyed)]],
        "aggregator": model("agg", **keyed),
    }
    db = tmp_path / "checkpoints.sqlite"
    seen: list[str] = []
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        graph = create_moa(spec, checkpointer=saver)

        config = {"configurable": {"thread_id": "ok"}}
        modes = ["values", "updates", "custom", "messages", "debug"]
        async for chunk in graph.astream({"messages": [("user", "hi")]}, config, stream_mode=modes):
            seen.append(_text(chunk))
        state = await graph.aget_state(config)
        assert state.values["answer"] == "agg says: hi"
        seen.append(_text(state))
        seen += [_text(s) async for s in graph.aget_state_history(config)]

        # Failing runs: the aggregator, then a whole layer.
        server.set_behavior("agg", Behavior(always_status=500, echo_auth=echo))
        bad = {"configurable": {"thread_id": "agg-fails"}}
        with pytest.raises(ModelCallError) as agg_err:
            await graph.ainvoke({"messages": [("user", "again")]}, bad)
        server.set_behavior("a", Behavior(always_status=401, echo_auth=echo))
        server.set_behavior("b", Behavior(always_status=401, echo_auth=echo))
        worse = {"configurable": {"thread_id": "layer-fails"}}
        with pytest.raises(LayerFailedError) as layer_err:
            await graph.ainvoke({"messages": [("user", "once more")]}, worse)
        for exc in (agg_err.value, layer_err.value):
            seen.append("".join(traceback.format_exception(exc)))
            seen.append(_text(exc.partial))
        seen.append(_text((await graph.aget_state(bad)).values))
        seen.append(_text((await graph.aget_state(worse)).values))

    files = sorted(tmp_path.glob("checkpoints.sqlite*"))
    assert files and sum(f.stat().st_size for f in files) > 0
    for text in seen:
        assert SECRET not in text
        assert "SECRET-1234567890" not in text
    for f in files:
        raw = f.read_bytes()
        assert SECRET.encode() not in raw and b"1234567890abcdef" not in raw
    # ... and yet the key was sent with every request.
    log = server.log()
    assert log and all(r["has_auth"] for r in log)
