"""Prompt fidelity: every model receives exactly what the reference implementation builds."""

from __future__ import annotations

import copy

import pytest
from langchain_core.messages import convert_to_openai_messages

from langgraph_moa.graphs.builder import create_moa
from langgraph_moa.prompts import AGGREGATE_PROMPT, inject_references
from langgraph_moa.testing import RecordingChatModel

PAPER_TEXT = (
    "You have been provided with a set of responses from various open-source models to the "
    "latest user query. Your task is to synthesize these responses into a single, high-quality "
    "response. It is crucial to critically evaluate the information provided in these "
    "responses, recognizing that some of it may be biased or incorrect. Your response should "
    "not simply replicate the given answers but should offer a refined, accurate, and "
    "comprehensive reply to the instruction. Ensure your response is well-structured, coherent, "
    "and adheres to the highest standards of accuracy and reliability.\n\nResponses from models:"
)


def reference_inject(messages: list[dict], references: list[str]) -> list[dict]:
    """together-moa utils.inject_references_to_messages, transcribed as the oracle."""
    messages = copy.deepcopy(messages)
    system = PAPER_TEXT
    for i, reference in enumerate(references):
        system += f"\n{i + 1}. {reference}"
    if messages[0]["role"] == "system":
        messages[0]["content"] += "\n\n" + system
    else:
        messages = [{"role": "system", "content": system}] + messages
    return messages


def as_dicts(messages) -> list[dict]:
    return [
        {"role": m["role"], "content": m["content"]} for m in convert_to_openai_messages(messages)
    ]


def test_prompt_is_the_paper_text_verbatim():
    assert AGGREGATE_PROMPT == PAPER_TEXT


@pytest.mark.parametrize(
    "conversation",
    [
        [{"role": "user", "content": "Name a prime."}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a prime."}],
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a prime."},
        ],
    ],
    ids=["no-system", "system", "multi-turn"],
)
def test_inject_matches_reference(conversation):
    refs = ["2 is prime.", "Seven.\nIt is prime.", ""]
    from langchain_core.messages import convert_to_messages

    got = as_dicts(inject_references(convert_to_messages(conversation), refs))
    assert got == reference_inject(conversation, refs)


@pytest.mark.parametrize("with_system", [False, True])
async def test_each_layer_receives_reference_messages(with_system):
    """Layer 1 sees the conversation unchanged; layer 2 and the aggregator see the previous
    layer's answers, numbered in spec order, in the system message."""
    names = ["alpha", "beta", "gamma"]
    fakes = {n: RecordingChatModel(name=n) for n in [*names, "judge"]}
    layer = [{"name": n, "model": f"openai:{n}", "base_url": "http://127.0.0.1:9"} for n in names]
    spec = {
        "layers": [layer, layer],
        "aggregator": {"name": "judge", "model": "openai:judge", "base_url": "http://127.0.0.1:9"},
    }
    conversation = [{"role": "user", "content": "Name a prime."}]
    if with_system:
        conversation.insert(0, {"role": "system", "content": "Be terse."})
    out = await create_moa(spec, chat_models=fakes).ainvoke({"messages": conversation})

    layer1 = [f"{n}: Name a prime." for n in names]
    for n in names:
        first, second = fakes[n].received
        assert as_dicts(first) == conversation
        assert as_dicts(second) == reference_inject(conversation, layer1)
    # layer 2 answers are again "<name>: <question>", and the aggregator sees them in order
    (final,) = fakes["judge"].received
    assert as_dicts(final) == reference_inject(conversation, layer1)
    assert out["references"] == layer1
    assert out["answer"] == "judge: Name a prime."


def seed_snippet_messages(user_query: str, responses: list[str]) -> list[dict]:
    """The seed snippet's construction (shared/seed-snippet.md), transcribed as the oracle;
    its prompt constant is the paper text, as the project keeps it (see test above)."""
    aggregate_prompt = PAPER_TEXT + "\n{responses}"
    formatted = "\n".join([f"{i + 1}. {r}" for i, r in enumerate(responses)])
    aggregate_content = aggregate_prompt.format(responses=formatted)
    return [
        {"role": "user", "content": user_query},
        {"role": "assistant", "content": aggregate_content},
    ]


async def test_assistant_injection_reproduces_the_seed_snippet_every_layer():
    """``injection: assistant`` sends exactly the snippet's ``[user, assistant(aggregate)]``,
    rebuilt from the previous layer's answers for every later layer and the aggregator."""
    names = ["qwen", "llama", "mixtral"]
    fakes = {n: RecordingChatModel(name=n) for n in [*names, "agg"]}
    layer = [{"name": n, "model": f"openai:{n}", "base_url": "http://127.0.0.1:9"} for n in names]
    spec = {
        "layers": [layer, layer],
        "aggregator": {"name": "agg", "model": "openai:agg", "base_url": "http://127.0.0.1:9"},
        "injection": "assistant",
    }
    query = "Explain the concept of mixture of experts."
    out = await create_moa(spec, chat_models=fakes).ainvoke({"messages": [("user", query)]})

    layer1 = [f"{n}: {query}" for n in names]
    for n in names:
        first, second = fakes[n].received
        assert as_dicts(first) == [{"role": "user", "content": query}]
        assert as_dicts(second) == seed_snippet_messages(query, layer1)
    (final,) = fakes["agg"].received
    assert as_dicts(final) == seed_snippet_messages(query, layer1)
    assert out["answer"] == f"agg: {query}"


def test_assistant_before_question_keeps_the_user_turn_last():
    from langchain_core.messages import convert_to_messages

    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Q?"},
    ]
    got = as_dicts(
        inject_references(
            convert_to_messages(conversation), ["one"], mode="assistant_before_question"
        )
    )
    assert got == [
        *conversation[:2],
        {"role": "assistant", "content": PAPER_TEXT + "\n1. one"},
        conversation[2],
    ]
