"""Rank-then-fuse (LLM-Blender's ranker, "council" tools, Archon's ranker): after a layer,
rankers order its anonymised answers and only the ``top_k`` best go on as references.

How, and why:

* **Anonymised, shuffled.** Each ranker sees the layer's answers under labels ``A``, ``B``...
  in an order shuffled per ranker, deterministically (``random.Random`` seeded with the
  ranker's node name: the same run always builds the same prompt, so the response cache and
  a resumed run agree). Labels hide which model wrote what; per-ranker shuffles spread
  position bias over the rankers.
* **The question is the last user turn.** Rankers (and the early-stopping judge) read it and
  the answers in one user message (``prompts/rank.txt``), not the whole conversation.
* **Own answer included.** A peer ranks every answer of the layer, its own too (under a label
  like the others). Excluding it would leave a two-model layer one answer per ranker, nothing
  to rank; anonymity and averaging over rankers temper self-preference.
* **Robust parsing.** A ranker must end with ``RANKING: C > A > B``; the last such line
  counts. Labels are read in order (any separators), unknown and repeated labels are refused;
  one missing label is put last. Anything else (no line, two missing labels, a failed call)
  marks the ranker failed: recorded with its raw text and ignored.
* **Borda by mean rank.** Each answer's mean position over the rankers that ranked it (1 =
  best); the top ``top_k`` by mean rank go on, ties in spec order, and the references keep
  spec order (as without ranking). If every ranker failed, every answer goes on.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.runtime import Runtime

from langgraph_moa.errors import ContextOverflowError
from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import Context, LayerRanking, MoAState, RankerResult
from langgraph_moa.nodes import budget
from langgraph_moa.nodes.layer import layer_references, strip_reasoning
from langgraph_moa.nodes.seat import Seat
from langgraph_moa.prompts import RANK_PROMPT

LABELS = string.ascii_uppercase
"""Labels of anonymised answers (a layer has at most 32 proposers: beyond Z, ``AA``...)."""
MAX_REASONS = 4000
"""Characters of a ranker's justification kept in the result."""


