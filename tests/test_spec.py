"""Specs load from presets, YAML, JSON and Python; bad ones name the field."""

from __future__ import annotations

import json

import pytest

from langgraph_moa.errors import MissingAPIKeyError, SpecError
from langgraph_moa.graphs.spec import load_preset, load_spec, parse_spec, preset_names

PAPER_PROPOSERS = [
    "Qwen/Qwen1.5-110B-Chat",
    "Qwen/Qwen1.5-72B-Chat",
    "microsoft/WizardLM-2-8x22B",
    "meta-llama/Llama-3-70b-chat-hf",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "databricks/dbrx-instruct",
]


def test_presets_match_the_paper():
    assert set(preset_names()) == {"moa", "moa-lite", "moa-gpt4o", "self-moa", "local"}
    moa = load_preset("moa")
    assert len(moa.layers) == 2  # the paper's "3 layers" = 2 proposer layers + aggregator
    assert [m.model_id for m in moa.layers[0]] == PAPER_PROPOSERS
    assert moa.aggregator.model_id == "Qwen/Qwen1.5-110B-Chat"
    lite = load_preset("moa-lite")
    assert len(lite.layers) == 1 and lite.aggregator.model_id == "Qwen/Qwen1.5-72B-Chat"
    assert load_preset("moa-gpt4o").aggregator.model == "openai:gpt-4o"
    self_moa = load_preset("self-moa")
    assert {m.model for m in self_moa.layers[0]} == {"together:Qwen/Qwen1.5-110B-Chat"}
    assert {m.temperature for m in self_moa.layers[0]} == {0.7} and len(self_moa.layers[0]) == 6
    local = load_preset("local")
    assert [len(layer) for layer in local.layers] == [3, 3]
    assert {m.provider for m in local.models()} == {"local"}
    assert local.missing_keys() == {}


def test_names_default_from_model_id_and_are_made_unique():
    spec = parse_spec(
        {
            "layers": [[{"model": "openai:gpt-4o"}, {"model": "openai:gpt-4o"}]],
            "aggregator": {"model": "together:Qwen/Qwen1.5-72B-Chat"},
        }
    )
    assert [m.name for m in spec.layers[0]] == ["gpt-4o", "gpt-4o-2"]
    assert spec.aggregator.name == "qwen1.5-72b-chat"


def test_loads_yaml_and_json_files(tmp_path):
    data = {
        "layers": [[{"model": "openai:m", "base_url": "http://127.0.0.1:1/v1"}]],
        "aggregator": {"model": "openai:m", "base_url": "http://127.0.0.1:1/v1"},
    }
    (tmp_path / "s.json").write_text(json.dumps(data))
    (tmp_path / "s.yaml").write_text(
        "layers:\n  - - model: openai:m\n      base_url: http://127.0.0.1:1/v1\n"
        "aggregator:\n  model: openai:m\n  base_url: http://127.0.0.1:1/v1\n"
    )
    assert load_spec(tmp_path / "s.json") == load_spec(tmp_path / "s.yaml")


M = {"model": "openai:gpt-4o"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"layers": [], "aggregator": M}, "layers: at least one proposer layer is required"),
        ({"layers": [[M], []], "aggregator": M}, "layers: layer 2 is empty"),
        ({"aggregator": M}, "layers: Field required"),
        ({"layers": [[M]]}, "aggregator: Field required"),
        (
            {"layers": [[{**M, "name": "x"}, {**M, "name": "x"}]], "aggregator": M},
            "duplicate model name 'x' in layer 1",
        ),
        (
            {"layers": [[{"model": "nope:m"}]], "aggregator": M},
            "layers[0][0].model: unknown provider 'nope'",
        ),
        ({"layers": [[{"model": "gpt-4o"}]], "aggregator": M}, "is not 'provider:model'"),
        ({"layers": [[{**M, "timeout": -1}]], "aggregator": M}, "layers[0][0].timeout"),
        (
            {"layers": [[M]], "aggregator": M, "min_successful": 2},
            "min_successful=2 is larger than layer 1",
        ),
        ({"layers": [[{**M, "params": {"api_key": "sk-x"}}]], "aggregator": M}, "api_key_env"),
        ({"layers": [[M]], "aggregator": M, "colour": 1}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_specs_name_the_field(data, message):
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert message in str(info.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown preset 'nope'; presets: local, moa"):
        load_preset("nope")


def test_missing_keys_are_listed_all_at_once(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = load_preset("moa-gpt4o")
    with pytest.raises(MissingAPIKeyError) as info:
        spec.check_keys()
    assert set(info.value.missing) == {"TOGETHER_API_KEY", "OPENAI_API_KEY"}
    assert "gpt-4o" in info.value.missing["OPENAI_API_KEY"]
    monkeypatch.setenv("TOGETHER_API_KEY", "x")
    monkeypatch.setenv("OPENAI_API_KEY", "y")
    spec.check_keys()


def test_spec_holds_no_secret(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-very-secret-value")
    spec = parse_spec(
        {
            "layers": [[{"model": "openai:m", "api_key_env": "MY_KEY"}]],
            "aggregator": {"model": "openai:m", "api_key_env": "MY_KEY"},
        }
    )
    assert "sk-very-secret-value" not in spec.model_dump_json()
