"""One small exception hierarchy, so callers can catch ``MoAError`` and get model names and causes.

Every error here is raised *before* a model is called (spec, keys, input) or carries the
per-model failures that made a layer or the run fail. Messages never contain secrets: keys
are referred to by the name of their environment variable only.

Each error also subclasses the built-in it honestly is: ``ValueError`` for what the caller
asked for (spec, input), ``RuntimeError`` for what went wrong while running (a model call, a
layer, the cost limit). Besides being what ``except`` clauses expect, that is what lets the
LangGraph server pass the message to its clients: it blanks the message of any exception
outside a short list of built-ins ("An internal error occurred").
"""

from __future__ import annotations

from typing import Any


class MoAError(Exception):
    """Base class of every error langgraph-moa raises on purpose.

    ``partial`` holds what the run had computed when it failed (``answers``, ``references``,
    ``calls``), so an error never loses an answer, with or without a checkpointer.
    """

    partial: dict[str, Any] | None = None


class SpecError(MoAError, ValueError):
    """The spec is invalid; the message names the field (e.g. ``layers[1][0].model``)."""


class MissingAPIKeyError(SpecError):
    """Environment variables named by ``api_key_env`` are unset; lists all of them at once."""

    def __init__(self, missing: dict[str, list[str]], *, public: bool = True):
        self.missing = missing  # variable name -> model names that need it
        if not public:  # a server's client: which variables exist is the operator's business
            models = sorted({m for names in missing.values() for m in names})
            super().__init__(
                f"{', '.join(models)}: not configured on this server (an API key is missing;"
                " the server's log names it)"
            )
            return
        lines = [f"  {var} (needed by {', '.join(models)})" for var, models in missing.items()]
        super().__init__("missing API key environment variable(s):\n" + "\n".join(lines))


class ToolCallingUnsupportedError(SpecError):
    """Tools were offered to a run whose answer model (the aggregator or one of its
    fallbacks) cannot call tools, e.g. the embedded ``local`` llama.cpp model."""

    def __init__(self, models: list[str]):
        self.models = models
        super().__init__(
            f"{', '.join(models)} cannot call tools: the aggregator and its fallbacks answer"
            " tool-calling requests; choose a spec whose aggregator supports tool calling"
        )


class InvalidInputError(MoAError, ValueError):
    """The question or messages cannot be answered (empty, unknown role, wrong content type)."""


class ModelCallError(MoAError, RuntimeError):
    """One model call failed for good; ``model`` is the spec name, ``reason`` a short cause."""

    def __init__(self, model: str, reason: str, *, retryable: bool = True):
        self.model = model
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"{model}: {reason}")


class ModelTimeoutError(ModelCallError):
    """One attempt took longer than the model's ``timeout``: retried, then recorded."""


class EmptyResponseError(ModelCallError):
    """The provider answered 200 with no content: counted as a failure, retried."""


class ContextOverflowError(ModelCallError):
    """The prompt cannot fit the model's context window even with every reference cut."""

    def __init__(self, model: str, reason: str):
        super().__init__(model, reason, retryable=False)


class LayerFailedError(MoAError, RuntimeError):
    """Fewer proposers of a layer answered than its quorum (``min_successful``)."""

    def __init__(self, layer: int, failures: dict[str, str], needed: int, got: int):
        self.layer = layer
        self.failures = failures  # model name -> why it failed
        self.needed = needed
        self.got = got
        detail = "; ".join(f"{name}: {why}" for name, why in failures.items())
        super().__init__(
            f"layer {layer} failed: {got} of the {needed} required answers arrived ({detail})"
        )


class CostLimitError(MoAError, RuntimeError):
    """The run stopped before a step whose worst-case cost would pass ``max_cost``.

    ``spent`` is what the finished calls cost (USD), ``next_cost`` the worst-case cost of the
    step that was not started, ``step`` its name (``layer_2``, ``aggregator``...); ``partial``
    holds every answer computed so far.
    """

    def __init__(self, limit: float, spent: float, next_cost: float, step: str):
        self.limit = limit
        self.spent = spent
        self.next_cost = next_cost
        self.step = step
        super().__init__(
            f"max_cost ${limit:.6f} reached: spent ${spent:.6f}; {step} could cost up to"
            f" ${next_cost:.6f} more, so it was not started"
        )
