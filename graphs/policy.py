"""What a client of a server may ask for: the run-spec policy (one object, every server face).

A server (``langgraph dev`` / LangGraph Platform through ``graphs/studio.py``, ``moa serve``)
runs graphs for clients it does not trust, with API keys and CPU it does own. A ``RunPolicy``
turns what a run asks for (its context, or an assistant's stored context) into the spec to
run, and refuses everything else *before* a graph is built or a model is called.

Rules, and why:

* **By default a run picks by name** among the server's built-in presets and the specs the
  operator registered (``specs=``; ``MOA_SPECS`` for the LangGraph server). Those are the
  operator's own and are not checked further.
* **Whole client specs only when the operator opts in** (``trust_specs=True``;
  ``MOA_TRUST_RUN_SPECS=1``), and then only within these rules:

  - provider and ``provider:model`` in the allowed sets (``providers=``, ``models=`` as
    fnmatch patterns); by default only the providers with a fixed public endpoint and a
    known key variable (``RUN_SPEC_PROVIDERS``) and ``local``: a gateway provider
    (``langsmith:``, ``azure_openai:``, ``bedrock:``...) spends the server's credentials on
    whatever its gateway serves, so it needs a ``models=`` pattern naming the provider
    (``MOA_RUN_MODELS=langsmith:*``) or ``providers=``;
  - no ``api_key_env``: a client must never choose which server variable is sent where;
  - no ``base_url`` unless it matches one of the operator's ``base_urls`` patterns (and then
    the model gets no server key: a model with a ``base_url`` reads none);
  - ``params`` only sampling settings (``SAMPLING_PARAMS`` in ``models/providers.py``) with
    scalar values: never endpoints, headers or client objects, whatever the provider
    (``together_api_base``, ``azure_endpoint``, ``openai_api_base``...), and for ``local:``
    never loader settings (``model_path``, ``n_ctx``, ``n_threads``...);
  - no ``strip_patterns`` (a client regex would run on the server: ReDoS);
  - caps (``RunLimits``) on layers, proposers, models, ``max_tokens``, timeouts, retries,
    deadlines, context windows and prompt sizes; ``max_tokens``/``timeout`` must be set.

* **Per-run overrides** (``temperature`` 0-2, ``max_tokens`` 1..cap) are validated for every
  run, preset or not.

Every refusal is a ``SpecError`` naming the field and the rule, and never the name of a
server environment variable (a client must not learn which variables exist).

API (for a server face)::

    policy = RunPolicy(specs={"fast": my_spec}, trust_specs=False, default="moa")
    spec = policy.resolve(context, configurable)   # -> MoASpec, or raises SpecError
    RunPolicy.from_env(default="moa")               # the LangGraph server's policy

``context`` / ``configurable`` are mappings (or a ``Context``) with the keys of
``graphs/state.py`` ``Context``: ``preset`` (a registered name), ``spec`` (a whole spec
object), ``temperature``, ``max_tokens``. The first source naming a preset or spec wins.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph_moa.errors import InvalidInputError, SpecError
from langgraph_moa.graphs.spec import (
    MoASpec,
    ModelSpec,
    load_preset as _load_preset,
    load_spec,
    parse_spec,
    preset_names,
)
from langgraph_moa.graphs.state import (
    check_overrides as _check_overrides,
    check_response_format,
    check_stop,
    check_tools,
)
from langgraph_moa.models.providers import (
    DEFAULT_KEY_ENV,
    OPENAI_COMPATIBLE,
    RUN_SPEC_PROVIDERS,
    SAMPLING_PARAMS,
    URL_PARAMS,
)

__all__ = ["RunLimits", "RunPolicy", "check_overrides"]

TRUST_ENV = "MOA_TRUST_RUN_SPECS"
SPECS_ENV = "MOA_SPECS"
BASE_URLS_ENV = "MOA_RUN_BASE_URLS"
MODELS_ENV = "MOA_RUN_MODELS"

MAX_OVERRIDE_TOKENS = 32_768
"""Largest ``max_tokens`` a run may ask for, also for the operator's own specs."""


@dataclass(frozen=True)
class RunLimits:
    """Caps on a client's whole spec (the operator's registered specs are not capped here)."""

    layers: int = 4
    proposers: int = 8
    models: int = 40
    max_tokens: int = 4096
    timeout: float = 300.0
    max_attempts: int = 5
    retry_interval: float = 60.0
    max_retry_after: float = 60.0
    layer_deadline: float = 300.0
    layer_deadline_factor: float = 10.0
    context_window: int = 1_000_000
    calls: int = 33
    """First-attempt model calls a client spec may make per run (``costs.worst_calls``):
    ``layers x proposers + 1``, so rank-then-fuse, the early-stopping judge and Self-MoA-Seq
    windows cannot take a run past the cost the layer caps already allow."""
    prompt_chars: int = 20_000
    stop_sequences: int = 4
    stop_chars: int = 64


