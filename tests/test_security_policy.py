"""The run-spec policy (graphs/policy.py): every rule refuses with the field and the rule, and
never names a server environment variable."""

from __future__ import annotations

from typing import Any

import pytest

from langgraph_moa.errors import SpecError
from langgraph_moa.graphs.policy import RunLimits, RunPolicy
from langgraph_moa.graphs.spec import load_preset, parse_spec

CANARY_VARS = ("SECRET_CANARY", "TOGETHER_API_KEY", "AZURE_OPENAI_API_KEY", "LANGSMITH_API_KEY")
URL = "http://127.0.0.1:9/v1"


@pytest.fixture(autouse=True)
def canaries(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in CANARY_VARS:
        monkeypatch.setenv(var, f"canary-{var.lower()}")
    monkeypatch.setenv("OPENAI_API_KEY", "canary-openai")


def m(name: str = "a", **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": "openai:gpt-4o-mini", **kw}


def spec(*models: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"layers": [list(models or [m()])], "aggregator": m("agg"), **kw}


TRUSTED = RunPolicy(trust_specs=True, base_urls=("http://127.0.0.1:*",))


def refused(policy: RunPolicy, context: dict[str, Any], match: str) -> str:
    with pytest.raises(SpecError, match=match) as info:
        policy.resolve(context)
    text = str(info.value)
    for var in (*CANARY_VARS, "OPENAI_API_KEY", "HOME", "PATH"):
        assert var not in text
    return text


def test_default_policy_runs_registered_names_only():
    policy = RunPolicy(specs={"mine": parse_spec(spec())}, default="mine")
    assert policy.resolve({}).layers[0][0].name == "a"
    assert policy.resolve({"preset": "moa-lite"}) == load_preset("moa-lite")
    assert policy.resolve(None, {"preset": "mine"}) is policy.specs["mine"]
    assert "mine" in policy.names() and "moa" in policy.names()
    refused(policy, {"spec": spec()}, r"context\.spec: .*registered")
    refused(RunPolicy(), {"preset": "../../etc/passwd"}, "unknown")
    refused(RunPolicy(presets=["local"]), {"preset": "moa"}, "unknown")
    # An assistant's stored context goes through the same rules.
    with pytest.raises(SpecError, match="registered"):
        RunPolicy().resolve({}, {"spec": spec()})


@pytest.mark.parametrize(
    ("context", "match"),
    [
        ({"temperature": "hot"}, r"context\.temperature"),
        ({"temperature": 2.5}, r"context\.temperature"),
        ({"temperature": True}, r"context\.temperature"),
        ({"max_tokens": -1}, r"context\.max_tokens"),
        ({"max_tokens": 0}, r"context\.max_tokens"),
        ({"max_tokens": 1.5}, r"context\.max_tokens"),
        ({"max_tokens": 10**9}, r"context\.max_tokens"),
        ({"answer_max_tokens": 10**5}, r"context\.answer_max_tokens: .* 1 to 4096"),
        ({"answer_max_tokens": True}, r"context\.answer_max_tokens"),
        ({"tools": [{"type": "function"}]}, r"context\.tools\[0\]"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}] * 200}, r"context\.tools"),
        ({"tools": "f"}, r"context\.tools"),
        ({"tool_choice": "required"}, r"context\.tool_choice"),
        ({"response_format": {"type": "regex"}}, r"context\.response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x" * 65}}},
            r"context\.response_format\.json_schema",
        ),
    ],
)
def test_overrides_are_validated_for_every_run(context, match):
    refused(RunPolicy(), context, match)
    with pytest.raises(SpecError, match=match):
        RunPolicy().resolve({}, context)  # from an assistant's context too


def test_overrides_within_bounds_pass():
    assert RunPolicy().resolve({"temperature": 0, "max_tokens": 100, "preset": "local"})


@pytest.mark.parametrize(
    ("model", "match"),
    [
        # Any-variable keys, whatever the variable.
        (m(api_key_env="SECRET_CANARY"), r"layers\[0\]\[0\]\.api_key_env: .*keys"),
        (m(api_key_env="HOME"), r"api_key_env"),
        # URL params, whatever the provider.
        (
            {"model": "together:x", "params": {"together_api_base": URL}},
            r"params\.together_api_base: endpoint/client",
        ),
        (
            {"model": "azure_openai:gpt-4o", "params": {"azure_endpoint": URL}},
            r"params\.azure_endpoint: endpoint/client",
        ),
        (
            {"model": "langsmith:gpt-4o", "params": {"openai_api_base": URL}},
            r"params\.openai_api_base: endpoint/client",
        ),
        ({"model": "openai:x", "params": {"default_headers": {"a": "b"}}}, "endpoint/client"),
        ({"model": "openai:x", "params": {"http_client": "x"}}, "endpoint/client"),
        ({"model": "openai:x", "params": {"some_new_option": 1}}, "non-sampling"),
        # base_url only where the operator allows it, and only for OpenAI-compatible clients.
        (m(base_url="http://evil.test/v1"), r"base_url: not an endpoint"),
        ({"model": "anthropic:claude", "base_url": URL}, r"base_url: not an endpoint"),
        # local: no loader params.
        ({"model": "local:smollm2", "params": {"model_path": "/etc/passwd"}}, "non-sampling"),
        ({"model": "local:smollm2", "params": {"n_threads": 100000}}, "non-sampling"),
        ({"model": "local:smollm2", "params": {"n_ctx": 10**9}}, "non-sampling"),
        # Sampling values are scalars in range.
        (m(params={"top_p": "x"}), r"params\.top_p: must be a number"),
        (m(params={"top_p": 9}), r"params\.top_p"),
        (m(params={"seed": -1}), r"params\.seed"),
        (m(params={"stop": ["x"] * 50}), r"params\.stop"),
        (m(params={"stop": {"a": 1}}), r"params\.stop"),
        # Caps.
        (m(max_tokens=100_000), r"max_tokens: required, at most 4096"),
        (m(max_tokens=None), r"max_tokens: required"),
        (m(timeout=1000), r"timeout: required, at most 300"),
        (m(timeout=None), r"timeout: required"),
        (m(retry={"max_attempts": 20}), r"retry\.max_attempts: at most 5"),
        (m(retry={"initial_interval": 100}), r"retry\.initial_interval: at most 60"),
        (m(retry={"max_interval": 3600}), r"retry\.max_interval: at most 60"),
        (m(retry={"max_retry_after": 3600}), r"retry\.max_retry_after: at most 60"),
        (m(context_window=2_000_000), r"context_window: at most"),
        (m(system_prompt="x" * 30_000), r"system_prompt: at most"),
        (m(fallback=m("f", api_key_env="SECRET_CANARY")), r"\[0\]\.fallback\.api_key_env"),
        (
            m(fallback={"model": "local:smollm2", "params": {"n_threads": 100000}}),
            r"\[0\]\.fallback\.params\.n_threads: non-sampling",
        ),
    ],
)
def test_client_spec_rules(model, match):
    refused(TRUSTED, {"spec": spec(model)}, match)


