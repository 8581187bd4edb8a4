"""Bearer-token authentication for the LangGraph servers that serve ``langgraph.json``.

``langgraph.json`` names this module's ``auth`` (``"auth": {"path": ...}``), so ``langgraph
dev``/``up``, LangGraph Platform and Aegra (``scripts/agent-server``) all run it on every
request. Why a handler of our own: without one, a self-hosted server (Aegra, ``langgraph
up``) answers anyone who can reach it, and on LangGraph Platform a custom handler *replaces*
the LangSmith API-key check, so it must never let an unknown caller through by default.

The rules, read from the environment on every request:

* ``MOA_API_TOKENS`` (comma-separated) set: every request needs ``Authorization: Bearer
  <one of them>`` (compared in constant time). The user's identity is ``token:<sha256
  prefix>``; the token itself is never stored or logged.
* unset: callers on the loopback interface (``langgraph dev`` on your machine) are let in as
  ``anonymous``, unless a proxy forwarded them (``Forwarded``/``X-Forwarded-For``/
  ``X-Real-IP``); anyone else gets 401 naming ``MOA_API_TOKENS``. Aegra does not tell the
  handler who is calling, so there nobody is let in.
* ``MOA_AUTH_ANONYMOUS=1`` (and no tokens): everyone is let in as ``anonymous``, for a server
  behind a gateway of your own that authenticates already.

Each token is a user: the threads it creates (and their runs) are its own, other tokens get
404 for them (``owner`` in the thread's metadata, LangGraph's documented pattern; Aegra also
scopes threads by user itself). Assistants are shared configuration. Without tokens everyone
is the one ``anonymous`` user and nothing is separated.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from langgraph_sdk import Auth

__all__ = [
    "ANONYMOUS_ENV",
    "TOKENS_ENV",
    "auth",
    "authenticate",
    "check",
    "private_threads",
    "valid_assistant_on_create",
    "valid_assistant_on_update",
]

TOKENS_ENV = "MOA_API_TOKENS"
ANONYMOUS_ENV = "MOA_AUTH_ANONYMOUS"
ANONYMOUS = "anonymous"

auth = Auth()


def allowed_tokens() -> list[str]:
    """The operator's tokens (``MOA_API_TOKENS``, comma-separated, blanks ignored)."""
    return [t.strip() for t in os.environ.get(TOKENS_ENV, "").split(",") if t.strip()]


def _header(headers: Mapping[Any, Any], name: str) -> str | None:
    """A header from LangGraph's ``{bytes: bytes}`` or Aegra's ``{str: str}`` mapping."""
    for key, value in headers.items():
        k = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if k.lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


_FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")


def _is_local(headers: Mapping[Any, Any], scope: Mapping[str, Any] | None) -> bool:
    """The caller is on this machine: a loopback peer that no proxy forwarded (a proxy on the
    same host would otherwise make every caller local)."""
    if any(_header(headers, name) is not None for name in _FORWARDED):
        return False
    client = (scope or {}).get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


def _denied(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(
        status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def check(
    headers: Mapping[Any, Any], scope: Mapping[str, Any] | None = None
) -> Auth.types.MinimalUserDict:
    """The user for a request, or ``Auth.exceptions.HTTPException`` (401)."""
    tokens = allowed_tokens()
    if not tokens:
        if os.environ.get(ANONYMOUS_ENV) == "1" or _is_local(headers, scope):
            return {"identity": ANONYMOUS, "display_name": ANONYMOUS}
        raise _denied(
            f"this server accepts only local callers until {TOKENS_ENV} is set"
            f" (or {ANONYMOUS_ENV}=1 behind an authenticating gateway)"
        )
    scheme, _, token = (_header(headers, "authorization") or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _denied("missing bearer token: send 'Authorization: Bearer <token>'")
    given = token.encode()
    # Compare with every token (no early exit): the time taken says nothing about which matched.
    matches = [hmac.compare_digest(given, t.encode()) for t in tokens]
    if not any(matches):
        raise _denied("invalid bearer token")
    digest = hashlib.sha256(given).hexdigest()[:12]
    return {"identity": f"token:{digest}", "display_name": f"token:{digest}"}


@auth.authenticate
async def authenticate(
    headers: Mapping[Any, Any], scope: Mapping[str, Any] | None = None
) -> Auth.types.MinimalUserDict:
    """The server's hook. LangGraph passes ``headers`` and ``scope`` by name, Aegra passes
    only the headers (positionally): ``scope`` is then unknown and nobody counts as local."""
    return check(headers, scope)


@auth.on.threads
async def private_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Every thread action: stamp ``owner`` on what is created, and let each action see only
    the caller's threads. The one shared ``anonymous`` user is left as it was."""
    identity = ctx.user.identity
    if identity == ANONYMOUS:
        return None
    owner = {"owner": identity}
    if isinstance(value, dict):
        if not isinstance(value.get("metadata"), dict):
            value["metadata"] = {}
        value["metadata"].update(owner)  # in place: the server may hold this very dict
    return owner


@auth.on.assistants.create
async def valid_assistant_on_create(ctx: Auth.types.AuthContext, value: Any) -> None:
    """An assistant whose context the graph would refuse at run time is refused now (422,
    naming the field): the server itself stores assistant contexts unchecked."""
    from langgraph_moa.graphs.studio import refuse_invalid_assistant

    await refuse_invalid_assistant(ctx, value)


@auth.on.assistants.update
async def valid_assistant_on_update(ctx: Auth.types.AuthContext, value: Any) -> None:
    """As on create (``assistants.update`` may replace the context)."""
    from langgraph_moa.graphs.studio import refuse_invalid_assistant

    await refuse_invalid_assistant(ctx, value)
