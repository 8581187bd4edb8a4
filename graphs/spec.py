"""The MoA spec: the single source of truth for a graph's topology and its model policies.

A spec is plain data (pydantic), so it loads from YAML, JSON or Python, validates before any
model is called, and never holds a secret: keys are named by environment variable only.
"""

from __future__ import annotations

import json
import os
import re
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from langgraph_moa.errors import MissingAPIKeyError, SpecError
from langgraph_moa.models.providers import DEFAULT_KEY_ENV, LOCAL_PROVIDER, known_providers
from langgraph_moa.prompts import AGGREGATE_PROMPT, InjectionMode

MAX_LAYERS = 16
"""Upper bounds for every spec, trusted or not: a spec is data, and data must not be able to
make a process build a graph for seconds, sleep for hours or allocate without limit."""
MAX_PROPOSERS = 32
MAX_FALLBACKS = 4
MAX_TOKENS = 1_000_000
MAX_CONTEXT_WINDOW = 10_000_000
MAX_SECONDS = 3600.0

RESERVED_NAMES = frozenset({"aggregate", "rank", "stop"})
"""Proposer names that would collide with a layer's own nodes (``graphs/names.py``)."""

DEFAULT_STRIP_PATTERNS = (r"<think>.*?(?:</think>|\Z)", r"<thinking>.*?(?:</thinking>|\Z)")
"""Reasoning blocks removed by default. ``strip_reasoning`` recognises these two and removes
them with plain string search (linear time); other patterns run as regexes with a timeout."""


class RetrySpec(BaseModel):
    """Retries of one model call, executed by LangGraph's ``RetryPolicy`` on its node.

    The HTTP client's own retries are switched off so there is one mechanism. A 429's
    ``Retry-After`` is honoured (up to ``max_retry_after``) before the policy's backoff.
    """

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts including the first.")
    initial_interval: float = Field(
        default=0.5, ge=0, le=600, description="Seconds before the first retry."
    )
    backoff_factor: float = Field(
        default=2.0, ge=1, le=10, description="Interval multiplier per retry."
    )
    max_interval: float = Field(
        default=30.0, gt=0, le=3600, description="Cap on the backoff interval, seconds."
    )
    jitter: bool = Field(default=True, description="Add up to 1 s of random jitter (LangGraph's).")
    max_retry_after: float = Field(
        default=60.0, ge=0, le=3600, description="Longest Retry-After honoured, s."
    )


