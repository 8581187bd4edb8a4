"""Keep secrets out of everything we store or show, even a key an upstream echoes back.

Provider error bodies are quoted into ``calls[].error``, progress events, ``MoAError``
messages, ``--json`` output and (through the exceptions LangGraph records) checkpoints. Some
upstreams quote the request's ``Authorization`` header in a 401. So every error text and every
exception leaving a model call passes through here: the values of the process's secret-looking
environment variables are replaced, and so is anything shaped like a bearer token or API key.

All patterns are linear-time (no nested quantifiers), so scrubbing cannot be made slow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from langgraph_moa.models.providers import DEFAULT_KEY_ENV

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.I)
_MIN_SECRET = 8
"""Shorter values are not treated as secrets (they would redact ordinary words)."""

_LABELLED = re.compile(
    r"""(?ix)
    (bearer\s+|basic\s+|
     (?:api[_-]?key|x-api-key|authorization|access[_-]?token|secret)["']?\s*[:=]\s*["']?
     (?:bearer\s+)?)
    [A-Za-z0-9._~+/=-]{6,}
    """
)
"""A credential after its label: ``Bearer xyz``, ``api_key=xyz``, ``"x-api-key": "xyz"``."""

_SHAPED = re.compile(r"\b(?:sk|pk|rk|gsk|xai|tgp_v1|hf|ghp|AIza)[-_]?[A-Za-z0-9_-]{16,}")
"""Values shaped like common providers' keys, wherever they appear."""


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of the environment variables that hold secrets (provider key variables and any
    variable named like a key, token, secret or password), longest first."""
    env = os.environ if environ is None else environ
    names = set(DEFAULT_KEY_ENV.values())
    values = {
        value
        for name, value in env.items()
        if (name in names or _SECRET_NAME.search(name)) and len(value) >= _MIN_SECRET
    }
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with secret values and credential-shaped strings replaced by ``[REDACTED]``."""
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    text = _LABELLED.sub(lambda m: m.group(1) + REDACTED, text)
    return _SHAPED.sub(REDACTED, text)


def _scrub_value(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(v, secrets) for v in value)
    return value


class _Response:
    """What failure handling reads of an HTTP response (status, retry headers), without the
    request (and its ``Authorization`` header) that the SDK's response object holds."""

    _KEEP = ("retry-after", "retry-after-ms", "x-request-id")

    def __init__(self, response: Any) -> None:
        self.status_code = getattr(response, "status_code", None) or getattr(
            response, "status", None
        )
        headers = getattr(response, "headers", None) or {}
        self.headers = {
            k.lower(): str(v) for k, v in dict(headers).items() if str(k).lower() in self._KEEP
        }


def scrub_exception(exc: BaseException) -> BaseException:
    """Scrub ``exc`` and its cause/context chain in place: message, args and body lose secret
    values; an attached HTTP response keeps only its status and retry headers; an attached
    request (whose headers hold the key) is dropped. Returns ``exc``."""
    secrets = secret_values()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            current.args = tuple(_scrub_value(a, secrets) for a in current.args)
            attrs = vars(current)
            for name in ("message", "body"):
                if name in attrs:
                    setattr(current, name, _scrub_value(attrs[name], secrets))
            if attrs.get("response") is not None and not isinstance(attrs["response"], _Response):
                current.response = _Response(attrs["response"])  # type: ignore[attr-defined]
            if "request" in attrs:
                current.request = None  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # read-only attributes of a C exception
            pass
        current = current.__cause__ or current.__context__
    return exc