def test_spec_level_caps_and_regexes():
    refused(TRUSTED, {"spec": spec(strip_patterns=["(a+)+$"])}, r"strip_patterns: .*server")
    refused(TRUSTED, {"spec": spec(strip_patterns=[])}, r"strip_patterns")
    refused(TRUSTED, {"spec": {"layers": [[m()]] * 5, "aggregator": m("agg")}}, "at most 4 lay")
    many = [m(f"p{i}") for i in range(9)]
    refused(TRUSTED, {"spec": spec(*many)}, r"layers\[0\]: at most 8 proposers")
    refused(TRUSTED, {"spec": spec(layer_deadline=1000)}, r"layer_deadline: at most")
    refused(TRUSTED, {"spec": spec(aggregate_prompt="x" * 30_000)}, r"aggregate_prompt")
    refused(TRUSTED, {"spec": spec(), "preset": "moa"}, "not both")
    refused(TRUSTED, {"spec": "/etc/passwd"}, "not a path")
    small = RunPolicy(trust_specs=True, limits=RunLimits(models=2))
    refused(small, {"spec": spec(m("a"), m("b"))}, "at most 2 models")


def test_allowed_providers_models_and_base_urls():
    ok = TRUSTED.resolve({"spec": spec(m(base_url="http://127.0.0.1:8000/v1"))})
    assert ok.layers[0][0].key_env is None  # a model with a base_url reads no server key
    only = RunPolicy(trust_specs=True, providers={"openai"}, models=["openai:gpt-4o*"])
    assert only.resolve({"spec": spec()})
    refused(only, {"spec": spec({"model": "together:x"})}, "provider 'together' is not allowed")
    refused(only, {"spec": spec({"model": "openai:o1"})}, "not an allowed model")


def test_missing_provider_key_does_not_name_the_variable(monkeypatch):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    text = refused(TRUSTED, {"spec": spec({"model": "groq:llama"})}, "'groq' is not available")
    assert "GROQ" not in text


def test_from_env(monkeypatch, tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("layers: [[{model: 'openai:gpt-4o'}]]\naggregator: {model: 'openai:gpt-4o'}\n")
    monkeypatch.setenv("MOA_SPECS", str(path))
    monkeypatch.setenv("MOA_TRUST_RUN_SPECS", "1")
    monkeypatch.setenv("MOA_RUN_BASE_URLS", "http://127.0.0.1:*, http://10.0.0.1/v1")
    policy = RunPolicy.from_env(default="team")
    assert policy.trust_specs and "team" in policy.names()
    assert policy.base_urls == ("http://127.0.0.1:*", "http://10.0.0.1/v1")
    assert policy.resolve({}).aggregator.model == "openai:gpt-4o"
    monkeypatch.setenv("MOA_TRUST_RUN_SPECS", "yes")  # only "1" opts in
    assert not RunPolicy.from_env().trust_specs


@pytest.mark.parametrize("model", ["langsmith:gpt-4o", "azure_openai:gpt-4o", "bedrock:claude"])
def test_gateway_providers_only_when_the_operator_names_them(model):
    """Issue 20: a gateway provider (LangSmith's, Azure's, a cloud account's) spends the
    server's credentials on whatever the gateway serves; MOA_RUN_MODELS=* is not enough."""
    provider = model.split(":")[0]
    refused(TRUSTED, {"spec": spec(m(model=model))}, rf"provider '{provider}' is not allowed")
    anything = RunPolicy(trust_specs=True, models=["*"])
    refused(anything, {"spec": spec(m(model=model))}, "unless the server's operator names it")
    named = RunPolicy(trust_specs=True, models=[f"{provider}:*", "openai:*"])
    assert named.resolve({"spec": spec(m(model=model))}).layers[0][0].model == model
    chosen = RunPolicy(trust_specs=True, providers={provider, "openai"})
    assert chosen.resolve({"spec": spec(m(model=model))})
