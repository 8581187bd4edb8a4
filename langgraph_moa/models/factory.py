"""Turn a ``ModelSpec`` into a chat model: lazily, once per model per event loop, sharing
one HTTP connection pool per base URL.

Why per event loop: the fast async transport (the OpenAI SDK's aiohttp client) binds its
session to the loop it first ran on, so a process that runs several loops (tests, a sync
``invoke`` inside a server) gets one pool per loop. Why aiohttp: under 64 concurrent runs it
was ~5x faster than the SDK's default httpx pool on this kind of machine (see DESIGN notes and
``benchmarks/``). Why no client retries: retries belong to the node's ``RetryPolicy``.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import OrderedDict
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from langgraph_moa.graphs.spec import ModelSpec
from langgraph_moa.models.providers import LOCAL_PROVIDER, OPENAI_COMPATIBLE
from langgraph_moa.redact import register_key_env

NO_KEY = "not-needed"
"""Placeholder key for keyless OpenAI-compatible servers (llama.cpp server, vLLM, Ollama)."""

MAX_MODELS = 256
"""Chat models kept per event loop (least recently used leaves first): a long-running server
that sees many distinct specs must not grow without bound. Pools are per base URL, not here."""

_models: weakref.WeakKeyDictionary[Any, OrderedDict[str, BaseChatModel]] = (
    weakref.WeakKeyDictionary()
)
_sync_models: OrderedDict[str, BaseChatModel] = OrderedDict()
_pools: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _api_key(spec: ModelSpec) -> SecretStr | None:
    var = spec.key_env
    if var is None:
        return SecretStr(NO_KEY) if spec.base_url else None
    register_key_env(var)  # from now on its value is scrubbed from every error text
    value = os.environ.get(var)
    if not value:
        from langgraph_moa.errors import MissingAPIKeyError

        raise MissingAPIKeyError({var: [str(spec.name)]})
    return SecretStr(value)


def _aiohttp_pool(loop: asyncio.AbstractEventLoop, base_url: str) -> Any:
    """One aiohttp-backed client per (event loop, base URL), shared by every model on it."""
    import openai

    pools = _pools.setdefault(loop, {})
    if base_url not in pools:
        # Generous limits: a 6-proposer layer x 256 concurrent runs must not queue on the pool.
        import httpx2

        pools[base_url] = openai.DefaultAioHttpClient(
            limits=httpx2.Limits(max_connections=2048, max_keepalive_connections=512)
        )
    return pools[base_url]


def _build(spec: ModelSpec, loop: asyncio.AbstractEventLoop | None) -> BaseChatModel:
    if spec.provider == LOCAL_PROVIDER:
        from langgraph_moa.models.local import ChatLocalLlama

        return ChatLocalLlama(
            temperature=spec.temperature if spec.temperature is not None else 0.7,
            max_tokens=spec.max_tokens or 128,
            **spec.params,
        )
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        **spec.params,
    }
    key = _api_key(spec)
    if spec.provider in OPENAI_COMPATIBLE:
        kwargs.update(max_retries=0, stream_usage=True)
        if key is not None:
            kwargs["api_key"] = key
        if spec.base_url:
            kwargs["base_url"] = spec.base_url
        if loop is not None:
            base = spec.base_url or spec.provider
            kwargs["http_async_client"] = _aiohttp_pool(loop, base)
    elif key is not None:
        kwargs["api_key"] = key
        if spec.base_url:
            kwargs["base_url"] = spec.base_url
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model: BaseChatModel = init_chat_model(spec.model_id, model_provider=spec.provider, **kwargs)
    if spec.provider in OPENAI_COMPATIBLE and loop is not None:
        _tune_openai(model, spec)
    return model


_KEEP_SDK_OBJECTS = frozenset({"response_format", "include_response_headers", "use_responses_api"})
"""Params under which LangChain may read the SDK's typed reply objects themselves."""