class Price(BaseModel):
    """What a model costs, in US dollars per million tokens (as providers list it)."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, description="USD per 1M prompt tokens.")
    output: float = Field(ge=0, description="USD per 1M completion tokens.")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


class ModelSpec(BaseModel):
    """One model: a proposer in a layer, the aggregator, or a fallback."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        description="Unique name in the spec; defaults from the model id, made unique.",
    )
    model: str = Field(
        description="'provider:model' as for init_chat_model: 'together:Qwen/Qwen1.5-72B-Chat',"
        " 'openai:gpt-4o', 'openai:<id>' + base_url (any OpenAI-compatible server),"
        " 'local:smollm2'."
    )
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (vLLM, Ollama...)."
    )
    api_key_env: str | None = Field(
        default=None,
        description="NAME of the environment variable holding the key (never the key). Default:"
        " the provider's usual variable; none when base_url is set.",
    )
    temperature: float | None = Field(default=0.7, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(
        default=512, gt=0, le=MAX_TOKENS, description="Most tokens the model may write."
    )
    system_prompt: str | None = Field(
        default=None, description="A persona for this model only (diversity in self-MoA / local)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for the chat model."
    )
    timeout: float | None = Field(
        default=120.0,
        gt=0,
        le=MAX_SECONDS,
        description="Seconds one attempt may take (sync and async runs alike).",
    )
    retry: RetrySpec = Field(default_factory=RetrySpec)
    context_window: int | None = Field(
        default=None,
        gt=0,
        le=MAX_CONTEXT_WINDOW,
        description="Tokens the model accepts; references are fitted into it.",
    )
    fallback: ModelSpec | None = Field(
        default=None,
        description="Model that answers in this one's place once its retries are spent.",
    )
    price: Price | None = Field(
        default=None, description="USD per 1M input/output tokens; fills calls[].cost_usd when set."
    )
    # -- beyond the paper (issue 15) --
    reference_max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Cap on this model's answer once it becomes a reference for the next"
        " layer (overrides the spec's reference_max_tokens).",
    )

    @field_validator("model")
    @classmethod
    def _provider_known(cls, value: str) -> str:
        provider, sep, model_id = value.partition(":")
        if not sep or not provider or not model_id:
            raise ValueError(f"{value!r} is not 'provider:model' (e.g. 'openai:gpt-4o')")
        if provider not in known_providers():
            raise ValueError(
                f"unknown provider {provider!r}; known: {', '.join(sorted(known_providers()))}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _name_is_a_node_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][\w.\-]*", value):
            raise ValueError(f"{value!r}: use letters, digits, '.', '_', '-' (it names a node)")
        return value

    @field_validator("params")
    @classmethod
    def _no_secret_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if re.search(r"api_?key|secret|token$", k, re.I)]
        if bad:
            raise ValueError(f"{bad[0]!r} looks like a secret: name its variable in api_key_env")
        return value

    @model_validator(mode="after")
    def _local_limits(self) -> ModelSpec:
        """A ``local:`` model's threads and context fit the machine and the model."""
        if self.provider == LOCAL_PROVIDER and self.params:
            from langgraph_moa.models.local import check_params

            check_params(self.params)
        return self

    @property
    def provider(self) -> str:
        return self.model.partition(":")[0]

    @property
    def model_id(self) -> str:
        return self.model.partition(":")[2]

    @property
    def key_env(self) -> str | None:
        """The variable this model's key comes from, or None if it needs no key."""
        if self.api_key_env:
            return self.api_key_env
        if self.base_url or self.provider == LOCAL_PROVIDER:
            return None
        return DEFAULT_KEY_ENV.get(self.provider)


class RankSpec(BaseModel):
    """Rank-then-fuse (LLM-Blender, "council" tools, Archon's ranker): after a layer, rankers
    order its anonymised answers and only the ``top_k`` best go on as references.

    ``judge: peers`` makes every model of the layer a ranker (its own answer included, under
    a label like the others); a ``ModelSpec`` makes that one model the only ranker. Rankings
    are combined by mean rank (Borda); ties keep spec order.
    """

    model_config = ConfigDict(extra="forbid")

    judge: ModelSpec | Literal["peers"] = Field(
        default="peers",
        description="'peers' (the layer's own models rank each other) or one judge model.",
    )
    top_k: int = Field(ge=1, le=MAX_PROPOSERS, description="Answers kept as references.")
    layers: list[int] | None = Field(
        default=None,
        max_length=MAX_LAYERS,
        description="1-based proposer layers to rank (default: every layer with more than"
        " top_k proposers).",
    )


class EarlyStopSpec(BaseModel):
    """Early stopping (Sparse-MoA's moderator; Residual-MoA's convergence stop): after a
    proposer layer, skip the remaining layers straight to the aggregator when a judge says the
    layer's answers are final, or when they agree with the previous layer's answers."""

    model_config = ConfigDict(extra="forbid")

    judge: ModelSpec | None = Field(
        default=None, description="A moderator model asked whether the answers are final."
    )
    similarity: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Stop when the layer's answers agree with the previous layer's at least"
        " this much (mean best-match token-set Jaccard, 0-1).",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> EarlyStopSpec:
        if self.judge is None and self.similarity is None:
            raise ValueError("give a judge, a similarity threshold, or both")
        return self


