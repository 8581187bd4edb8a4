"""The chat-model factory: one model per spec and loop, and the fast paths (the decoded JSON
handed to LangChain instead of the SDK's typed objects) give the message LangChain would
have built from the typed objects."""

from __future__ import annotations

import pytest
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


def _plain_openai(base_url: str) -> ChatOpenAI:
    return ChatOpenAI(
        model="m", base_url=base_url, api_key="x", max_tokens=50, temperature=0.7, max_retries=0
    )


def _calls(message) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "id"} for c in message.tool_calls]  # ids count up


async def test_fast_plain_path_equals_langchain_default():
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    async with OpenAIServer(default=Behavior(tokens=12, tool_calls=True)) as srv:
        spec = ModelSpec(name="m", model="openai:m", base_url=srv.base_url, max_tokens=50)
        fast, plain = get_chat_model(spec), _plain_openai(srv.base_url)
        # The SDK hands back the decoded JSON: no ChatCompletion is built and dumped again.
        raw = await fast.async_client.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert type(raw.parse()) is dict
        for prompt, tools in (("Hello there", []), ("get_weather in Paris", [weather])):
            a = await fast.bind_tools(tools).ainvoke(prompt)
            b = await plain.bind_tools(tools).ainvoke(prompt)
            assert a.content == b.content and _calls(a) == _calls(b)
            assert a.usage_metadata == b.usage_metadata and a.usage_metadata
            # Only what the server did not send differs: the typed path adds nulls.
            assert {k: v for k, v in b.additional_kwargs.items() if v is not None} == (
                a.additional_kwargs
            )
            usage = {k: v for k, v in b.response_metadata["token_usage"].items() if v is not None}
            assert a.response_metadata["token_usage"] == usage
            for key in ("model_name", "finish_reason", "model_provider"):
                assert a.response_metadata[key] == b.response_metadata[key]
        assert a.tool_calls and a.tool_calls[0]["name"] == "get_weather"
        await aclose_clients()


async def test_only_well_shaped_replies_skip_the_sdk_objects():
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    async with OpenAIServer() as srv:
        model = get_chat_model(ModelSpec(name="m", model="openai:m", base_url=srv.base_url))
        process = model.root_async_client._process_response_data
        plain = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant"}}]}
        chunk = {"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}}]}
        assert process(data=plain, cast_to=ChatCompletion, response=None) is plain
        assert process(data=chunk, cast_to=ChatCompletionChunk, response=None) is chunk
        # Anything else goes the SDK's way, so its errors and types stay what they were.
        for odd in ({"choices": 5}, {"choices": ["a"]}, {"choices": {"0": {}}}, chunk):
            assert type(process(data=odd, cast_to=ChatCompletion, response=None)) is ChatCompletion
        await aclose_clients()


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # LangChain dumps `parsed`
async def test_response_format_at_call_time_keeps_the_sdk_objects():
    """LangChain sends a call-time ``response_format`` through the SDK's ``parse`` and
    ``stream`` helpers, which read the typed objects: they must get them, plain or streamed."""
    from pydantic import BaseModel

    class City(BaseModel):
        city: str

    async with OpenAIServer(default=Behavior(content='{"city": "Paris"}')) as srv:
        model = get_chat_model(ModelSpec(name="m", model="openai:m", base_url=srv.base_url))
        structured = model.with_structured_output(City, method="json_schema")
        assert await structured.ainvoke("Where?") == City(city="Paris")
        streamed = [part async for part in structured.astream("Where?")]
        assert streamed and streamed[-1] == City(city="Paris")
        assert type(await model.ainvoke("plain")).__name__ == "AIMessage"  # fast path still on
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
