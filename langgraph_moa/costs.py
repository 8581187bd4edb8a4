"""Cost guardrails: the worst case of a spec before it runs, and ``max_cost`` while it runs.

Worst case means every model writes its whole ``max_tokens`` and every reference a later
model reads is that long (capped by ``reference_max_tokens``, fitted into ``context_window``
exactly as the run would fit it: the same ``prepare_messages`` builds the prompt). Input
tokens use the project's conservative estimate (``nodes/budget.py``: 3 characters a token).
Retries and fallbacks are counted separately: a run that needs none costs the first total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.messages import HumanMessage

from langgraph_moa.errors import CostLimitError, SpecError
from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.nodes import budget

DEFAULT_QUESTION_TOKENS = 200
"""Question size ``moa estimate`` assumes when it is given no question."""


@dataclass(frozen=True)
class CallCost:
    """The worst case of one model call (one attempt)."""

    node: str
    model: str
    model_id: str
    input_tokens: int
    output_tokens: int | None
    """``None``: the model has no ``max_tokens``, so its output is unbounded."""
    cost_usd: float | None
    """``None`` when the model has no price or no ``max_tokens``."""
    extra_attempts: int = 0
    """Retries the model's ``retry.max_attempts`` allows on top of this call."""
    fallback: bool = False
    """A fallback call: made only when the model it replaces failed."""