class MoASpec(BaseModel):
    """A Mixture-of-Agents: proposer layers, then one aggregator.

    The paper's "3-layer MoA" is two proposer layers plus the aggregator; MoA-Lite is one.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="moa", description="Name of the graph (shown in Studio and traces).")
    layers: list[list[ModelSpec]] = Field(
        max_length=MAX_LAYERS,
        description="Proposer layers, each a list of models run in parallel.",
    )
    aggregator: ModelSpec = Field(description="The model that writes the final answer.")
    aggregate_prompt: str = Field(
        default=AGGREGATE_PROMPT,
        description="Aggregate-and-Synthesize text (paper Table 1, verbatim).",
    )
    injection: InjectionMode = Field(
        default="system",
        description="'system': as the reference implementation; 'assistant': as the seed snippet"
        " (an assistant turn after the conversation); 'assistant_before_question': that turn"
        " before the last user turn (for providers that treat a trailing assistant message as"
        " a prefill).",
    )
    min_successful: int = Field(
        default=1,
        ge=1,
        le=MAX_PROPOSERS,
        description="Quorum: answers a layer needs; fewer fails the layer.",
    )
    layer_deadline: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="Once the quorum answered, wait at most this many s for the rest.",
    )
    layer_deadline_factor: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="...or this factor x the median latency of the finished ones.",
    )
    strip_patterns: list[str] = Field(
        # An answer cut at max_tokens may never close its reasoning block: strip to the end.
        default_factory=lambda: list(DEFAULT_STRIP_PATTERNS),
        max_length=16,
        description="Regexes removed from answers before they become references (reasoning).",
    )
    cache: bool = Field(
        default=False,
        description="Reuse answers for identical prompts (LangGraph CachePolicy); compile with a"
        " cache, e.g. InMemoryCache or SqliteCache.",
    )
    cache_ttl: int | None = Field(
        default=None, gt=0, le=366 * 86400, description="Seconds a cached answer stays valid."
    )
    review: bool = Field(
        default=False,
        description="Pause before the aggregator for human review (resume with Command).",
    )
    request_sampling: Literal["answer", "all"] = Field(
        default="answer",
        description="Which models a run's answer settings reach (a moa serve request's"
        " max_tokens / max_completion_tokens, top_p, frequency_penalty, presence_penalty,"
        " logit_bias and reasoning_effort; ChatMoA's parameters of those names). 'answer': the"
        " aggregator and its fallbacks only; the proposers keep this spec's own settings, so a"
        " client's short max_tokens never truncates the references. 'all': the proposers (and"
        " Self-MoA-Seq's windows) get them too. Rankers and the early-stopping judge always"
        " keep their own (their text is parsed); temperature and seed reach every model either"
        " way; tools, stop and response_format only ever reach the answer.",
    )
    # -- beyond the paper (issue 15) --
    max_cost: float | None = Field(
        default=None,
        gt=0,
        description="USD a run may spend: it stops (CostLimitError) before a layer or the"
        " aggregator whose worst-case cost would exceed it. Needs a price for every model.",
    )
    reference_max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Cap on every answer once it becomes a reference for the next layer"
        " (marked like a context-window cut); a model's own cap wins.",
    )
    rank: RankSpec | None = Field(
        default=None,
        description="Rank-then-fuse: rank a layer's answers, keep the top_k as references.",
    )
    aggregate_window: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PROPOSERS,
        description="Self-MoA-Seq: the aggregator reads at most this many references per call"
        " (fewer when they would not fit its context_window whole), carrying its running"
        " synthesis from window to window, instead of truncating them.",
    )
    early_stop: EarlyStopSpec | None = Field(
        default=None,
        description="End the layer stack early (judge verdict or layer-to-layer agreement).",
    )

    @field_validator("layers")
    @classmethod
    def _layers_not_empty(cls, layers: list[list[ModelSpec]]) -> list[list[ModelSpec]]:
        if not layers:
            raise ValueError("at least one proposer layer is required")
        for i, layer in enumerate(layers):
            if not layer:
                raise ValueError(f"layer {i + 1} is empty")
            if len(layer) > MAX_PROPOSERS:
                raise ValueError(f"layer {i + 1}: at most {MAX_PROPOSERS} proposers")
        return layers

    @field_validator("strip_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            if len(p) > 500:
                raise ValueError("a strip pattern has at most 500 characters")
            try:
                regex.compile(p)  # the engine strip_reasoning runs them on
            except regex.error as exc:
                raise ValueError(f"bad regex {p!r}: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _names_and_quorum(self) -> MoASpec:
        """Names are unique within a layer (they name its nodes); the same model may recur
        in several layers under one name, as in the paper's setups."""
        groups = [*self.layers, [self.aggregator]]
        for i, group in enumerate(groups):
            seen: set[str] = set()
            for model in group:
                if model.name is None:
                    continue
                if model.name in seen:
                    where = f"layer {i + 1}" if i < len(self.layers) else "aggregator"
                    raise ValueError(f"duplicate model name {model.name!r} in {where}")
                seen.add(model.name)
            for model in group:
                if model.name is None:
                    model.name = _unique(_default_name(model.model_id), seen)
                    seen.add(model.name)
        for model in [m for layer in self.layers for m in layer] + [
            self.aggregator,
            *self.judges(),
        ]:
            depth, chained = 0, model.fallback
            while chained is not None:
                depth += 1
                chained = chained.fallback
            if depth > MAX_FALLBACKS:
                raise ValueError(f"model {model.name!r}: at most {MAX_FALLBACKS} chained fallbacks")
        for model in self.models():
            if model.name is None:
                model.name = _default_name(model.model_id)
        for i, layer in enumerate(self.layers):
            if self.min_successful > len(layer):
                raise ValueError(
                    f"min_successful={self.min_successful} is larger than layer {i + 1}"
                    f" ({len(layer)} proposers)"
                )
            for j, model in enumerate(layer):
                if model.name in RESERVED_NAMES:
                    raise ValueError(
                        f"layers[{i}][{j}].name: {model.name!r} is reserved (it names a node)"
                    )
        return self

    @model_validator(mode="after")
    def _ranked_layers(self) -> MoASpec:
        if self.rank is None:
            return self
        if self.rank.layers is not None:
            for k in self.rank.layers:
                if not 1 <= k <= len(self.layers):
                    raise ValueError(f"rank.layers: {k} is not a layer (1..{len(self.layers)})")
                if len(self.layers[k - 1]) <= self.rank.top_k:
                    raise ValueError(
                        f"rank.top_k: layer {k} has {len(self.layers[k - 1])} proposers,"
                        f" nothing to drop with top_k={self.rank.top_k}"
                    )
        elif not self.ranked_layers():
            raise ValueError(
                f"rank.top_k: every layer has at most {self.rank.top_k} proposers, nothing to drop"
            )
        return self

    def ranked_layers(self) -> list[int]:
        """1-based layers followed by a rank step (rank-then-fuse)."""
        if self.rank is None:
            return []
        if self.rank.layers is not None:
            return sorted(set(self.rank.layers))
        return [k for k, layer in enumerate(self.layers, 1) if len(layer) > self.rank.top_k]

    def rankers(self, layer: int) -> list[ModelSpec]:
        """The models ranking layer ``layer``'s answers (none if it is not ranked)."""
        if self.rank is None or layer not in self.ranked_layers():
            return []
        if self.rank.judge == "peers":
            return list(self.layers[layer - 1])
        return [self.rank.judge]

    def stop_judge(self) -> ModelSpec | None:
        """The early-stopping judge, if any."""
        return self.early_stop.judge if self.early_stop is not None else None

    @model_validator(mode="after")
    def _known_prices(self) -> MoASpec:
        """Models at their provider's own endpoint get the price table's price (if known)."""
        from langgraph_moa.prices import known_price

        for model in self.models():
            known = known_price(model.model) if model.base_url is None else None
            if model.price is None and known is not None:
                model.price = Price(input=known[0], output=known[1])
        return self

    def judges(self) -> list[ModelSpec]:
        """Models that only judge (rank-then-fuse's judge, the early-stopping judge)."""
        rank_judge = self.rank.judge if self.rank is not None else None
        return [m for m in (rank_judge, self.stop_judge()) if isinstance(m, ModelSpec)]

    def models(self) -> list[ModelSpec]:
        """Every model of the spec, fallbacks included, in spec order (judges last)."""
        out: list[ModelSpec] = []
        roots = [m for layer in self.layers for m in layer] + [self.aggregator, *self.judges()]
        for root in roots:
            model: ModelSpec | None = root
            while model is not None:
                out.append(model)
                model = model.fallback
        return out

    def missing_keys(self) -> dict[str, list[str]]:
        """Unset key variables -> the models needing them (all at once, in spec order)."""
        missing: dict[str, list[str]] = {}
        for model in self.models():
            var = model.key_env
            if var and not os.environ.get(var):
                names = missing.setdefault(var, [])
                if model.name not in names:
                    names.append(str(model.name))
        return missing

    def check_keys(self) -> None:
        """Raise ``MissingAPIKeyError`` listing every unset variable before any call is made."""
        if missing := self.missing_keys():
            raise MissingAPIKeyError(missing)


