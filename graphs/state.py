"""Graph state (small, typed, serialisable) and the per-run context.

State holds data only: the conversation, each proposer's answer, the references the next
layer sees, the final answer and one record per model call. Never a client, key or callable,
so every checkpoint can be stored, diffed and shown in Studio.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, convert_to_messages
from langgraph.graph.message import Messages, add_messages
from pydantic import ConfigDict, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from langgraph_moa.errors import InvalidInputError
from langgraph_moa.graphs.spec import MAX_TOKENS

CallStatus = Literal["ok", "failed", "timeout", "cut", "fallback"]
Role = Literal["proposer", "aggregator", "ranker", "judge"]
"""What a model call was for: answering (proposer), synthesising (aggregator, Self-MoA-Seq
windows included), ranking a layer's answers (ranker) or judging whether to stop (judge)."""


class Call(TypedDict):
    """One model call as it ended (after its retries): what ran, how long, what it cost."""

    node: str
    """Graph node, e.g. ``layer_2/qwen1.5-72b-chat`` or ``aggregator``."""
    model: str
    """Spec name of the model that produced the result (the fallback's name if one answered)."""
    model_id: str
    """``provider:model`` string."""
    layer: int
    """1-based proposer layer; the aggregator is ``len(layers) + 1``."""
    role: Role
    status: CallStatus
    attempts: int
    """Attempts made (1 = no retry)."""
    input_tokens: int
    output_tokens: int
    latency_s: float
    """Wall time of the successful (or last) attempt."""
    ttft_s: float | None
    """Time to first token of that attempt; ``None`` when the call did not stream (nobody
    read its tokens, so it was one non-streaming request)."""
    error: str | None
    """Why it failed, was cut, or needed its fallback."""
    truncated: int
    """References shortened to fit the context window (0 = none)."""
    cost_usd: NotRequired[float | None]
    """Cost from the model's ``price`` and the tokens above; ``None`` when no price is known."""


class RankerResult(TypedDict):
    """One ranker's ranking of a layer's anonymised answers (rank-then-fuse)."""

    ranker: str
    """The ranker's node (``layer_k/rank/<model>``)."""
    model: str
    labels: dict[str, str]
    """Label -> proposer node, as this ranker saw them (its own deterministic shuffle)."""
    ok: bool
    """False: the call failed or its text had no usable ``RANKING:`` line; it was ignored."""
    order: list[str]
    """Proposer nodes, best first (empty when not ok)."""
    reasons: str
    """The ranker's justification (its text before the ranking line)."""
    raw: str
    """The ranker's whole answer."""
    error: str | None


class LayerRanking(TypedDict):
    """How a layer's answers were ranked and which went on (rank-then-fuse)."""

    layer: int
    rankers: list[RankerResult]
    mean_rank: dict[str, float]
    """Proposer node -> mean rank over the rankers that ranked it (1 = best)."""
    order: list[str]
    """Aggregate order (Borda: mean rank, ties in spec order), best first."""
    kept: list[str]
    """The top_k nodes whose answers became references (all, in spec order, if every
    ranker failed)."""


class StopCheck(TypedDict):
    """One early-stopping decision after a layer."""

    layer: int
    similarity: float | None
    """Agreement with the previous layer (None: not measured, e.g. after layer 1)."""
    verdict: str | None
    """The judge's verdict (``final``/``continue``) or None (no judge, or it failed)."""
    judge_raw: str | None
    stop: bool
    reason: str | None
    """``similarity`` or ``judge`` when the stack stopped here."""


class EarlyStop(TypedDict):
    """Where and why the layer stack ended early, and what that saved."""

    layer: int
    reason: str
    layers_saved: int
    calls_saved: int
    """First-attempt calls the skipped layers would have made (proposers, rankers, judges)."""


def merge_answers(left: dict[str, str], right: dict[str, str] | None) -> dict[str, str]:
    """Answers keyed by node name: every proposer writes its own key, so parallel writes
    never clash and a resumed run keeps the answers that were already checkpointed.
    ``None`` empties it (a new turn), so node updates stay plain data in every stream."""
    if right is None:
        return {}
    return {**left, **right}


T = TypeVar("T")


def add_records(left: list[T], right: list[T] | None) -> list[T]:
    """Append-only records (calls, rankings, stop checks); ``None`` empties them (a new turn)."""
    if right is None:
        return []
    return [*left, *right]


