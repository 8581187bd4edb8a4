"""Which per-run sampling settings each provider's chat model can take, and which model of a
mixture gets which setting.

A run (``Context``: a ``moa serve`` request's fields, ``ChatMoA``'s parameters) may set, beside
``temperature``/``max_tokens``/``stop``:

* ``top_p``, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``reasoning_effort``
  and ``answer_max_tokens``: the **answer** only (the aggregator and its fallbacks). They
  shape the text the client reads; the references are the mixture's own working, written
  with the settings their spec chose (and ``logit_bias`` token ids mean something only to
  the model whose tokenizer they come from). A spec opts its proposers in with
  ``request_sampling: all`` (``reaches``); rankers and judges never get them.
* ``seed``: **every** model: an answer is reproducible only if its references are.

A setting a model's provider cannot take is dropped for that model (never a failed call):
``dropped`` names them before the run, so a server can report them. Providers not listed
take none of these settings (their LangChain classes pass unknown keywords on to SDKs that
refuse them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from langgraph_moa.graphs.spec import MoASpec, ModelSpec

ANSWER_FIELDS = ("top_p", "frequency_penalty", "presence_penalty", "logit_bias", "reasoning_effort")
"""Sampling settings of a run that reach the answer models only."""
EVERY_MODEL_FIELDS = ("seed",)
"""Sampling settings of a run that reach every model."""

_OPENAI_API = frozenset({"top_p", "seed", "frequency_penalty", "presence_penalty", "logit_bias"})
TAKES: dict[str, frozenset[str]] = {
    "openai": _OPENAI_API | {"reasoning_effort"},
    "together": _OPENAI_API,
    "langsmith": _OPENAI_API,
    "local": frozenset({"top_p", "seed", "frequency_penalty", "presence_penalty"}),
    "anthropic": frozenset({"top_p"}),
}
"""Provider -> the settings its chat model takes as call keywords."""

_REASONING_MODEL = re.compile(r"(o\d|gpt-5|gpt-oss)", re.IGNORECASE)
"""OpenAI models that take ``reasoning_effort`` (others answer it with a 400)."""
LOCAL_SEEDS = range(0, 2**32)
"""Seeds llama.cpp takes."""


def takes(model: ModelSpec, name: str, value: Any) -> bool:
    """Whether ``model``'s provider can take the setting ``name`` = ``value``."""
    if name not in TAKES.get(model.provider, frozenset()):
        return False
    if name == "reasoning_effort":
        bare = model.model.split(":", 1)[-1].rsplit("/", 1)[-1]
        return bool(_REASONING_MODEL.match(bare))
    if name == "seed" and model.provider == "local":
        return value in LOCAL_SEEDS
    return True


def reaches(spec: MoASpec, role: str, answer: bool) -> bool:
    """Whether a call in a seat of ``role`` (``answer``: an answer node) gets the run's
    answer settings: the answer always; proposers and Self-MoA-Seq windows (role
    ``aggregator`` outside the answer nodes) when the spec says ``request_sampling: all``;
    rankers and judges never."""
    return answer or (spec.request_sampling == "all" and role in ("proposer", "aggregator"))


def _settings(run: Any, answer: bool) -> Iterator[tuple[str, Any]]:
    for name in (*ANSWER_FIELDS, *EVERY_MODEL_FIELDS) if answer else EVERY_MODEL_FIELDS:
        value = getattr(run, name, None)
        if value is not None:
            yield name, value


def call_settings(run: Any, model: ModelSpec, answer: bool) -> dict[str, Any]:
    """The run's sampling settings for one call of ``model`` (``answer``: a call the answer
    settings reach, see ``reaches``), as chat-model keywords, without those its provider
    cannot take."""
    return {name: value for name, value in _settings(run, answer) if takes(model, name, value)}


def _chain(root: ModelSpec) -> Iterator[ModelSpec]:
    model: ModelSpec | None = root
    while model is not None:
        yield model
        model = model.fallback


def _reached_models(spec: MoASpec) -> set[str]:
    """Names of the models the run's answer settings reach (``reaches``)."""
    roots = [spec.aggregator]
    if spec.request_sampling == "all":
        roots += [m for layer in spec.layers for m in layer]
    return {str(m.name) for root in roots for m in _chain(root)}


def dropped(spec: MoASpec, run: Any) -> dict[str, list[str]]:
    """Model name -> the run's settings that model will not get (its provider cannot take
    them): what a server reports beside the answer."""
    out: dict[str, list[str]] = {}
    answer = _reached_models(spec)
    for model in spec.models():
        name = str(model.name)
        for field, value in _settings(run, name in answer):
            if not takes(model, field, value) and field not in out.get(name, []):
                out.setdefault(name, []).append(field)
    return out
