"""Failure handling for every provider, not just the ``openai`` SDK: errors shaped like
Anthropic's and Google's SDKs (built here as look-alikes, so no SDK is installed) are retried,
not retried, waited on and described from what they carry: a status code, headers, a message.
The real-HTTP suite (tests/test_faults.py) covers the ``openai`` SDK on the wire."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.nodes.failures import (
    describe,
    is_context_length,
    retry_after,
    should_retry,
    status_code,
)
from langgraph_moa.testing import RecordingChatModel


class _Response:
    """What httpx.Response offers the SDKs' errors: a status code and headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class AnthropicLikeError(Exception):
    """anthropic.APIStatusError's shape: message, status_code, response, body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status
        self.response = _Response(status, headers)
        self.body = {"type": "error", "error": {"type": "api_error", "message": message}}


class GoogleLikeError(Exception):
    """google.genai.errors.APIError's shape: an int ``code``, a string ``status``, a
    ``message`` and a ``response`` whose headers may carry Retry-After."""

    def __init__(self, code: int, status: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{code} {status}. {message}")
        self.code = code
        self.status = status
        self.message = message
        self.response = _Response(code, headers)


class ConnectLikeError(Exception):
    """A connection failure wrapped by an SDK (no status code), e.g. APIConnectionError."""


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (AnthropicLikeError(401, "invalid x-api-key"), False),
        (AnthropicLikeError(403, "permission denied"), False),
        (AnthropicLikeError(404, "model not found"), False),
        (AnthropicLikeError(429, "rate limited"), True),
        (AnthropicLikeError(529, "overloaded"), True),
        (GoogleLikeError(401, "UNAUTHENTICATED", "API key not valid"), False),
        (GoogleLikeError(404, "NOT_FOUND", "models/x is not found"), False),
        (GoogleLikeError(408, "DEADLINE_EXCEEDED", "deadline"), True),
        (GoogleLikeError(409, "ABORTED", "conflict"), True),
        (GoogleLikeError(429, "RESOURCE_EXHAUSTED", "quota"), True),
        (GoogleLikeError(503, "UNAVAILABLE", "try later"), True),
        (ConnectLikeError("connection reset"), True),
    ],
)
def test_retry_decision_comes_from_the_status_any_sdk_carries(error, retried):
    assert should_retry(error) is retried


def test_retry_after_and_its_milliseconds_from_any_provider():
    assert retry_after(AnthropicLikeError(429, "slow", {"retry-after": "2"})) == 2.0
    assert retry_after(GoogleLikeError(429, "X", "q", {"Retry-After": "3"})) == 3.0
    assert retry_after(AnthropicLikeError(429, "s", {"retry-after-ms": "250"})) == 0.25
    assert retry_after(AnthropicLikeError(429, "s", {"retry-after": "Wed, 21 Oct"})) is None
    assert retry_after(ConnectLikeError("x")) is None


def test_context_length_and_description_from_any_provider():
    long = AnthropicLikeError(400, "prompt is too long: 210000 tokens > 200000 maximum")
    google = GoogleLikeError(400, "INVALID_ARGUMENT", "input exceeds the maximum number of tokens")
    assert is_context_length(long) and is_context_length(google)
    assert not is_context_length(AnthropicLikeError(400, "temperature must be <= 1"))
    assert not is_context_length(AnthropicLikeError(401, "context length key invalid"))
    assert status_code(google) == 400
    assert describe(AnthropicLikeError(401, "invalid x-api-key")) == "HTTP 401: invalid x-api-key"
    assert describe(GoogleLikeError(429, "RESOURCE_EXHAUSTED", "quota")) == "HTTP 429: quota"


class Failing(RecordingChatModel):
    """A per-name fake that raises ``errors`` in order, then answers."""

    errors: list[Any] = []

    def _text(self, messages: list[BaseMessage]) -> str:
        if self.errors:
            raise self.errors.pop(0)
        return super()._text(messages)


def _spec(**retry: Any) -> dict[str, Any]:
    def m(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": f"openai:{name}",
            "base_url": "http://127.0.0.1:9",
            "retry": {"jitter": False, "initial_interval": 0.01, "max_attempts": 3, **retry},
        }

    return {"layers": [[m("a"), m("b")]], "aggregator": m("agg")}


async def test_a_401_from_another_sdk_is_recorded_once_never_retried():
    fakes = {
        "a": Failing(name="a", errors=[AnthropicLikeError(401, "invalid x-api-key")]),
        "b": RecordingChatModel(name="b"),
        "agg": RecordingChatModel(name="agg"),
    }
    out = await create_moa(_spec(), chat_models=fakes).ainvoke({"messages": [("user", "Q")]})
    a = next(c for c in out["calls"] if c["model"] == "a")
    assert (a["status"], a["attempts"], a["error"]) == ("failed", 1, "HTTP 401: invalid x-api-key")
    assert fakes["a"].received == [] and out["references"] == ["b: Q"]


async def test_a_429_from_another_sdk_waits_its_retry_after_then_succeeds():
    fakes = {
        "a": Failing(
            name="a",
            errors=[GoogleLikeError(429, "RESOURCE_EXHAUSTED", "quota", {"retry-after": "0.4"})],
        ),
        "b": RecordingChatModel(name="b"),
        "agg": RecordingChatModel(name="agg"),
    }
    start = time.perf_counter()
    out = await create_moa(_spec(), chat_models=fakes).ainvoke({"messages": [("user", "Q")]})
    assert time.perf_counter() - start >= 0.4  # the provider's wait, not the 0.01 s backoff
    a = next(c for c in out["calls"] if c["model"] == "a")
    assert (a["status"], a["attempts"]) == ("ok", 2)
    assert out["references"] == ["a: Q", "b: Q"]


class Slow(RecordingChatModel):
    """A per-name fake that takes ``delay`` seconds to answer a non-streaming call."""

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return self._generate(messages, *args, **kwargs)


async def test_a_thousand_runs_leave_nothing_behind():
    """A long-running server: 1,000 runs, some with a proposer cut by the deadline, some with
    a failing proposer, some whose whole layer fails; afterwards no layer clock, no attempt
    counter and no task is left, and the model caches are bounded."""
    from langgraph_moa.errors import LayerFailedError
    from langgraph_moa.models import factory
    from langgraph_moa.nodes import deadline

    def spec(quorum: int) -> dict[str, Any]:
        base = _spec(max_attempts=1)
        base["layers"] = [[*base["layers"][0], {**base["layers"][0][0], "name": "slow"}]]
        return {**base, "min_successful": quorum, "layer_deadline": 0.02}

    never = 1000  # more than the 250 runs that use them
    # a fails in half the runs, b answers: slow is cut once b has answered
    cut_and_failed = create_moa(
        spec(1),
        chat_models={
            "a": Failing(name="a", errors=[AnthropicLikeError(500, "boom")] * 375),
            "b": RecordingChatModel(name="b"),
            "slow": Slow(name="slow", delay=5.0),
            "agg": RecordingChatModel(name="agg"),
        },
    )
    # every proposer fails: the layer misses its quorum and the run raises
    layer_fails = create_moa(
        spec(1),
        chat_models={
            "a": Failing(name="a", errors=[AnthropicLikeError(500, "boom")] * never),
            "b": Failing(name="b", errors=[GoogleLikeError(503, "UNAVAILABLE", "x")] * never),
            "slow": Failing(name="slow", errors=[AnthropicLikeError(401, "bad key")] * never),
            "agg": RecordingChatModel(name="agg"),
        },
    )
    outcomes = {"answered": 0, "layer failed": 0}

    async def one(i: int) -> None:
        graph = layer_fails if i % 4 == 0 else cut_and_failed
        try:
            out = await graph.ainvoke({"messages": [("user", f"q{i}")]})
        except LayerFailedError:
            outcomes["layer failed"] += 1
            return
        assert {c["model"]: c["status"] for c in out["calls"]}["slow"] == "cut"
        outcomes["answered"] += 1

    for start in range(0, 1000, 100):
        await asyncio.gather(*(one(i) for i in range(start, start + 100)))
    await asyncio.sleep(0.05)

    assert outcomes == {"answered": 750, "layer failed": 250}
    assert deadline._clocks == {}
    assert not hasattr(__import__("langgraph_moa.nodes.model").nodes.model, "_attempts")
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert all(len(models) <= factory.MAX_MODELS for models in factory._models.values())


# -------------------------------------------------- an answer call that ends without an answer

PRICE = {"input": 1.0, "output": 2.0}


async def test_a_failed_answer_call_is_recorded_and_counted(server: Any, model: Any) -> None:
    """The aggregator's HTTP 500 after its retries ends the run; its call travels with the
    error as a ``failed`` record (attempts, latency, reason), so every face's call and cost
    totals (``moa --json``, ``moa eval``'s journal) count it."""
    from langgraph_moa.costs import run_totals
    from langgraph_moa.errors import ModelCallError
    from langgraph_moa.eval.answer import moa_answer
    from langgraph_moa.testing import Behavior

    server.set_behavior("agg", Behavior(always_status=500, error_latency=0.05))
    spec = {
        "layers": [[model("a", price=PRICE), model("b", price=PRICE)]],
        "aggregator": model("agg", price=PRICE),
    }
    with pytest.raises(ModelCallError) as info:
        await create_moa(spec).ainvoke({"messages": [("user", "Q")]})
    calls = info.value.partial["calls"]
    assert [(c["model"], c["status"]) for c in calls] == [
        ("a", "ok"),
        ("b", "ok"),
        ("agg", "failed"),
    ]
    agg = calls[-1]
    assert agg["attempts"] == 3 == len(server.log("agg"))
    assert agg["error"].startswith("HTTP 500") and agg["node"] == "aggregator"
    assert agg["latency_s"] >= 0.05  # the last attempt's wall time
    assert (agg["input_tokens"], agg["output_tokens"], agg["cost_usd"]) == (0, 0, 0.0)
    totals = run_totals(calls)
    assert (totals["calls"], totals["failed"]) == (3, 1)
    assert totals["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls[:2]))

    # moa eval: the journal (what the summary's totals are made of) gets it exactly once
    journal: list[dict[str, Any]] = []
    result = await moa_answer(create_moa(spec), [("user", "Q")], journal=journal.extend)
    assert result["answer"] is None and "agg" in result["error"]
    assert [(c["model"], c["status"]) for c in journal] == [
        ("a", "ok"),
        ("b", "ok"),
        ("agg", "failed"),
    ]


async def test_a_seat_has_one_record_whether_its_fallback_answers_or_fails(
    server: Any, model: Any
) -> None:
    """No double count: a fallback that answers replaces the seat's record; one that fails
    too leaves one ``failed`` record naming both (as a proposer's seat does)."""
    from langgraph_moa.errors import ModelCallError
    from langgraph_moa.testing import Behavior

    server.set_behavior("agg", Behavior(always_status=500))
    spec = {"layers": [[model("a")]], "aggregator": model("agg", fallback=model("fb"))}
    out = await create_moa(spec).ainvoke({"messages": [("user", "Q")]})
    assert [(c["model"], c["status"]) for c in out["calls"]] == [("a", "ok"), ("fb", "fallback")]

    server.set_behavior("fb", Behavior(always_status=503))
    with pytest.raises(ModelCallError) as info:
        await create_moa(spec).ainvoke({"messages": [("user", "Q")]})
    calls = info.value.partial["calls"]
    assert [(c["model"], c["status"]) for c in calls] == [("a", "ok"), ("agg", "failed")]
    assert "HTTP 500" in calls[-1]["error"] and "fallback fb: HTTP 503" in calls[-1]["error"]

    # a failed layer answered by the aggregator's fallback node, which fails as well
    server.set_behavior("a", Behavior(always_status=500))
    with pytest.raises(ModelCallError) as info:
        await create_moa(spec).ainvoke({"messages": [("user", "Q")]})
    calls = info.value.partial["calls"]
    assert [(c["node"], c["model"], c["status"]) for c in calls] == [
        ("layer_1/a", "a", "failed"),
        ("fallback", "fb", "failed"),
    ]