def add_conversation(left: Messages, right: Messages) -> Messages:
    """``add_messages``, with a clear ``InvalidInputError`` naming ``messages[i]`` for input it
    cannot convert (a tool message without ``tool_call_id``, an unknown role, a non-message)
    instead of the raw ``KeyError`` / ``ValueError`` from deep inside the conversion."""
    items = right if isinstance(right, list) else [right]
    for i, item in enumerate(items):
        if isinstance(item, BaseMessage):
            continue
        try:
            convert_to_messages([item])
        except Exception as exc:  # KeyError, ValueError, NotImplementedError, TypeError ...
            from langgraph_moa.errors import InvalidInputError

            if isinstance(exc, KeyError):
                detail = f": missing {exc}"
            elif isinstance(exc, ValidationError):  # pydantic: name the field that is wrong
                first = exc.errors()[0]
                detail = f".{'.'.join(map(str, first['loc']))}: {first['msg']}"
            else:
                detail = f": {str(exc).splitlines()[0]}"
            raise InvalidInputError(f"messages[{i}]{detail[:200]}") from None
    return add_messages(left, right)


class InputState(TypedDict):
    """What a caller passes: the conversation (Studio's chat view writes this)."""

    messages: Annotated[list[AnyMessage], add_conversation]


ReviewDecision = Literal["accept", "edit", "response", "ignore"]


class ReviewOutcome(TypedDict):
    """What the human reviewer decided (``review: true`` specs)."""

    decision: ReviewDecision
    """accept: aggregate as is; edit: aggregate the edited references; response: the
    reviewer's text is the answer; ignore: rejected, the turn ended without an answer."""
    text: NotRequired[str]
    """The reviewer's answer (decision ``response``)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class OutputState(TypedDict):
    """What a run returns: the answer, what the aggregator saw, and what every call cost."""

    messages: Annotated[list[AnyMessage], add_conversation]
    """The conversation: your messages and every answer so far."""
    answer: str
    """This turn's answer (empty if the run paused for review or the reviewer rejected it)."""
    references: list[str]
    """The answers the final model read, in order (after review edits)."""
    answers: Annotated[dict[str, str], merge_answers]
    """Every proposer's answer this turn, by node (``layer_2/<model>``)."""
    calls: Annotated[list[Call], add_records]
    """One record per model call this turn: status, attempts, tokens, latency, cost, error."""
    fallback_reason: NotRequired[str]
    """Set when a whole layer failed and the aggregator's fallback answered the user."""
    review: NotRequired[ReviewOutcome | None]
    """The human review's decision this turn (specs with ``review: true``)."""
    rankings: NotRequired[Annotated[list[LayerRanking], add_records]]
    """Rank-then-fuse: one record per ranked layer."""
    stop_checks: NotRequired[Annotated[list[StopCheck], add_records]]
    """Early stopping: one record per decision."""
    early_stop: NotRequired[EarlyStop | None]
    """Early stopping: set when the layer stack ended before its last layer."""


class MoAState(OutputState):
    """Full graph state. ``references`` is the previous layer's answers in spec order."""

    rank_raw: NotRequired[Annotated[dict[str, str], merge_answers]]
    """Rankers' raw texts by node, written in parallel, read by ``layer_k/rank``."""
    verdict: NotRequired[str]
    """The early-stopping judge's raw text for the current layer (read by ``layer_k/stop``)."""
    synthesis: NotRequired[str]
    """Self-MoA-Seq: the running synthesis of the windows aggregated so far."""
    window: NotRequired[int]
    """Self-MoA-Seq: how many windows were aggregated so far."""
    run_params: NotRequired[dict[str, Any]]
    """The run's overrides of model settings (``Context.temperature``/``max_tokens``), written
    by ``layer_1``: part of every cache key, so a changed override never reuses an answer."""
    redo: NotRequired[list[str]]
    """Proposer nodes a layer's reducer sends the run back to: on a resumed run, the seats
    whose calls failed and broke the quorum (empty otherwise)."""
    topology: NotRequired[dict[str, Any] | None]
    """LangGraph server: what the thread's first run chose (``{"preset": name}`` or
    ``{"spec": {...}}``), so every later read, resume and turn of the thread uses that graph."""