def _where(spec: MoASpec) -> dict[int, str]:
    """id(model) -> its field path in the spec, for messages."""
    out: dict[int, str] = {}
    for i, layer in enumerate(spec.layers):
        for j, model in enumerate(layer):
            out.update(_chain(model, f"layers[{i}][{j}]"))
    out.update(_chain(spec.aggregator, "aggregator"))
    if spec.rank is not None and not isinstance(spec.rank.judge, str):
        out.update(_chain(spec.rank.judge, "rank.judge"))
    if spec.early_stop is not None:
        out.update(_chain(spec.early_stop.judge, "early_stop.judge"))
    return out


def _chain(model: ModelSpec | None, path: str) -> dict[int, str]:
    out = {}
    while model is not None:
        out[id(model)] = path
        model, path = model.fallback, f"{path}.fallback"
    return out


def check_overrides(source: Mapping[str, Any], max_tokens: int = MAX_OVERRIDE_TOKENS) -> None:
    """Per-run ``temperature`` (0-2), ``max_tokens`` and ``answer_max_tokens`` (1..cap),
    ``stop``, ``tools`` / ``tool_choice`` and ``response_format`` (the aggregator's), or a
    ``SpecError``."""
    try:
        _check_overrides(source.get("temperature"), source.get("max_tokens"), max_tokens)
        # the answer's own limit, which a request_sampling: all spec sends its proposers too
        answer = source.get("answer_max_tokens")
        if answer is not None and (
            isinstance(answer, bool) or not isinstance(answer, int) or not 0 < answer <= max_tokens
        ):
            raise InvalidInputError(
                f"context.answer_max_tokens: must be a whole number from 1 to {max_tokens}"
            )
        check_stop(source.get("stop"))
        check_tools(source.get("tools"), source.get("tool_choice"))
        check_response_format(source.get("response_format"))
    except InvalidInputError as exc:
        raise SpecError(str(exc)) from None