def _tune_openai(model: BaseChatModel, spec: ModelSpec) -> None:
    """Measured CPU savings on the OpenAI-compatible call path (see ``benchmarks/README.md``).

    1. The SDK parses every reply into pydantic objects (``ChatCompletion`` for a plain call,
       a ``ChatCompletionChunk`` per streamed token) and LangChain's OpenAI model
       immediately ``model_dump()``s them back into dicts, in a worker thread for a plain
       call. Handing it the decoded JSON dict instead skips both conversions: about a third
       of the client CPU of a streamed call and 4-5 % of a whole non-streamed run.
       LangChain accepts dict replies and reads them only with ``.get``; the message is the
       same but for the fields the server did not send (the typed path adds
       ``additional_kwargs["refusal"] = None`` and null usage details). Not done for the
       SDK's helpers that read the typed objects (structured output's ``parse`` and
       ``stream``, also when ``response_format`` comes with the call), nor when params route
       to raw-response headers or the Responses API.
    2. ``stream_chunk_timeout`` wraps every chunk in ``asyncio.wait_for`` (a task per
       token). With ``spec.timeout`` set the node already bounds the whole attempt, so the
       per-chunk watchdog is redundant; the env variable still wins if set.
    """
    if (
        spec.timeout
        and "stream_chunk_timeout" in type(model).model_fields
        and "stream_chunk_timeout" not in spec.params
        and not os.environ.get("LANGCHAIN_OPENAI_STREAM_CHUNK_TIMEOUT_S")
    ):
        setattr(model, "stream_chunk_timeout", None)  # noqa: B010 (a ChatOpenAI field)
    root = getattr(model, "root_async_client", None)
    if _KEEP_SDK_OBJECTS.intersection(spec.params) or root is None:
        return
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    typed = getattr(root, "_process_response_data", None)  # private: skip if the SDK moved it
    if not isinstance(root, openai.AsyncOpenAI) or typed is None:
        return
    choice_key = {ChatCompletion: "message", ChatCompletionChunk: "delta"}

    def process(*, data: Any, cast_to: Any, response: Any) -> Any:
        key = choice_key.get(cast_to)
        if key and type(data) is dict and not _sdk_helper_call(response):
            choices = data.get("choices") or []
            if type(choices) is list and all(type(c) is dict and key in c for c in choices):
                return data
        return typed(data=data, cast_to=cast_to, response=response)

    setattr(root, "_process_response_data", process)  # noqa: B010 (our own client only)


def _sdk_helper_call(response: Any) -> bool:
    """Whether the SDK's own helpers (``chat.completions.parse``, ``.stream``: what LangChain
    uses for ``response_format`` given at call time) made this request: they post-process the
    typed objects, so they get them. The SDK marks their requests with this header."""
    try:
        return "x-stainless-helper-method" in response.request.headers
    except (AttributeError, RuntimeError):  # no request attached: not the SDK's helper
        return False


def get_chat_model(spec: ModelSpec) -> BaseChatModel:
    """The chat model for ``spec``, created on first use in this process and event loop.

    Keys are read from the environment here, at call time, so importing and compiling a
    graph never needs one, and they live only inside the client (as ``SecretStr``).
    """
    key = spec.model_dump_json(exclude={"fallback", "retry", "name", "system_prompt"})
    loop = _running_loop()
    cache = _sync_models if loop is None else _models.setdefault(loop, OrderedDict())
    model = cache.get(key)
    if model is None:
        model = cache[key] = _build(spec, loop)
        while len(cache) > MAX_MODELS:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return model


async def aclose_clients() -> None:
    """Close this event loop's HTTP pools (call before the loop ends, e.g. in a CLI or test)."""
    loop = _running_loop()
    pools = _pools.pop(loop, {}) if loop is not None else {}
    _models.pop(loop, None)
    for pool in pools.values():
        await pool.aclose()