def label(i: int) -> str:
    """``A``..``Z``, then ``AA``, ``AB``... (0-based ``i``)."""
    return LABELS[i] if i < len(LABELS) else LABELS[i // len(LABELS) - 1] + LABELS[i % 26]


def shuffled(nodes: list[str], ranker: str) -> list[str]:
    """The order ``ranker`` sees ``nodes`` in (label ``A`` first): deterministic per ranker."""
    order = list(nodes)
    random.Random(ranker).shuffle(order)
    return order


def question_of(messages: list[AnyMessage]) -> str:
    """The last user turn: what the answers answer."""
    return next((m.text for m in reversed(messages) if m.type == "human"), "")


def fit_answers(texts: list[str], model: ModelSpec, frame: list[AnyMessage], who: str) -> list[str]:
    """Shorten ``texts`` (longest first) to fit ``model``'s context window, if it has one."""
    if not model.context_window:
        return texts
    available = model.context_window - (model.max_tokens or 0) - budget.messages_tokens(frame)
    try:
        fitted, _ = budget.fit_references(texts, available)
    except ValueError as exc:
        raise ContextOverflowError(
            who, f"prompt does not fit the {model.context_window}-token context window: {exc}"
        ) from None
    return fitted


def ranking_messages(
    state: MoAState, model: ModelSpec, spec: MoASpec, seat: Seat
) -> list[AnyMessage]:
    """What a ranker receives: the question and the layer's answers, labelled and shuffled."""
    items = dict(layer_references(seat.layer, spec, state.get("answers") or {}))
    order = shuffled(list(items), seat.node)
    labels = [label(i) for i in range(len(order))]

    def render(texts: list[str]) -> list[AnyMessage]:
        answers = "\n\n".join(f"[{lab}]\n{text}" for lab, text in zip(labels, texts, strict=True))
        prompt = RANK_PROMPT.format(
            labels=", ".join(labels),
            question=question_of(list(state["messages"])),
            answers=answers,
            example=" > ".join(labels),
        )
        return [HumanMessage(content=prompt)]

    texts = [items[node] for node in order]
    texts = fit_answers(texts, model, render([""] * len(texts)), str(model.name))
    return render(texts)


_RANKING_LINE = re.compile(r"\bRANKING\**\s*:\**\s*(.+)$", re.I | re.M)
_LABEL = re.compile(r"\[?\b([A-Z]{1,2})\b\]?")


def parse_ranking(text: str, labels: list[str]) -> list[str]:
    """Labels best first from the last ``RANKING:`` line of ``text``; ``ValueError`` (with a
    reason) if there is none, it names an unknown or repeated label, or misses more than one."""
    lines = _RANKING_LINE.findall(text)
    if not lines:
        raise ValueError("no 'RANKING:' line")
    found = _LABEL.findall(lines[-1].replace("*", " "))
    known = set(labels)
    unknown = [f for f in found if f not in known]
    if unknown:
        raise ValueError(f"unknown label {unknown[0]!r} in the ranking")
    if len(set(found)) != len(found):
        raise ValueError("a label appears twice in the ranking")
    missing = [lab for lab in labels if lab not in found]
    if len(missing) > 1:
        raise ValueError(f"the ranking misses {', '.join(missing)}")
    return [*found, *missing]


def ranker_result(
    ranker: str, model: str, raw: str | None, order: list[str], spec: MoASpec, error: str | None
) -> RankerResult:
    """One ranker's outcome: its order of ``order``'s nodes (as it saw them), or why not."""
    labels = [label(i) for i in range(len(order))]
    by_label = dict(zip(labels, order, strict=True))

    def failed(raw: str, error: str | None) -> RankerResult:
        return RankerResult(
            ranker=ranker,
            model=model,
            labels=by_label,
            ok=False,
            order=[],
            reasons="",
            raw=raw,
            error=error,
        )

    if raw is None:
        return failed("", error)
    text = strip_reasoning(raw, spec)
    try:
        ranked = parse_ranking(text, labels)
    except ValueError as exc:
        return failed(raw, str(exc))
    last = list(_RANKING_LINE.finditer(text))[-1]
    return RankerResult(
        ranker=ranker,
        model=model,
        labels=by_label,
        ok=True,
        order=[by_label[lab] for lab in ranked],
        reasons=text[: last.start()].strip()[:MAX_REASONS],
        raw=raw,
        error=None,
    )


def borda(nodes: list[str], rankings: list[list[str]]) -> tuple[dict[str, float], list[str]]:
    """Mean rank of each node over the rankings that rank it (1 = best), and the nodes best
    first (ties in ``nodes`` order = spec order). Nodes no ranking ranks come last."""
    positions: dict[str, list[int]] = {node: [] for node in nodes}
    for ranking in rankings:
        for pos, node in enumerate(ranking, 1):
            if node in positions:
                positions[node].append(pos)
    mean = {n: round(sum(p) / len(p), 4) for n, p in positions.items() if p}
    order = sorted(nodes, key=lambda n: (n not in mean, mean.get(n, 0.0), nodes.index(n)))
    return mean, order


def should_rank(layer: int, spec: MoASpec, ranker: ModelSpec, state: Mapping[str, Any]) -> bool:
    """A ranker is called only when there is something to drop (more answers than top_k) and,
    for a peer, when its own proposer answered (a model that just failed is not asked)."""
    assert spec.rank is not None
    answers = state.get("answers") or {}
    if state.get("fallback_reason"):
        return False
    if len(layer_references(layer, spec, answers)) <= spec.rank.top_k:
        return False
    if spec.rank.judge == "peers":
        return names.proposer(layer, str(ranker.name)) in answers
    return True


def rank_combiner(
    layer: int, spec: MoASpec
) -> Callable[[MoAState, Runtime[Context]], Coroutine[Any, Any, dict[str, Any]]]:
    """``layer_k/rank``: parse every ranker, aggregate by mean rank, keep the top_k."""
    assert spec.rank is not None
    top_k = spec.rank.top_k
    rankers = [(names.ranker(layer, str(m.name)), str(m.name)) for m in spec.rankers(layer)]

    async def combine(state: MoAState, runtime: Runtime[Context]) -> dict[str, Any]:
        items = layer_references(layer, spec, state.get("answers") or {})
        nodes = [node for node, _ in items]
        if len(nodes) <= top_k:
            return {}  # nothing to drop: no ranker was called
        raw = state.get("rank_raw") or {}
        failed = {
            c["node"]: c["error"] or c["status"]
            for c in state.get("calls") or []
            if c["role"] == "ranker" and c["layer"] == layer and c["status"] != "ok"
        }
        results = []
        for node, model in rankers:
            if node not in raw and node not in failed:
                continue  # skipped: its own proposer had not answered
            results.append(
                ranker_result(
                    node, model, raw.get(node), shuffled(nodes, node), spec, failed.get(node)
                )
            )
        good = [r["order"] for r in results if r["ok"]]
        mean, order = borda(nodes, good)
        kept = set(order[:top_k]) if good else set(nodes)
        references = [ref for node, ref in items if node in kept]
        record = LayerRanking(
            layer=layer,
            rankers=results,
            mean_rank=mean,
            order=order if good else nodes,
            kept=[n for n in nodes if n in kept],
        )
        runtime.stream_writer(
            {
                "event": "layer_ranked",
                "layer": layer,
                "order": record["order"],
                "kept": record["kept"],
                "rankers": len(results),
                "failed": sum(not r["ok"] for r in results),
            }
        )
        return {"references": references, "rankings": [record]}

    return combine
