"""Known prices of the presets' models, so ``calls[].cost_usd``, ``moa estimate`` and
``max_cost`` work without every user typing a ``price`` into their spec.

A spec's own ``price`` always wins. The table applies only to a model called at its
provider's own endpoint (no ``base_url``): the same id behind another server costs what that
server charges. Prices change; a model whose price we could not confirm from a public source
is listed with ``None`` rather than a guess, and its calls report ``cost_usd: None``.
"""

from __future__ import annotations

PRICES_CHECKED = "2026-11-28"
"""When the table below was last checked against its sources."""

# provider:model -> (USD per 1M input tokens, USD per 1M output tokens, source) or None.
PRICES: dict[str, tuple[float, float, str] | None] = {
    # OpenAI's pricing page (https://openai.com/api/pricing/): gpt-4o (2024-08-06 snapshot,
    # the one "gpt-4o" points to) $2.50 in / $10.00 out per 1M tokens.
    "openai:gpt-4o": (2.50, 10.00, "https://openai.com/api/pricing/"),
    "openai:gpt-4o-mini": (0.15, 0.60, "https://openai.com/api/pricing/"),
    # The embedded llama.cpp model runs on your own CPU.
    "local:smollm2": (0.0, 0.0, "runs locally"),
    # The paper's Together models: Together lists prices per model at
    # https://www.together.ai/pricing, but these 2024 models are no longer on that page and we
    # found no public source we could confirm, so their price is unknown here. Put a `price`
    # in your spec (e.g. from your Together bill) to get costs and to use max_cost.
    "together:Qwen/Qwen1.5-110B-Chat": None,
    "together:Qwen/Qwen1.5-72B-Chat": None,
    "together:microsoft/WizardLM-2-8x22B": None,
    "together:meta-llama/Llama-3-70b-chat-hf": None,
    "together:mistralai/Mixtral-8x22B-Instruct-v0.1": None,
    "together:databricks/dbrx-instruct": None,
}


def known_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for ``provider:model``, or None if unknown."""
    entry = PRICES.get(model)
    return None if entry is None else (entry[0], entry[1])
