"""Graph factories for the LangGraph server (``langgraph dev``, LangGraph Platform) and Studio.

``langgraph.json`` registers ``moa`` (the paper's 3-layer MoA preset, ``moa``) and ``moa_local``
(the embedded, offline ``local`` preset). Both are *factories*: the preset decides the topology
(how many layers, which proposers), so the server calls the factory for every run with the
run's context and gets the matching graph. Choose per run (or per assistant) with the graph's
context (``langgraph_moa.graphs.state.Context``)::

    {"preset": "moa-lite"}                      # a built-in preset
    {"spec": {"layers": [[...]], "aggregator": {...}}}   # a whole spec, as in a YAML file
    {"temperature": 0.2, "max_tokens": 256}     # overrides for every model of the run

Where the spec comes from, first match wins: the topology the thread's first run recorded
(state key ``topology``, read from the server's checkpointer: a thread keeps its graph for
every read, update, resume and turn, and a run asking for another one is refused), then the
run context (``runtime.execution_runtime``), then ``config["configurable"]`` (the server
mirrors an assistant's context there, so Studio's graph view of an assistant follows its
preset/spec), then the graph's default. A ``spec`` must be an object (no file paths from
clients). Graphs are compiled without a checkpointer (the server provides one) and cached per
spec. The factories are coroutines that check the policy and build the graph in a worker
thread: building even a spec at the policy's caps never blocks the server's event loop.

A run (not a read) is refused when a model's API key is unset, naming the models but not the
variable (the server's log names it): which variables exist is the operator's business.

What Studio shows (docs/guides/server.md has the user's version)
    * Graph view: ``__start__ -> layer_1 -> layer_1/<model> (parallel fan-out) ->
      layer_1/aggregate -> layer_2 -> ... -> [review] -> aggregator -> __end__``, without
      LangGraph's error-handler nodes. Model nodes carry metadata ``moa_role``, ``moa_layer``,
      ``moa_model``, ``moa_model_id``; these also tag every model run in the messages stream
      and in traces, and streamed chunks are named after their model.
    * Assistant settings: ``context_schema`` below, per policy: ``preset`` lists the presets
      and registered specs, ``spec`` is shown only when run specs are accepted.
    * Output: every field described (``OutputState``'s attribute docstrings).

Security: what a run may ask for is decided by one ``RunPolicy`` (``graphs/policy.py``), read
from the environment: by default a run names only a built-in preset or a spec the operator
registered (``MOA_SPECS``); whole client specs need ``MOA_TRUST_RUN_SPECS=1`` and even then may
not choose keys, endpoints, client objects, loader settings or regexes, and stay within caps.
The same policy applies to an assistant's stored context (``config["configurable"]``).

Tracing is LangSmith's usual opt-in (``LANGSMITH_TRACING=true`` + key in the environment);
nothing here turns it on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph_sdk.runtime import ServerRuntime
from pydantic.json_schema import SkipJsonSchema

from langgraph_moa.errors import InvalidInputError, MissingAPIKeyError, SpecError
from langgraph_moa.graphs.builder import CompiledMoA, build_graph, compile_moa
from langgraph_moa.graphs.policy import (
    BASE_URLS_ENV,
    MAX_OVERRIDE_TOKENS,
    MODELS_ENV,
    SPECS_ENV,
    TRUST_ENV,
    RunPolicy,
)
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.graphs.state import Context, ServerContext, ui

__all__ = [
    "check_context",
    "context_schema",
    "graph_for",
    "moa",
    "moa_local",
    "policy",
    "refuse_invalid_assistant",
    "spec_from_context",
]

_log = logging.getLogger(__name__)
_CACHE: OrderedDict[tuple[str, ...], CompiledMoA] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()  # graphs are built in worker threads


@functools.lru_cache(maxsize=8)
def _policy(default: str, env: tuple[Any, ...]) -> RunPolicy:
    return RunPolicy.from_env(default=default)


def _spec_files() -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every ``MOA_SPECS`` file: an edited file makes a new policy."""
    out = []
    for path in filter(None, (p.strip() for p in os.environ.get(SPECS_ENV, "").split(os.pathsep))):
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1))  # from_env names the missing file
            continue
        out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(out)


def policy(default: str = "moa") -> RunPolicy:
    """The server's ``RunPolicy`` (from the environment; rebuilt when it changes, and when a
    registered spec file (``MOA_SPECS``) is edited: the next run reads the new version)."""
    env = tuple(os.environ.get(v) for v in (TRUST_ENV, SPECS_ENV, BASE_URLS_ENV, MODELS_ENV))
    return _policy(default, (*env, _spec_files()))


