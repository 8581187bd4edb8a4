"""The chat-model factory: one model per spec and loop, and the streaming fast path gives
exactly the message LangChain would have built from the SDK's typed chunks."""

from __future__ import annotations

from langchain_openai import ChatOpenAI

from langgraph_moa.graphs.spec import ModelSpec
from langgraph_moa.models.factory import aclose_clients, get_chat_model
from langgraph_moa.testing import Behavior, OpenAIServer


async def _merged(model, prompt: str):
    merged = None
    async for chunk in model.astream(prompt):
        merged = chunk if merged is None else merged + chunk
    return merged


async def test_fast_stream_path_equals_langchain_default():
    async with OpenAIServer(default=Behavior(tokens=12)) as srv:
        spec = ModelSpec(name="m", model="openai:m", base_url=srv.base_url, max_tokens=50)
        fast = get_chat_model(spec)
        assert get_chat_model(spec) is fast  # cached per spec and event loop
        plain = ChatOpenAI(
            model="m",
            base_url=srv.base_url,
            api_key="x",
            max_tokens=50,
            temperature=0.7,
            stream_usage=True,
            max_retries=0,
        )
        a, b = await _merged(fast, "Hello there"), await _merged(plain, "Hello there")
        assert a.content == b.content and len(a.content.split()) == 12
        assert a.usage_metadata == b.usage_metadata
        assert a.response_metadata == b.response_metadata
        assert a.id and b.id
        await aclose_clients()


async def test_params_that_need_typed_chunks_keep_them():
    async with OpenAIServer() as srv:
        spec = ModelSpec(
            name="m",
            model="openai:m",
            base_url=srv.base_url,
            params={"include_response_headers": True},
        )
        model = get_chat_model(spec)
        assert "_process_response_data" not in vars(model.root_async_client)
        await aclose_clients()
