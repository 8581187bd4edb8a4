"""Early stopping (Sparse-MoA's moderator; Residual-MoA's convergence stop): after a proposer
layer, the remaining layers are skipped straight to the aggregator when

* **the judge** (``early_stop.judge``) reads the layer's answers and ends its text with
  ``VERDICT: FINAL`` (anything else, a failed call included, means go on: stopping is the
  decision that must be earned), or
* **the layers agree**: ``agreement(layer k, layer k-1) >= early_stop.similarity``.

Agreement is the *mean best-match token-set Jaccard*: each answer of layer k is compared with
its closest answer of layer k-1 (Jaccard of their sets of lower-cased ``\\w+`` words) and the
best matches are averaged. Deterministic, dependency-free, order-free, and insensitive to a
layer being diverse: it asks "did each answer stop changing?", not "do all models say the
same?" (mean *pairwise* similarity across different models would stay low for a converged
but diverse layer). 1.0 = every answer's words are those of an answer before it.

The judge is asked only when agreement alone does not stop the stack (saving its call).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.runtime import Runtime

from langgraph_moa import costs
from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import Context, EarlyStop, MoAState, StopCheck
from langgraph_moa.nodes.layer import layer_references, raise_over_cost, strip_reasoning
from langgraph_moa.nodes.seat import Seat
from langgraph_moa.prompts import STOP_PROMPT

_WORD = re.compile(r"\w+")
_VERDICT = re.compile(r"VERDICT\s*:\s*\**\s*(FINAL|CONTINUE)\b", re.I)


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def agreement(current: Sequence[str], previous: Sequence[str]) -> float:
    """Mean over ``current`` of the best Jaccard with any of ``previous`` (0 if either is
    empty)."""
    if not current or not previous:
        return 0.0
    before = [words(p) for p in previous]
    best = [max(jaccard(words(c), p) for p in before) for c in current]
    return round(sum(best) / len(best), 4)


def parse_verdict(text: str | None) -> str | None:
    """``final`` / ``continue`` from the last ``VERDICT:`` line, or None (no usable verdict)."""
    found = _VERDICT.findall(text or "")
    return found[-1].lower() if found else None


def layer_agreement(state: Mapping[str, Any], spec: MoASpec, layer: int) -> float | None:
    """Agreement of layer ``layer``'s answers with layer ``layer - 1``'s (None for layer 1)."""
    if layer < 2:
        return None
    answers = state.get("answers") or {}
    current = [ref for _, ref in layer_references(layer, spec, answers)]
    previous = [ref for _, ref in layer_references(layer - 1, spec, answers)]
    return agreement(current, previous)


def converged(state: Mapping[str, Any], spec: MoASpec, layer: int) -> bool:
    threshold = spec.early_stop.similarity if spec.early_stop is not None else None
    similarity = layer_agreement(state, spec, layer)
    return threshold is not None and similarity is not None and similarity >= threshold


def should_judge(layer: int, spec: MoASpec, state: Mapping[str, Any]) -> bool:
    """The judge is called unless the layer failed or agreement already stops the stack."""
    return not state.get("fallback_reason") and not converged(state, spec, layer)


def judge_messages(state: MoAState, model: ModelSpec, spec: MoASpec) -> list[AnyMessage]:
    """What the judge receives: the question and what the next step would read."""
    from langgraph_moa.nodes.rank import fit_answers, question_of

    def render(texts: list[str]) -> list[AnyMessage]:
        answers = "\n\n".join(f"[{i}]\n{t}" for i, t in enumerate(texts, 1))
        prompt = STOP_PROMPT.format(question=question_of(list(state["messages"])), answers=answers)
        return [HumanMessage(content=prompt)]

    texts = list(state.get("references") or [])
    return render(fit_answers(texts, model, render([""] * len(texts)), str(model.name)))


def saved_calls(spec: MoASpec, layer: int) -> int:
    """First-attempt calls of the layers after ``layer``: proposers, rankers, judges."""
    judge = 1 if spec.stop_judge() is not None else 0
    last = len(spec.layers)
    return sum(
        len(spec.layers[k - 1]) + len(spec.rankers(k)) + (judge if k < last else 0)
        for k in range(layer + 1, last + 1)
    )


def stop_decider(
    layer: int, spec: MoASpec
) -> Callable[[MoAState, Runtime[Context]], Coroutine[Any, Any, dict[str, Any]]]:
    """``layer_k/stop``: record the decision; stopping writes ``early_stop`` (the route reads
    it) after checking the aggregator still fits ``max_cost``."""
    assert spec.early_stop is not None
    threshold = spec.early_stop.similarity
    has_judge = spec.early_stop.judge is not None
    layers_left = len(spec.layers) - layer

    async def decide(state: MoAState, runtime: Runtime[Context]) -> dict[str, Any]:
        if state.get("fallback_reason"):
            return {}
        similarity = layer_agreement(state, spec, layer)
        raw = state.get("verdict") or None
        verdict = parse_verdict(strip_reasoning(raw, spec)) if raw else None
        reason = None
        if threshold is not None and similarity is not None and similarity >= threshold:
            reason = "similarity"
        elif has_judge and verdict == "final":
            reason = "judge"
        check = StopCheck(
            layer=layer,
            similarity=similarity,
            verdict=verdict,
            judge_raw=raw,
            stop=reason is not None,
            reason=reason,
        )
        update: dict[str, Any] = {"stop_checks": [check], "verdict": ""}
        if reason is not None:
            references = list(state.get("references") or [])
            raise_over_cost(
                costs.guard_final(state, spec, runtime.context, references, False), state
            )
            update["early_stop"] = EarlyStop(
                layer=layer,
                reason=reason,
                layers_saved=layers_left,
                calls_saved=saved_calls(spec, layer),
            )
        runtime.stream_writer({"event": "layer_stop_check", **check, "judge_raw": None})
        return update

    return decide


def route_after_stop(
    next_layer: str, final: Callable[[MoAState], str | list[str]]
) -> Callable[[MoAState], str | list[str]]:
    """On to the next layer, or (stopped early) to what comes before the final answer."""

    def route(state: MoAState) -> str | list[str]:
        return final(state) if state.get("early_stop") else next_layer

    return route


def judge_seat(layer: int, model: ModelSpec) -> Seat:
    return Seat(
        node=names.judge(layer, str(model.name)), layer=layer, role="judge", references=True
    )
