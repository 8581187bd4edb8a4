"""Graph factories for the LangGraph server (``langgraph dev``, LangGraph Platform) and Studio.

``langgraph.json`` registers ``moa`` (the paper's 3-layer MoA preset, ``moa``) and ``moa_local``
(the embedded, offline ``local`` preset). Both are *factories*: the preset decides the topology
(how many layers, which proposers), so the server calls the factory for every run with the
run's context and gets the matching graph. Choose per run (or per assistant) with the graph's
context (``langgraph_moa.graphs.state.Context``)::

    {"preset": "moa-lite"}                      # a built-in preset
    {"spec": {"layers": [[...]], "aggregator": {...}}}   # a whole spec, as in a YAML file
    {"temperature": 0.2, "max_tokens": 256}     # overrides for every model of the run

Where the spec comes from, first match wins: the run context (``runtime.execution_runtime``),
then ``config["configurable"]`` (the server mirrors an assistant's context there, so Studio's
graph view and thread reads of an assistant follow its preset/spec), then the graph's default.
A ``spec`` must be an object (no file paths from clients). Graphs are compiled without a
checkpointer (the server provides one) and cached per spec. The factories are coroutines
that check the policy and build the graph in a worker thread: building even a spec at the
policy's caps never blocks the server's event loop, which serves every other run.

What Studio shows
    * Graph view: ``__start__ -> layer_1 -> layer_1/<model> (parallel fan-out) ->
      layer_1/aggregate -> layer_2 -> ... -> [review] -> aggregator -> __end__``. Model nodes
      carry metadata ``moa_role`` (proposer | aggregator), ``moa_layer``, ``moa_model``,
      ``moa_model_id``; these also tag every model run in the messages stream and in traces.
    * Input: ``messages`` (the chat view writes here). Output: ``answer``, ``messages`` (the
      conversation with the aggregator's reply appended), ``references`` (what the
      aggregator read), ``answers`` (every proposer's text by node) and ``calls`` (one record
      per model call: status, attempts, tokens, latency, TTFT, error).
    * Assistant settings: the ``Context`` fields above (preset, spec, temperature, max_tokens).
    * Streaming: every model's tokens (proposers' and the aggregator's, told apart by
      ``langgraph_node`` / ``moa_role`` metadata; proposers stream here by default,
      ``{"stream_proposers": false}`` in the context turns that off), custom progress events
      (``layer_started``, ``call_started``, ``call_finished``, ``call_error``,
      ``layer_finished``, ...) and per-node updates. Threads keep the conversation, so a
      second turn sees the first answer.
    * Human review: with ``"review": true`` in the spec the run pauses before the aggregator
      (an interrupt carrying the references); resume with ``true`` to go on, or with a list of
      strings to replace the references the aggregator reads.

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
import functools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph_sdk.runtime import ServerRuntime

from langgraph_moa.graphs.builder import CompiledMoA, build_graph
from langgraph_moa.graphs.policy import (
    BASE_URLS_ENV,
    MODELS_ENV,
    SPECS_ENV,
    TRUST_ENV,
    RunPolicy,
)
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.graphs.state import Context, ServerContext

__all__ = ["graph_for", "moa", "moa_local", "policy", "spec_from_context"]

_CACHE: OrderedDict[tuple[str, str], CompiledMoA] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()  # graphs are built in worker threads


@functools.lru_cache(maxsize=8)
def _policy(default: str, env: tuple[str | None, ...]) -> RunPolicy:
    return RunPolicy.from_env(default=default)


def policy(default: str = "moa") -> RunPolicy:
    """The server's ``RunPolicy`` (from the environment; rebuilt when it changes)."""
    env = tuple(os.environ.get(v) for v in (TRUST_ENV, SPECS_ENV, BASE_URLS_ENV, MODELS_ENV))
    return _policy(default, env)


def spec_from_context(
    context: Any = None, configurable: Mapping[str, Any] | None = None, *, default: str
) -> MoASpec:
    """The spec a run asks for (``context`` first, then ``configurable``), within the policy."""
    return policy(default).resolve(context, configurable)


def graph_for(spec: MoASpec, name: str) -> CompiledMoA:
    """The compiled graph (no checkpointer) for ``spec``, named ``name``; cached."""
    key = (name, json.dumps(spec.model_dump(mode="json"), sort_keys=True))
    with _CACHE_LOCK:
        graph = _CACHE.get(key)
        if graph is not None:
            _CACHE.move_to_end(key)
            return graph
    graph = build_graph(spec, context_schema=ServerContext).compile(name=name)
    with _CACHE_LOCK:
        _CACHE[key] = graph
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return graph


def _resolve(name: str, default: str, config: RunnableConfig | None, runtime: Any) -> CompiledMoA:
    execution = getattr(runtime, "execution_runtime", None)
    context = execution.context if execution is not None else None
    configurable = (config or {}).get("configurable") or {}
    return graph_for(spec_from_context(context, configurable, default=default), name)


async def _make(
    name: str, default: str, config: RunnableConfig | None, runtime: Any
) -> CompiledMoA:
    return await asyncio.to_thread(_resolve, name, default, config, runtime)


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
