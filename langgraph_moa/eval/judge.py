"""The judge: any chat model (``provider:model``, an OpenAI-compatible ``base_url``, the
embedded model), called as FastChat's ``llm_judge`` calls GPT-4: one system message, one
user message, temperature 0, up to 2048 tokens, and the verdict read with FastChat's regexes.

A judge call that fails after its retries is recorded as FastChat records it (score -1 /
verdict ``error``) with the error text; it is never guessed.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import HumanMessage, SystemMessage

from langgraph_moa.errors import MoAError
from langgraph_moa.graphs.spec import ModelSpec

JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048
"""FastChat ``chat_completion_openai(model, conv, temperature=0, max_tokens=2048)``."""
ANTHROPIC_JUDGE_MAX_TOKENS = 1024
"""FastChat ``chat_completion_anthropic(model, conv, temperature=0, max_tokens=1024)``."""


def fastchat_name(model: str) -> str:
    """The judge's name as FastChat writes it (``--judge-model gpt-4``, the file
    ``model_judgment/gpt-4_single.jsonl``): the model id without our ``provider:``."""
    return model.partition(":")[2] or model


ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
"""FastChat ``one_score_pattern`` and ``one_score_pattern_backup``."""


def parse_rating(judgment: str) -> float:
    """The rating in ``judgment``: the first ``[[x]]``, else the first ``[x]``; -1 if none
    (FastChat's value for an unparsable judgment, excluded from every average)."""
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    return float(match.group(1)) if match else -1.0


def parse_verdict(judgment: str) -> str:
    """Pairwise verdict as FastChat's ``[[A]]`` format reads it: ``A``, ``B``, ``tie`` or
    ``error`` (checked in that order, so a judgment naming both counts as ``A``)."""
    if "[[A]]" in judgment:
        return "A"
    if "[[B]]" in judgment:
        return "B"
    if "[[C]]" in judgment:
        return "tie"
    return "error"


def judge_spec(
    judge: str, *, base_url: str | None = None, max_tokens: int | None = None
) -> ModelSpec:
    """``--judge``: ``provider:model`` (``openai:gpt-4o``, ``local:smollm2``...) or a YAML/JSON
    file holding one ModelSpec (for ``api_key_env``, ``price``, ``params``). Temperature is
    always 0; max_tokens as FastChat (1024 for Anthropic judges, else 2048) unless given."""
    path = Path(judge)
    data: dict[str, Any]
    if judge.endswith((".yaml", ".yml", ".json")) and path.is_file():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise MoAError(f"judge file {judge!r}: expected a mapping (one ModelSpec)")
        data = loaded
    else:
        data = {"model": judge}
    data.setdefault("name", "judge")
    if str(data.get("model", "")).startswith("local:"):
        # The embedded model cannot hang on a network and always stops at max_tokens; on a
        # busy CPU 2048 tokens can take minutes, so no timeout unless the file sets one.
        data.setdefault("timeout", None)
    data["temperature"] = JUDGE_TEMPERATURE
    default = (
        ANTHROPIC_JUDGE_MAX_TOKENS
        if str(data.get("model", "")).startswith("anthropic:")
        else JUDGE_MAX_TOKENS
    )
    data["max_tokens"] = max_tokens or data.get("max_tokens") or default
    if base_url:
        data["base_url"] = base_url
    try:
        spec = ModelSpec.model_validate(data)
    except Exception as exc:  # pydantic's message names the field
        raise MoAError(f"--judge {judge!r}: {exc}") from None
    if spec.key_env:
        import os

        if not os.environ.get(spec.key_env):
            raise MoAError(f"--judge {spec.model}: set {spec.key_env} (the judge's API key)")
    return spec


class Judge:
    """One judge model; ``await judge(system, user)`` -> (judgment text, call record)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.model

    async def __call__(self, system: str, user: str) -> tuple[str, dict[str, Any]]:
        from langgraph_moa.models.factory import get_chat_model

        spec = self.spec
        retry = spec.retry
        # tenacity's wait_exponential_jitter; "multiplier" is its current name for "initial"
        backoff: Any = {
            "multiplier": retry.initial_interval,
            "max": retry.max_interval,
            "exp_base": retry.backoff_factor,
            "jitter": 1.0 if retry.jitter else 0.0,
        }
        chat = get_chat_model(spec).with_retry(
            stop_after_attempt=retry.max_attempts, exponential_jitter_params=backoff
        )
        messages = [SystemMessage(system), HumanMessage(user)]
        start = time.perf_counter()
        record: dict[str, Any] = {"node": "judge", "model": spec.model, "status": "ok"}
        try:
            message = await asyncio.wait_for(chat.ainvoke(messages), spec.timeout)
            text: str = str(message.text)
            usage = getattr(message, "usage_metadata", None) or {}
        except Exception as exc:  # recorded, never raised: FastChat scores it -1
            text, usage = "$ERROR$", {}
            from langgraph_moa.nodes.failures import describe  # one-line and secret-free

            reason = (
                f"timed out after {spec.timeout:g} s"
                if isinstance(exc, asyncio.TimeoutError)
                else describe(exc)
            )
            record.update(status="failed", error=reason)
        tokens_in = int(usage.get("input_tokens", 0))
        tokens_out = int(usage.get("output_tokens", 0))
        record.update(
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            latency_s=round(time.perf_counter() - start, 4),
            cost_usd=spec.price.cost(tokens_in, tokens_out) if spec.price else None,
        )
        return text, record