def spec_from_context(
    context: Any = None, configurable: Mapping[str, Any] | None = None, *, default: str
) -> MoASpec:
    """The spec a run asks for (``context`` first, then ``configurable``), within the policy."""
    return policy(default).resolve(context, configurable)


def check_context(context: Mapping[str, Any] | None, graph: str = "moa") -> None:
    """Refuse an assistant's (or a run's) context the server would refuse at run time, with
    the same ``SpecError``: for a custom auth handler on ``assistants.create``/``update``,
    since the LangGraph server itself does not validate an assistant's context."""
    default = "local" if graph == "moa_local" else "moa"
    context = dict(context or {})
    known = {f.name for f in dataclasses.fields(ServerContext)}
    if unknown := sorted(str(k)[:64] for k in set(context) - known):
        raise SpecError(f"context: unknown field(s) {unknown[:5]}; known: {sorted(known)}")
    policy(default).resolve(context)
    try:
        ServerContext(**context)  # the remaining per-run checks (stream_proposers ...)
    except InvalidInputError as exc:
        raise SpecError(str(exc)) from None


async def refuse_invalid_assistant(ctx: Any, value: Mapping[str, Any]) -> None:
    """A custom auth handler for ``assistants.create`` / ``assistants.update``: refuses
    (HTTP 422, the ``SpecError``'s message) a context the server would refuse at run time.

    Register it on the deployment's ``Auth`` object (``langgraph.json`` ``auth``)::

        auth.on.assistants.create(refuse_invalid_assistant)
        auth.on.assistants.update(refuse_invalid_assistant)
    """
    from langgraph_sdk import Auth

    context = value.get("context")
    if context is None:
        return
    graph = value.get("graph_id")
    try:
        check_context(context, graph if isinstance(graph, str) else "moa")
    except SpecError as exc:
        raise Auth.exceptions.HTTPException(status_code=422, detail=str(exc)) from None


@functools.lru_cache(maxsize=16)
def context_schema(
    names: tuple[str, ...], trusted: bool, default: str, max_tokens: int = MAX_OVERRIDE_TOKENS
) -> type[ServerContext]:
    """The context class of the server's graphs under a policy: ``preset`` is one of
    ``names`` (a select in Studio), ``spec`` is hidden unless ``trusted``, and
    ``max_tokens`` is bounded by the policy's cap."""
    choices = cast(Any, Literal).__getitem__(names)
    preset_meta = ui(
        f"Which mixture of models answers: a built-in preset or one this server registered."
        f" Empty: {default}. A conversation (thread) keeps the mixture its first run used.",
        "select",
        default=default,
        options=[{"label": n, "value": n} for n in names],
    )
    preset: Any = (choices | None, dataclasses.field(default=None, metadata=preset_meta))
    fields: list[Any] = [("preset", *preset)]
    if not trusted:
        spec_meta = {"description": "Not accepted by this server (it runs registered specs)."}
        hidden = Annotated[dict[str, Any] | None, SkipJsonSchema()]
        fields.append(("spec", hidden, dataclasses.field(default=None, metadata=spec_meta)))
    tokens_meta = ui(
        "Longest answer any model of this run may write, in tokens. Empty: each model's own limit.",
        "number",
        ge=1,
        le=max_tokens,
    )
    fields.append(("max_tokens", int | None, dataclasses.field(default=None, metadata=tokens_meta)))
    cls = dataclasses.make_dataclass(
        "Context",
        fields,
        bases=(ServerContext,),
        kw_only=True,
        namespace={"__doc__": ServerContext.__doc__},
    )
    return cast("type[ServerContext]", cls)


def _schema_for(pol: RunPolicy) -> type[ServerContext]:
    cap = min(pol.limits.max_tokens, MAX_OVERRIDE_TOKENS)  # as RunPolicy.resolve checks it
    return context_schema(tuple(pol.names()), pol.trust_specs, pol.default, cap)


def graph_for(
    spec: MoASpec,
    name: str,
    topology: Mapping[str, Any] | None = None,
    schema: type[Context] = ServerContext,
) -> CompiledMoA:
    """The compiled graph (no checkpointer) for ``spec``, named ``name``; cached. Its first
    layer records ``topology`` in the thread's state (see ``_topology``)."""
    key = (
        name,
        json.dumps(topology, sort_keys=True, default=str),
        f"{schema.__module__}.{schema.__qualname__}.{id(schema)}",
        json.dumps(spec.model_dump(mode="json"), sort_keys=True),
    )
    with _CACHE_LOCK:
        graph = _CACHE.get(key)
        if graph is not None:
            _CACHE.move_to_end(key)
            return graph
    graph = compile_moa(build_graph(spec, context_schema=schema, topology=topology), name=name)
    with _CACHE_LOCK:
        _CACHE[key] = graph
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return graph


