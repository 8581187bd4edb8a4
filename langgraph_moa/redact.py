"""Keep secrets out of everything we store or show, even a key an upstream echoes back.

Provider error bodies are quoted into ``calls[].error``, progress events, ``MoAError``
messages, ``--json`` output and (through the exceptions LangGraph records) checkpoints. Some
upstreams quote the request's ``Authorization`` header in a 401. So every error text and every
exception leaving a model call passes through here.

First the exact values of the keys the process uses are replaced wherever they appear and
however they were written: raw, JSON-escaped (once or twice, ``\\u`` in either case),
URL-encoded (``%7e`` or ``%7E``, ``+`` or ``%20``), as a Python ``repr`` or HTML; with or
without a ``Bearer``/``api_key=`` label before them. Those values are read from the
variables the model factory registered as it built a model (``register_key_env``: every
``api_key_env`` and provider default actually sent), plus every provider's default key
variable and any variable named like a key, token, secret or password. Then, for keys the
process does not hold, anything shaped like a credential after its label (up to the next
space or quote) and strings shaped like common providers' keys.

All patterns are linear-time (literal alternations, no nested quantifiers), so scrubbing
cannot be made slow.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

from langgraph_moa.models.providers import DEFAULT_KEY_ENV

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.I)
_MIN_SECRET = 8
"""Shorter values are not treated as secrets (they would redact ordinary words)."""

_KEY_ENVS: set[str] = set()
"""Variables whose values this process has sent (or will send) as credentials."""

_LABELLED = re.compile(
    r"""(?ix)
    (bearer\s+|basic\s+|
     (?:api[_-]?key|x-api-key|authorization|access[_-]?token|secret)["']?\s*[:=]\s*["']?
     (?:bearer\s+)?)
    [^\s"'`<>,;&\\]{6,}
    """
)
"""A credential after its label: ``Bearer xyz``, ``api_key=xyz``, ``"x-api-key": "xyz"``,
up to the next space, quote or separator (whatever characters the key itself has)."""

_SHAPED = re.compile(r"\b(?:sk|pk|rk|gsk|xai|tgp_v1|hf|ghp|AIza)[-_]?[A-Za-z0-9_-]{16,}")
"""Values shaped like common providers' keys, wherever they appear."""


def register_key_env(*names: str | None) -> None:
    """Record that this process sends the values of ``names`` as credentials: from now on
    those values are scrubbed whatever the variables are called."""
    _KEY_ENVS.update(n for n in names if n)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of the environment variables that hold secrets (registered key variables,
    provider key variables and any variable named like a key, token, secret or password),
    longest first."""
    env = os.environ if environ is None else environ
    names = set(DEFAULT_KEY_ENV.values()) | _KEY_ENVS
    values: set[str] = set()
    for name, value in env.items():
        if name in names or _SECRET_NAME.search(name):
            values.add(value.strip())
            if name in _KEY_ENVS:  # e.g. `moa serve --api-key-env`: one token per client
                values.update(part.strip() for part in value.split(","))
    return sorted((v for v in values if len(v) >= _MIN_SECRET), key=len, reverse=True)


def _hex_cases(text: str, prefix: str, digits: int) -> set[str]:
    """``text`` with the hex digits of its ``prefix`` escapes (``%7e``, ``\\u00e9``) in
    lower case, and in upper case."""
    rx = re.compile(re.escape(prefix) + f"([0-9A-Fa-f]{{{digits}}})")
    return {
        rx.sub(lambda m: prefix + m.group(1).lower(), text),
        rx.sub(lambda m: prefix + m.group(1).upper(), text),
    }


def written_forms(value: str) -> set[str]:
    """Every way ``value`` is commonly written into a text we may receive."""
    forms = {value}
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms |= {escaped, json.dumps(escaped, ensure_ascii=ascii_only)[1:-1]}
    forms |= {f for form in list(forms) for f in _hex_cases(form, "\\u", 4)}
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value, safe="")):
        forms |= _hex_cases(encoded, "%", 2)
    forms |= {repr(value)[1:-1], html.escape(value), html.escape(value, quote=False)}
    return {form for form in forms if form}


@lru_cache(maxsize=32)
def _values_pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = {form for value in values for form in written_forms(value)}
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with secret values (in every written form) and credential-shaped strings
    replaced by ``[REDACTED]``."""
    values = secret_values() if secrets is None else secrets
    pattern = _values_pattern(tuple(values))
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
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