def _as_mapping(context: Any) -> Mapping[str, Any]:
    if context is None:
        return {}
    if isinstance(context, Mapping):
        return context
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        return {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    if hasattr(context, "model_dump"):
        return dict(context.model_dump())
    return {}


@dataclass(frozen=True)
class RunPolicy:
    """The allowlist every server face applies to what a run asks for (see module docstring)."""

    specs: Mapping[str, MoASpec] = field(default_factory=dict)
    """The operator's registered specs, by name (beside the built-in presets)."""
    presets: Collection[str] | None = None
    """Built-in presets a run may name (None: all of them)."""
    default: str = "moa"
    """What a run that names nothing gets (a registered spec or a preset)."""
    trust_specs: bool = False
    """Accept whole specs from clients (within the rules below)."""
    providers: Collection[str] | None = None
    """Providers a client spec may use (None: ``RUN_SPEC_PROVIDERS``, plus any provider a
    ``models`` pattern names literally)."""
    models: Collection[str] | None = None
    """fnmatch patterns of ``provider:model`` a client spec may use (None: any)."""
    base_urls: Collection[str] = ()
    """fnmatch patterns of ``base_url`` values a client spec may name (default: none)."""
    limits: RunLimits = field(default_factory=RunLimits)

    @classmethod
    def from_env(cls, default: str = "moa") -> RunPolicy:
        """The policy of a server configured by environment (``langgraph dev``):
        ``MOA_TRUST_RUN_SPECS=1`` accepts client specs; ``MOA_SPECS`` lists spec files
        (``os.pathsep``-separated) registered by file stem; ``MOA_RUN_BASE_URLS`` and
        ``MOA_RUN_MODELS`` are comma-separated fnmatch patterns."""

        def items(var: str, sep: str = ",") -> list[str]:
            return [s.strip() for s in os.environ.get(var, "").split(sep) if s.strip()]

        specs = {}
        for path in items(SPECS_ENV, os.pathsep):
            spec = load_spec(path)
            specs[os.path.splitext(os.path.basename(path))[0]] = spec
        return cls(
            specs=specs,
            default=default,
            trust_specs=os.environ.get(TRUST_ENV) == "1",
            models=items(MODELS_ENV) or None,
            base_urls=tuple(items(BASE_URLS_ENV)),
        )

    # ------------------------------------------------------------------------ resolve
    def names(self) -> list[str]:
        """What a run may name as ``preset``."""
        builtin = preset_names() if self.presets is None else list(self.presets)
        return sorted({*builtin, *self.specs})

    def by_name(self, name: Any) -> MoASpec:
        """A registered spec or an allowed preset, by name."""
        if not isinstance(name, str) or name not in self.names():
            shown = name if isinstance(name, str) and len(name) <= 64 else "?"
            raise SpecError(f"context.preset: unknown {shown!r}; choose one of {self.names()}")
        if name in self.specs:
            return self.specs[name]
        return _load_preset(name)

    def resolve(
        self, context: Any = None, configurable: Mapping[str, Any] | None = None
    ) -> MoASpec:
        """The spec a run may run: ``context`` first, then ``configurable`` (an assistant's
        stored context), else the default. Raises ``SpecError`` naming field and rule."""
        sources = [_as_mapping(context), configurable or {}]
        for source in sources:
            check_overrides(source, min(self.limits.max_tokens, MAX_OVERRIDE_TOKENS))
        for source in sources:
            spec, preset = source.get("spec"), source.get("preset")
            if spec is None and preset is None:
                continue
            if spec is not None and preset is not None:
                raise SpecError("context: give a preset or a spec, not both")
            if preset is not None:
                return self.by_name(preset)
            return self.check_spec(spec)
        return self.by_name(self.default)

    def check_spec(self, data: Any) -> MoASpec:
        """A client's whole spec, validated and checked against every rule."""
        if not self.trust_specs:
            raise SpecError(
                "context.spec: this server runs only its registered specs; name one in"
                f" context.preset: {self.names()}"
            )
        if isinstance(data, MoASpec):
            data = data.model_dump(exclude_unset=True)
        if not isinstance(data, Mapping):
            raise SpecError("context.spec must be an object (a whole spec), not a path")
        if "strip_patterns" in data:
            raise SpecError("context.spec.strip_patterns: set by the server only (no client regex)")
        self._check_raw_params(data)  # before validation runs any provider's own checks
        spec = parse_spec(dict(data), source="context.spec")
        self._check_shape(spec)
        where = _where(spec)
        for model in spec.models():
            self._check_model(model, f"context.spec.{where[id(model)]}")
        return spec

    # ------------------------------------------------------------------------ rules
    def _check_raw_params(self, data: Mapping[str, Any]) -> None:
        layers = data.get("layers")
        raw: list[tuple[Any, str]] = [(data.get("aggregator"), "aggregator")]
        for step in ("rank", "early_stop"):
            if isinstance(data.get(step), Mapping):
                raw.append((data[step].get("judge"), f"{step}.judge"))
        if isinstance(layers, list):
            for i, layer in enumerate(layers[: self.limits.layers + 1]):
                if isinstance(layer, list):
                    raw += [(mod, f"layers[{i}][{j}]") for j, mod in enumerate(layer)]
        for model, path in raw:
            while isinstance(model, Mapping):
                params = model.get("params")
                if isinstance(params, Mapping):
                    for key in params:
                        self._check_param_name(str(key), f"context.spec.{path}.params.{key}")
                model, path = model.get("fallback"), f"{path}.fallback"

    @staticmethod
    def _check_param_name(key: str, path: str) -> None:
        if key in URL_PARAMS or key not in SAMPLING_PARAMS:
            kind = "endpoint/client" if key in URL_PARAMS else "non-sampling"
            raise SpecError(
                f"{path}: {kind} parameter; a run's params may only be"
                f" sampling settings ({', '.join(sorted(SAMPLING_PARAMS))})"
            )

    def _check_shape(self, spec: MoASpec) -> None:
        lim = self.limits
        if len(spec.layers) > lim.layers:
            raise SpecError(f"context.spec.layers: at most {lim.layers} layers")
        for i, layer in enumerate(spec.layers):
            if len(layer) > lim.proposers:
                raise SpecError(f"context.spec.layers[{i}]: at most {lim.proposers} proposers")
        if len(spec.models()) > lim.models:
            raise SpecError(f"context.spec: at most {lim.models} models (fallbacks included)")
        from langgraph_moa.costs import worst_calls

        if (calls := worst_calls(spec)) > lim.calls:
            raise SpecError(
                f"context.spec: at most {lim.calls} model calls per run ({lim.layers} layers x"
                f" {lim.proposers} proposers + the aggregator); this spec may make {calls}"
                " (rank, early_stop.judge and aggregate_window add calls)"
            )
        if len(spec.aggregate_prompt) > lim.prompt_chars:
            raise SpecError(f"context.spec.aggregate_prompt: at most {lim.prompt_chars} characters")
        for name, value, cap in (
            ("layer_deadline", spec.layer_deadline, lim.layer_deadline),
            ("layer_deadline_factor", spec.layer_deadline_factor, lim.layer_deadline_factor),
        ):
            if value is not None and value > cap:
                raise SpecError(f"context.spec.{name}: at most {cap:g}")

    def _check_model(self, model: ModelSpec, path: str) -> None:
        lim = self.limits
        allowed = self.providers
        if allowed is not None and model.provider not in allowed:
            raise SpecError(f"{path}.model: provider {model.provider!r} is not allowed here")
        if self.models is not None and not any(
            fnmatch.fnmatchcase(model.model, p) for p in self.models
        ):
            raise SpecError(f"{path}.model: {model.model!r} is not an allowed model")
        if model.api_key_env is not None:
            raise SpecError(f"{path}.api_key_env: a run may not choose the server's keys")
        if model.base_url is not None and (
            model.provider not in OPENAI_COMPATIBLE
            or not any(
                fnmatch.fnmatchcase(model.base_url.rstrip("/"), p.rstrip("/"))
                for p in self.base_urls
            )
        ):
            raise SpecError(f"{path}.base_url: not an endpoint this server allows")
        for key, value in model.params.items():
            self._check_param_name(key, f"{path}.params.{key}")
            self._check_param(key, value, f"{path}.params.{key}")
        if model.max_tokens is None or model.max_tokens > lim.max_tokens:
            raise SpecError(f"{path}.max_tokens: required, at most {lim.max_tokens}")
        if model.timeout is None or model.timeout > lim.timeout:
            raise SpecError(f"{path}.timeout: required, at most {lim.timeout:g} s")
        if model.context_window is not None and model.context_window > lim.context_window:
            raise SpecError(f"{path}.context_window: at most {lim.context_window}")
        if model.system_prompt is not None and len(model.system_prompt) > lim.prompt_chars:
            raise SpecError(f"{path}.system_prompt: at most {lim.prompt_chars} characters")
        retry = model.retry
        if retry.max_attempts > lim.max_attempts:
            raise SpecError(f"{path}.retry.max_attempts: at most {lim.max_attempts}")
        for name in ("initial_interval", "max_interval"):
            if getattr(retry, name) > lim.retry_interval:
                raise SpecError(f"{path}.retry.{name}: at most {lim.retry_interval:g} s")
        if retry.max_retry_after > lim.max_retry_after:
            raise SpecError(f"{path}.retry.max_retry_after: at most {lim.max_retry_after:g} s")
        key_env = model.key_env
        if (
            key_env
            and key_env == DEFAULT_KEY_ENV.get(model.provider)
            and not os.environ.get(key_env)
        ):
            # Not the variable's name: a client must not learn which variables exist.
            raise SpecError(f"{path}.model: provider {model.provider!r} is not available")
        if (
            self.providers is None
            and model.provider not in RUN_SPEC_PROVIDERS
            and not any(p.partition(":")[0] == model.provider for p in self.models or ())
        ):
            # Gateways (langsmith:, azure_openai:...) spend the server's keys on whatever
            # their gateway serves: only when the operator names the provider.
            raise SpecError(
                f"{path}.model: provider {model.provider!r} is not allowed here unless the"
                f" server's operator names it (e.g. {model.provider}:*)"
            )

    def _check_param(self, key: str, value: Any, path: str) -> None:
        lim = self.limits
        if key == "stop":
            stops = [value] if isinstance(value, str) else value
            if (
                not isinstance(stops, list)
                or len(stops) > lim.stop_sequences
                or not all(isinstance(s, str) and len(s) <= lim.stop_chars for s in stops)
            ):
                raise SpecError(
                    f"{path}: at most {lim.stop_sequences} strings of {lim.stop_chars} chars"
                )
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{path}: must be a number")
        if key == "seed":
            if not isinstance(value, int) or not 0 <= value < 2**31:
                raise SpecError(f"{path}: a whole number from 0 to 2**31-1")
        elif key == "top_k":
            if not isinstance(value, int) or not 0 <= value <= 1000:
                raise SpecError(f"{path}: a whole number from 0 to 1000")
        elif not -2 <= value <= 2:
            raise SpecError(f"{path}: must be from -2 to 2")