def _default_name(model_id: str) -> str:
    base = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[^\w.\-]+", "-", base).strip("-._") or "model"


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def _format_validation_error(exc: ValidationError, source: str) -> SpecError:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        loc = re.sub(r"\.(\d+)", r"[\1]", loc)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return SpecError(f"invalid spec ({source}): " + "; ".join(lines))


def parse_spec(data: dict[str, Any] | MoASpec, source: str = "spec") -> MoASpec:
    """Validate a dict into a ``MoASpec``; errors name the field (``layers[0][1].model``)."""
    if isinstance(data, MoASpec):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"invalid spec ({source}): expected a mapping, got {type(data).__name__}")
    # Top-level "x-" keys are free for YAML anchors (as in docker-compose files).
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    try:
        return MoASpec.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(exc, source) from None


MAX_SPEC_BYTES = 1 << 20
"""A spec file is a few KB; reading stops past 1 MiB (``--spec /dev/zero`` must not hang)."""


def load_spec(path: str | os.PathLike[str]) -> MoASpec:
    """Load a spec from a YAML or JSON file (UTF-8, at most ``MAX_SPEC_BYTES``)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec file {str(p)!r}: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"spec file {str(p)!r} is larger than {MAX_SPEC_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec file {str(p)!r} is not UTF-8 text (byte {exc.start}): is it a spec?"
        ) from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            f"spec file {str(p)!r} is not valid {p.suffix[1:] or 'YAML'}: {exc}"
        ) from None
    return parse_spec(data, source=str(p))


_PRESETS = files("langgraph_moa.graphs").joinpath("presets")


def preset_names() -> list[str]:
    """Names of the built-in presets (``moa presets``)."""
    return sorted(
        f.name.removesuffix(".yaml") for f in _PRESETS.iterdir() if f.name.endswith(".yaml")
    )


def load_preset(name: str) -> MoASpec:
    """A built-in preset by name (see ``preset_names``)."""
    if name not in preset_names():
        raise SpecError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    data = yaml.safe_load(_PRESETS.joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    return parse_spec(data, source=f"preset {name}")


def preset_description(name: str) -> str:
    """The first comment line of a preset file, for ``moa presets``."""
    first = _PRESETS.joinpath(f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()


def resolve_spec(
    spec: MoASpec | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    preset: str | None = None,
) -> MoASpec:
    """One entry point for every face: a spec object/dict, a file path, or a preset name."""
    if spec is not None and preset is not None:
        raise SpecError("give a spec or a preset, not both")
    if spec is None:
        return load_preset(preset or "local")
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    return parse_spec(spec)