@dataclass
class Estimate:
    """Worst-case calls, tokens and cost of one run of a spec."""

    question_tokens: int
    calls: list[CallCost] = field(default_factory=list)

    @property
    def first_calls(self) -> list[CallCost]:
        return [c for c in self.calls if not c.fallback]

    def totals(self) -> dict[str, Any]:
        """``calls``/tokens/``cost_usd``: every model answers first time; ``worst_*``: every
        attempt is used and every fallback answers too. A cost is None if any price is."""
        first = self.first_calls
        attempts = [(c, 1 + c.extra_attempts) for c in first] + [
            (c, 1 + c.extra_attempts) for c in self.calls if c.fallback
        ]
        return {
            "calls": len(first),
            "input_tokens": sum(c.input_tokens for c in first),
            "output_tokens": _sum_or_none(c.output_tokens for c in first),
            "cost_usd": _sum_or_none(c.cost_usd for c in first),
            "worst_attempts": sum(n for _, n in attempts),
            "worst_cost_usd": _sum_or_none(
                None if c.cost_usd is None else c.cost_usd * n for c, n in attempts
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "question_tokens": self.question_tokens,
            "calls": [asdict(c) for c in self.calls],
            "totals": self.totals(),
        }


def _sum_or_none(values: Any) -> Any:
    items = list(values)
    if any(v is None for v in items):
        return None
    total = sum(items)
    return round(total, 8) if isinstance(total, float) else total


def call_cost(
    model: ModelSpec,
    spec: MoASpec,
    state: Mapping[str, Any],
    *,
    node: str,
    layer: int,
    role: str,
    references: bool,
    max_tokens: int | None = None,
    fallback: bool = False,
) -> CallCost:
    """Worst case of one call of ``model`` on ``state`` (its messages and references)."""
    from langgraph_moa.nodes.messages import prepare_messages
    from langgraph_moa.nodes.seat import Seat

    seat = Seat(node=node, layer=layer, role=role, references=references)  # type: ignore[arg-type]
    messages, _ = prepare_messages(state, model, spec, seat)  # type: ignore[arg-type]
    tokens_in = budget.messages_tokens(messages)
    tokens_out = max_tokens or model.max_tokens
    cost = (
        round(model.price.cost(tokens_in, tokens_out), 8)
        if model.price is not None and tokens_out is not None
        else None
    )
    return CallCost(
        node=node,
        model=str(model.name),
        model_id=model.model,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=cost,
        extra_attempts=model.retry.max_attempts - 1,
        fallback=fallback,
    )


def seat_costs(
    model: ModelSpec,
    spec: MoASpec,
    state: Mapping[str, Any],
    **seat: Any,
) -> list[CallCost]:
    """The model's call, then one per fallback in its chain."""
    out = [call_cost(model, spec, state, **seat)]
    fallback = model.fallback
    while fallback is not None:
        out.append(call_cost(fallback, spec, state, **{**seat, "fallback": True}))
        fallback = fallback.fallback
    return out


def reference_cap(model: ModelSpec, spec: MoASpec) -> int | None:
    """The tokens an answer of ``model`` may keep as a reference (None: no cap)."""
    return model.reference_max_tokens or spec.reference_max_tokens


def estimate(
    spec: MoASpec,
    question: str | None = None,
    *,
    question_tokens: int = DEFAULT_QUESTION_TOKENS,
    max_tokens: int | None = None,
) -> Estimate:
    """Worst-case calls, tokens and cost of one run, before anything runs.

    ``question``: the real question (else one of ``question_tokens`` tokens is assumed);
    ``max_tokens``: the run's override of every model's ``max_tokens`` (as ``--max-tokens``).
    Counts every optional step as if it ran: every ranker, the early-stopping judge after
    every layer but the last (no layer skipped), and every Self-MoA-Seq window.
    """
    text = question if question is not None else "x" * (question_tokens * budget.CHARS_PER_TOKEN)
    result = Estimate(question_tokens=budget.estimate_tokens(text))
    state: dict[str, Any] = {"messages": [HumanMessage(text)], "references": [], "answers": {}}
    for k, models in enumerate(spec.layers, 1):
        for model in models:
            result.calls += seat_costs(
                model,
                spec,
                state,
                node=names.proposer(k, str(model.name)),
                layer=k,
                role="proposer",
                references=k > 1,
                max_tokens=max_tokens,
            )
        state = _after_layer(state, spec, k, max_tokens)
        result.calls += step_costs(spec, k, state, max_tokens)
        if spec.rankers(k) and spec.rank is not None:  # the longest top_k go on
            kept = sorted(state["references"], key=len, reverse=True)[: spec.rank.top_k]
            state = {**state, "references": kept}
    result.calls += aggregator_costs(spec, state, max_tokens)
    return result


def _after_layer(
    state: Mapping[str, Any], spec: MoASpec, layer: int, max_tokens: int | None
) -> dict[str, Any]:
    """``state`` once layer ``layer`` answered at full length (references as the reducer
    makes them: reasoning stripped, ``reference_max_tokens`` applied)."""
    from langgraph_moa.nodes.layer import layer_references

    answers = dict(state.get("answers") or {})
    for model in spec.layers[layer - 1]:
        tokens = max_tokens or model.max_tokens or model.context_window or 0
        answers[names.proposer(layer, str(model.name))] = "x" * (tokens * budget.CHARS_PER_TOKEN)
    references = [ref for _, ref in layer_references(layer, spec, answers)]
    return {**state, "answers": answers, "references": references}


def step_costs(
    spec: MoASpec, layer: int, state: Mapping[str, Any], max_tokens: int | None
) -> list[CallCost]:
    """The calls after layer ``layer``'s reducer: its rankers (rank-then-fuse) and the
    early-stopping judge (not after the last layer)."""
    seats = [(m, names.ranker(layer, str(m.name)), "ranker") for m in spec.rankers(layer)]
    judge = spec.stop_judge()
    if judge is not None and layer < len(spec.layers):
        seats.append((judge, names.judge(layer, str(judge.name)), "judge"))
    out: list[CallCost] = []
    for model, node, role in seats:
        out += seat_costs(
            model,
            spec,
            state,
            node=node,
            layer=layer,
            role=role,
            references=True,
            max_tokens=max_tokens,
        )
    return out


def aggregator_costs(
    spec: MoASpec, state: Mapping[str, Any], max_tokens: int | None
) -> list[CallCost]:
    """The aggregator's calls on ``state``'s references: one per Self-MoA-Seq window (the
    running synthesis at its longest), the last one being ``aggregator``."""
    from langgraph_moa.nodes.window import plan

    windows = plan(state, spec)
    synthesis = "x" * ((max_tokens or spec.aggregator.max_tokens or 0) * budget.CHARS_PER_TOKEN)
    out: list[CallCost] = []
    for i in range(len(windows)):
        last = i == len(windows) - 1
        out += seat_costs(
            spec.aggregator,
            spec,
            {**state, "window": i, "synthesis": synthesis},
            node=names.AGGREGATOR if last else names.WINDOW,
            layer=len(spec.layers) + 1,
            role="aggregator",
            references=True,
            max_tokens=max_tokens,
        )
    return out


def worst_calls(spec: MoASpec) -> int:
    """First-attempt calls of a run at most, without building a prompt (the run policy's
    cap): proposers, rankers, early-stopping judges, Self-MoA-Seq windows, the aggregator."""
    judge = 1 if spec.stop_judge() is not None else 0
    calls = sum(len(m) + len(spec.rankers(k)) for k, m in enumerate(spec.layers, 1))
    calls += judge * (len(spec.layers) - 1)
    last = len(spec.layers)
    refs = len(spec.layers[-1])
    if spec.rankers(last) and spec.rank is not None:
        refs = min(refs, spec.rank.top_k)
    if spec.aggregate_window is None:
        return calls + 1
    if spec.aggregator.context_window:  # windows may hold fewer than aggregate_window
        return calls + max(1, refs)
    return calls + max(1, -(-refs // spec.aggregate_window))


# -- max_cost: checked before each step, from what was really spent ------------------------


def spent(calls: Sequence[Mapping[str, Any]]) -> float:
    """USD the finished calls cost (calls without a price count as 0; max_cost forbids them)."""
    return round(sum(c.get("cost_usd") or 0.0 for c in calls), 8)


def check_prices(spec: MoASpec, max_tokens: int | None = None) -> None:
    """``max_cost`` needs every model's price and a bound on its output (its max_tokens or
    the run's override): fail before any call if not."""
    no_price = [str(m.name) for m in spec.models() if m.price is None]
    if no_price:
        raise SpecError(
            f"max_cost needs a price for every model; none for: {', '.join(no_price)}"
            " (set `price: {input: ..., output: ...}` in the spec)"
        )
    unbounded = [str(m.name) for m in spec.models() if m.max_tokens is None]
    if unbounded and max_tokens is None:
        raise SpecError(f"max_cost needs max_tokens for every model; none for: {unbounded}")


def over_limit(
    limit: float, state: Mapping[str, Any], step: str, costs: Sequence[CallCost]
) -> CostLimitError | None:
    """The error to raise if the step's worst case (first attempts, which run in parallel)
    would take the run past ``limit``; None if it fits."""
    so_far = spent(state.get("calls") or [])
    worst = sum(c.cost_usd or 0.0 for c in costs if not c.fallback)
    if so_far + worst > limit:
        return CostLimitError(limit, so_far, worst, step)
    return None


def run_limit(spec: MoASpec, context: Any) -> float | None:
    """The run's ``max_cost``: the context's (per run) over the spec's."""
    override = getattr(context, "max_cost", None)
    return override if override is not None else spec.max_cost


def guard_layer(
    state: Mapping[str, Any], spec: MoASpec, layer: int, context: Any
) -> CostLimitError | None:
    """Before layer ``layer``'s proposers start: does their worst case still fit?"""
    limit = run_limit(spec, context)
    if limit is None:
        return None
    max_tokens = getattr(context, "max_tokens", None)
    written = max_tokens  # what a proposer may write: the answer's limit too if it opted in
    if spec.request_sampling == "all":
        written = getattr(context, "answer_max_tokens", None) or max_tokens
    if layer == 1:  # a new run: nothing spent yet, no references
        check_prices(spec, max_tokens)
        state = {**state, "calls": [], "references": [], "answers": {}}
    costs = [
        cost
        for model in spec.layers[layer - 1]
        for cost in seat_costs(
            model,
            spec,
            state,
            node=names.proposer(layer, str(model.name)),
            layer=layer,
            role="proposer",
            references=layer > 1,
            max_tokens=written,
        )
    ]
    # ...and the steps after the layer (rankers, the early-stopping judge) at their worst
    costs += step_costs(spec, layer, _after_layer(state, spec, layer, written), max_tokens)
    return over_limit(limit, state, names.layer(layer), costs)


def guard_final(
    state: Mapping[str, Any],
    spec: MoASpec,
    context: Any,
    references: list[str],
    fallback: bool,
    pending_rank: int | None = None,
) -> CostLimitError | None:
    """Before the aggregator (or, after a failed layer, the aggregator's fallback); with
    ``pending_rank``, that layer's rankers still run first."""
    limit = run_limit(spec, context)
    if limit is None:
        return None
    max_tokens = getattr(context, "max_tokens", None)
    # The answer's own limit (moa serve's max_tokens, ChatMoA's) bounds the answer models.
    answer_tokens = getattr(context, "answer_max_tokens", None) or max_tokens
    if fallback:
        assert spec.aggregator.fallback is not None
        cost = call_cost(
            spec.aggregator.fallback,
            spec,
            {**state, "references": references},
            node=names.FALLBACK,
            layer=len(spec.layers) + 1,
            role="aggregator",
            references=False,
            max_tokens=answer_tokens,
        )
        return over_limit(limit, state, cost.node, [cost])
    costs: list[CallCost] = []
    if pending_rank is not None:  # the last layer's rankers still run before the aggregator
        costs += step_costs(spec, pending_rank, state, max_tokens)
    costs += aggregator_costs(spec, {**state, "references": references}, answer_tokens)
    return over_limit(limit, state, costs[-1].node, costs)


def format_estimate(result: Estimate) -> str:
    """``moa estimate``'s table: one row per call, then the totals."""

    def usd(value: float | None) -> str:
        return "unknown" if value is None else f"${value:.4f}"

    rows = [f"{'node':40} {'in':>7} {'out':>6} {'cost':>10}  (worst case, one attempt)"]
    for c in result.calls:
        name = ("  fallback " if c.fallback else "") + c.node
        out = "unbounded" if c.output_tokens is None else str(c.output_tokens)
        rows.append(f"{name:40} {c.input_tokens:>7} {out:>6} {usd(c.cost_usd):>10}")
    t = result.totals()
    rows.append(
        f"total: {t['calls']} calls, {t['input_tokens']} in / {t['output_tokens']} out tokens,"
        f" {usd(t['cost_usd'])}"
    )
    rows.append(
        f"with every retry and fallback: {t['worst_attempts']} calls, {usd(t['worst_cost_usd'])}"
    )
    rows.append(f"(question: {result.question_tokens} tokens; 1 token ~ 3 characters)")
    unknown = sorted({c.model_id for c in result.calls if c.cost_usd is None})
    if unknown:
        rows.append(f"no price for: {', '.join(unknown)} (set `price` in the spec)")
    return "\n".join(rows)


def run_totals(calls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Run totals derived from the per-call records (never stored twice): what the CLI's
    ``--json``, the web UI, ChatMoA's ``usage_metadata`` and ``moa serve``'s ``usage`` report."""
    return {
        "calls": len(calls),
        "cached": sum(bool(c.get("cached")) for c in calls),
        "failed": sum(c["status"] in ("failed", "timeout") for c in calls),
        "cut": sum(c["status"] == "cut" for c in calls),
        "input_tokens": sum(c["input_tokens"] for c in calls),
        "output_tokens": sum(c["output_tokens"] for c in calls),
        # None unless every call had a price: a partial sum would understate the cost.
        # A cached answer cost nothing this time.
        "cost_usd": sum(c["cost_usd"] or 0.0 for c in calls if not c.get("cached"))
        if calls and all(c.get("cost_usd") is not None for c in calls)
        else None,
    }