def ui(description: str, kind: str, **extra: Any) -> dict[str, Any]:
    """A context field's metadata: the description and the form control a UI should draw
    (``x_oap_ui_config``, as LangChain's Open Agent Platform templates do), plus pydantic
    bounds (``ge``/``le``) that become the JSON schema's ``minimum``/``maximum``."""
    bounds: dict[str, Any] = {k: extra.pop(k) for k in ("ge", "le") if k in extra}
    control = {"type": kind, "description": description, **extra}
    if "ge" in bounds:
        control.setdefault("min", bounds["ge"])
    if "le" in bounds:
        control.setdefault("max", bounds["le"])
    return {
        "description": description,
        "json_schema_extra": {"x_oap_ui_config": control},
        **bounds,
    }


@dataclass(kw_only=True)
class Context:
    """Settings for a run: which mixture answers (preset) and how its models sample."""

    temperature: float | None = field(
        default=None,
        metadata=ui(
            "Sampling temperature for every model of this run, from 0 (focused) to 2"
            " (varied). Empty: each model's own setting.",
            "slider",
            ge=0,
            le=2,
            step=0.1,
        ),
    )
    max_tokens: int | None = field(
        default=None,
        metadata=ui(
            "Longest answer any model of this run may write, in tokens. Empty: each"
            " model's own limit.",
            "number",
            ge=1,
            le=MAX_TOKENS,
        ),
    )
    stop: list[str] | None = field(
        default=None,
        metadata=ui(
            "Up to 4 stop sequences (each at most 64 characters) for the final answer;"
            " the models whose answers it combines always write theirs in full.",
            "json",
        ),
    )
    stream_proposers: bool = field(
        default=False,
        metadata=ui(
            "Stream every model's answer as it is written, not only the final one.",
            "boolean",
        ),
    )
    max_cost: float | None = field(
        default=None,
        metadata=ui(
            "Most this run may spend, in US dollars: it stops before a step that could"
            " cost more. Empty: the mixture's own limit, if any.",
            "number",
            ge=0,
        ),
    )
    preset: str | None = field(
        default=None,
        metadata=ui(
            "Which mixture of models answers: a built-in preset or one the server"
            " registered. Empty: the graph's default. A conversation (thread) keeps the"
            " mixture its first run used.",
            "select",
        ),
    )
    spec: dict[str, Any] | None = field(
        default=None,
        metadata=ui(
            "A whole mixture definition (layers of models and a final model, as in a"
            " spec file) instead of a preset; only on servers that accept run specs.",
            "json",
        ),
    )
    tools: list[dict[str, Any]] | None = field(
        default=None,
        metadata=ui(
            "Tools the final answer may call, as OpenAI tool schemas; the other models"
            " read tool results as text.",
            "json",
        ),
    )
    tool_choice: str | dict[str, Any] | None = field(
        default=None,
        metadata=ui("'auto', 'none', 'required' or the name of one tool.", "text"),
    )
    response_format: dict[str, Any] | None = field(
        default=None,
        metadata=ui(
            "The final answer's format, as OpenAI's response_format: {'type':"
            " 'json_object'} or {'type': 'json_schema', 'json_schema': {'name': ...,"
            " 'schema': {...}}}.",
            "json",
        ),
    )

    def __post_init__(self) -> None:
        """Refuse bad overrides when the run starts, before any model is called (LangGraph
        builds the context from the caller's dict with this constructor)."""
        check_overrides(self.temperature, self.max_tokens)
        check_stop(self.stop)
        if not isinstance(self.stream_proposers, bool):
            raise InvalidInputError("context.stream_proposers: must be true or false")
        check_tools(self.tools, self.tool_choice)
        check_response_format(self.response_format)
        check_sampling(self)

    # The answer's sampling settings (moa serve's request fields, ChatMoA's parameters):
    # the answer models (aggregator, fallbacks) get them, proposers keep their spec's own
    # unless the spec says ``request_sampling: all``; ``seed`` goes to every model. A model
    # whose provider cannot take one runs without it (models/sampling.py).
    answer_max_tokens: int | None = field(
        default=None,
        metadata=ui(
            "Longest final answer in tokens (the aggregator and its fallback); the"
            " models whose answers it combines keep their own limits (unless the"
            " mixture's spec says request_sampling: all).",
            "number",
            ge=1,
            le=MAX_TOKENS,
        ),
    )
    top_p: float | None = field(
        default=None,
        metadata=ui("Nucleus sampling of the final answer (0-1).", "slider", ge=0, le=1, step=0.05),
    )
    frequency_penalty: float | None = field(
        default=None,
        metadata=ui(
            "The final answer's frequency penalty (-2 to 2).", "slider", ge=-2, le=2, step=0.1
        ),
    )
    presence_penalty: float | None = field(
        default=None,
        metadata=ui(
            "The final answer's presence penalty (-2 to 2).", "slider", ge=-2, le=2, step=0.1
        ),
    )
    logit_bias: dict[str, int] | None = field(
        default=None,
        metadata=ui(
            "Token id -> bias (-100 to 100) of the final answer (OpenAI-compatible answer"
            " models only).",
            "json",
        ),
    )
    reasoning_effort: str | None = field(
        default=None,
        metadata=ui(
            "The final answer model's reasoning effort (OpenAI reasoning models only).",
            "select",
            options=[
                {"label": e, "value": e}
                for e in ("none", "minimal", "low", "medium", "high", "xhigh")
            ],
        ),
    )
    seed: int | None = field(
        default=None,
        metadata=ui(
            "Sampling seed of every model that takes one: a reproducible answer needs"
            " reproducible references.",
            "number",
        ),
    )