def _asked(*sources: Any) -> dict[str, Any] | None:
    """What a run names (``{"preset": ...}`` or ``{"spec": {...}}``), first source first."""
    for source in sources:
        if dataclasses.is_dataclass(source) and not isinstance(source, type):
            source = dataclasses.asdict(source)
        if not isinstance(source, Mapping):
            continue
        for key in ("spec", "preset"):
            if source.get(key) is not None:
                return {key: source[key]}
    return None


def _describe(topology: Mapping[str, Any]) -> str:
    if "preset" in topology:
        name = topology["preset"]
        return f"preset {name!r}" if isinstance(name, str) and len(name) <= 64 else "a preset"
    return "a whole spec"


async def _recorded(config: RunnableConfig | None) -> dict[str, Any] | None:
    """The topology the thread's first run recorded (its latest checkpoint), if any.

    The server hands factories its checkpointer and the thread id in ``configurable``; a
    thread is read through the same factory, so this is what makes every read, update,
    resume and later turn of a thread use the graph its first run chose."""
    configurable = (config or {}).get("configurable") or {}
    saver = configurable.get(CONFIG_KEY_CHECKPOINTER)
    thread_id = configurable.get("thread_id")
    if saver is None or not thread_id:
        return None
    try:
        latest = await saver.aget_tuple(
            {"configurable": {"thread_id": str(thread_id), "checkpoint_ns": ""}}
        )
    except Exception as exc:  # an unknown saver: behave as before (the run's context)
        _log.warning("could not read thread %s's topology: %s", thread_id, exc)
        return None
    if latest is None:
        return None
    topology = (latest.checkpoint.get("channel_values") or {}).get("topology")
    return dict(topology) if isinstance(topology, Mapping) and len(topology) == 1 else None


def _resolve(
    name: str,
    default: str,
    config: RunnableConfig | None,
    runtime: Any,
    recorded: dict[str, Any] | None,
) -> CompiledMoA:
    pol = policy(default)
    execution = getattr(runtime, "execution_runtime", None)
    context = execution.context if execution is not None else None
    configurable = (config or {}).get("configurable") or {}
    spec: MoASpec | None = None
    topology = recorded
    if recorded is not None:
        try:  # re-checked: a client can write any state key (update_state)
            spec = pol.resolve(recorded)
        except SpecError as exc:
            if execution is not None:
                raise SpecError(
                    f"this thread's mixture ({_describe(recorded)}) is no longer available"
                    f" here ({exc}); start a new thread"
                ) from None
            _log.warning("thread topology %s no longer resolves: %s", recorded, exc)
            spec = topology = None
    if execution is not None:
        wanted = pol.resolve(context, configurable)  # also checks the run's overrides
        if spec is None:
            spec = wanted
        elif (asked := _asked(context, configurable)) is not None and _dump(wanted) != _dump(spec):
            raise SpecError(
                f"this thread runs {_describe(recorded or {})} (its first run's choice); a run"
                f" on it cannot switch to {_describe(asked)}: start a new thread for another"
                " mixture"
            )
        if missing := spec.missing_keys():
            # Which variables are unset is the operator's business, not the client's.
            _log.error("graph %s: missing API key variable(s) %s", name, ", ".join(sorted(missing)))
            raise MissingAPIKeyError(missing, public=False)
    if spec is None:
        spec = pol.resolve(context, configurable)
    if topology is None:
        topology = _asked(context, configurable) or {"preset": pol.default}
    return graph_for(spec, name, topology, _schema_for(pol))


def _dump(spec: MoASpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


async def _make(
    name: str, default: str, config: RunnableConfig | None, runtime: Any
) -> CompiledMoA:
    recorded = await _recorded(config)
    return await asyncio.to_thread(_resolve, name, default, config, runtime, recorded)


async def moa(
    config: RunnableConfig | None = None,
    runtime: ServerRuntime[Context] | None = None,
) -> CompiledMoA:
    """Graph ``moa``: the paper's MoA preset unless the run's context picks a preset/spec."""
    return await _make("moa", "moa", config, runtime)


async def moa_local(
    config: RunnableConfig | None = None,
    runtime: ServerRuntime[Context] | None = None,
) -> CompiledMoA:
    """Graph ``moa_local``: the embedded offline ``local`` preset (SmolLM2 on llama.cpp)."""
    return await _make("moa_local", "local", config, runtime)