def check_overrides(temperature: object, max_tokens: object, cap: int = MAX_TOKENS) -> None:
    """Per-run ``temperature`` (a number from 0 to 2) and ``max_tokens`` (1..cap)."""
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= 2
    ):
        raise InvalidInputError("context.temperature: must be a number from 0 to 2")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 0 < max_tokens <= cap
    ):
        raise InvalidInputError(f"context.max_tokens: must be a whole number from 1 to {cap}")


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
MAX_LOGIT_BIAS = 1024
"""Most tokens one run's ``logit_bias`` may bias."""


def check_sampling(run: Any) -> None:
    """The run's sampling settings (``Context``'s last block), each named when refused."""

    def number(name: str, low: float, high: float) -> None:
        value = getattr(run, name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value <= high
        ):
            raise InvalidInputError(f"context.{name}: must be a number from {low:g} to {high:g}")

    number("top_p", 0, 1)
    number("frequency_penalty", -2, 2)
    number("presence_penalty", -2, 2)
    cap = run.answer_max_tokens
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise InvalidInputError("context.answer_max_tokens: must be a whole number from 1")
    if cap is not None and cap > MAX_TOKENS:
        raise InvalidInputError(f"context.answer_max_tokens: at most {MAX_TOKENS}")
    seed = run.seed
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63
    ):
        raise InvalidInputError("context.seed: must be a whole number (64-bit)")
    effort = run.reasoning_effort
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidInputError(f"context.reasoning_effort: one of {', '.join(REASONING_EFFORTS)}")
    bias = run.logit_bias
    if bias is not None:
        if not isinstance(bias, dict) or len(bias) > MAX_LOGIT_BIAS:
            raise InvalidInputError(
                f"context.logit_bias: must be an object of at most {MAX_LOGIT_BIAS} token ids"
            )
        for token, value in bias.items():
            if (
                not str(token).isdigit()
                or len(str(token)) > 10
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not -100 <= value <= 100
            ):
                raise InvalidInputError(
                    f"context.logit_bias[{str(token)[:20]!r}]: a token id -> a number from"
                    " -100 to 100"
                )


def answer_message(out: Mapping[str, Any]) -> AIMessage | None:
    """A finished run's answer: the last message of its output, if the model wrote it (a run
    paused for review ends without one)."""
    messages = out.get("messages") or []
    last = messages[-1] if messages else None
    return last if isinstance(last, AIMessage) else None


def finish_reason(answer: BaseMessage | None) -> str:
    """The answer's finish reason in OpenAI's terms (``moa serve``, ChatMoA): ``tool_calls``,
    ``length`` when the aggregator was cut at its max_tokens, ``content_filter``, else
    ``stop``."""
    if isinstance(answer, AIMessage) and answer.tool_calls:
        return "tool_calls"
    reason = answer.response_metadata.get("finish_reason") if answer is not None else None
    return reason if reason in ("length", "content_filter") else "stop"


MAX_TOOLS = 128
"""Most tools one run may offer the aggregator (OpenAI's own limit)."""
MAX_TOOLS_CHARS = 256_000
"""Largest JSON of a run's tool schemas."""


def check_tools(tools: object, tool_choice: object) -> None:
    """Per-run tools (OpenAI tool schemas) and ``tool_choice``, bounded like the rest of a
    run's input (a clear error naming the field, before any model is called)."""
    if tools is not None:
        if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
            raise InvalidInputError(f"context.tools: must be a list of at most {MAX_TOOLS} tools")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(function, dict)
                or not isinstance(function.get("name"), str)
                or not function["name"]
            ):
                raise InvalidInputError(
                    f"context.tools[{i}]: must be an OpenAI tool schema"
                    " ({'type': 'function', 'function': {'name': ..., 'parameters': ...}})"
                )
        try:
            size = len(json.dumps(tools))
        except (TypeError, ValueError):
            raise InvalidInputError("context.tools: must be JSON data") from None
        if size > MAX_TOOLS_CHARS:
            raise InvalidInputError(f"context.tools: larger than {MAX_TOOLS_CHARS} characters")
    if tool_choice is not None:
        if not isinstance(tool_choice, (str, dict)) or (
            isinstance(tool_choice, str) and len(tool_choice) > 256
        ):
            raise InvalidInputError("context.tool_choice: must be a string or an object")
        if not tools and tool_choice not in ("none", "auto"):
            raise InvalidInputError("context.tool_choice: set without any tools")


MAX_SCHEMA_CHARS = 64_000
"""Largest JSON of a run's ``response_format``."""
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_response_format(response_format: object) -> None:
    """A run's ``response_format`` in OpenAI's shape: ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"?, "description"?}}``
    (``{"type": "text"}`` is the default and is dropped by the faces), bounded in size."""
    if response_format is None:
        return
    where = "context.response_format"
    if not isinstance(response_format, dict) or response_format.get("type") not in (
        "json_object",
        "json_schema",
        "text",
    ):
        raise InvalidInputError(
            f"{where}: must be {{'type': 'json_object'}} or {{'type': 'json_schema',"
            " 'json_schema': {...}}"
        )
    if response_format["type"] == "json_schema":
        schema = response_format.get("json_schema")
        if (
            not isinstance(schema, dict)
            or not isinstance(schema.get("name"), str)
            or not _SCHEMA_NAME.fullmatch(schema["name"])
            or not isinstance(schema.get("schema", {}), dict)
            or not isinstance(schema.get("strict", False), (bool, type(None)))
            or set(schema) - {"name", "schema", "strict", "description"}
        ):
            raise InvalidInputError(
                f"{where}.json_schema: must be {{'name': <1-64 of a-z, 0-9, _ or ->, 'schema':"
                " {...}, 'strict': true|false, 'description': ...}"
            )
    elif set(response_format) != {"type"}:
        raise InvalidInputError(f"{where}: only 'json_schema' takes more than 'type'")
    try:
        size = len(json.dumps(response_format))
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: must be JSON data") from None
    if size > MAX_SCHEMA_CHARS:
        raise InvalidInputError(f"{where}: larger than {MAX_SCHEMA_CHARS} characters")


MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64


def check_stop(stop: object) -> None:
    """Per-run stop sequences: a list of at most 4 non-empty strings of at most 64 characters."""
    if stop is None:
        return
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stop)
    ):
        raise InvalidInputError(
            f"context.stop: must be a list of at most {MAX_STOP_SEQUENCES} non-empty strings"
            f" of at most {MAX_STOP_CHARS} characters"
        )


@dataclass(kw_only=True)
class ServerContext(Context):
    """Settings for a run: which mixture answers (preset) and how its models sample."""

    # The LangGraph server's context (``langgraph dev``, Studio): watching every proposer
    # type side by side is the point there, so proposers stream by default. The server's
    # graph factory (graphs/studio.py) subclasses it per run policy: ``preset`` lists the
    # names a run may choose, and ``spec`` is left out unless the server accepts run specs.

    stream_proposers: bool = field(
        default=True,
        metadata=ui(
            "Stream every model's answer as it is written (on here: watching the models"
            " answer side by side is what Studio is for).",
            "boolean",
        ),
    )
