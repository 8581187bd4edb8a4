"""What the test server answers: per-model ``Behavior`` (latency, faults, content) and the
rules that turn a request into an answer (content, token counts, error bodies).

See ``langgraph_moa.testing.server`` for the server itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
_PIECE_RE = re.compile(r"\s*\S+|\s+$")


# --------------------------------------------------------------------------- behaviour


@dataclass
class Behavior:
    """How the server answers requests for one model (all fields optional).

    Precedence per request: ``hang``/``hang_first`` > ``always_status`` > ``fail_first``
    > ``context_window`` > ``malformed`` > ``drop_mid_stream_first`` (streaming only)
    > ``empty`` > normal answer. ``latency`` applies to answers with status 200 (for
    streaming: time to the first chunk); injected error responses wait ``error_latency``.
    """

    latency: float = 0.0
    """Seconds before answering (streaming: before the first chunk)."""
    latency_by_call: list[float] | None = None
    """Per-call latency override: call k (1-based) uses ``latency_by_call[k-1]`` if present."""
    token_delay: float = 0.0
    """Seconds between tokens: streamed chunks are this far apart, and a non-streaming answer
    arrives when its last token would have (a real server generates the same tokens either
    way, so streaming and non-streaming calls take equally long)."""
    tokens: int | None = None
    """Pad/truncate the answer to exactly this many whitespace-separated tokens."""
    content: str | None = None
    """Fixed answer text (instead of ``"{model} says: {last user text}"``)."""
    respect_max_tokens: bool = True
    """Truncate to the request's max_tokens and report ``finish_reason="length"``."""
    fail_first: int = 0
    """The first N requests for this model answer ``fail_status``."""
    fail_status: int = 500
    always_status: int | None = None
    """Every request answers this HTTP status with an OpenAI-style error body."""
    retry_after: float | None = None
    """Seconds for ``Retry-After`` / ``retry-after-ms`` headers on injected error responses."""
    error_latency: float = 0.0
    """Seconds before an injected error response."""
    hang: bool = False
    """Never answer (until the client disconnects or the server stops)."""
    hang_first: int = 0
    """The first N requests for this model hang, later ones are answered normally."""
    malformed: bool = False
    """200 with a body that is not valid JSON (streaming: an invalid ``data:`` event)."""
    empty: bool = False
    """200 with valid JSON but ``content == ""``."""
    context_window: int | None = None
    """Answer 400 ``context_length_exceeded`` if prompt tokens + max_tokens exceed this."""
    drop_mid_stream_first: int = 0
    """The first N *streaming* requests send a few chunks then close the connection."""
    drop_after_chunks: int = 2
    """How many content chunks are sent before a mid-stream drop."""
    tool_calls: bool = False
    """Answer a request that offers ``tools`` with a call of one of them, in OpenAI's shape
    (``tool_call`` below): the tool ``tool_choice`` forces, else the first whose name the
    last user message mentions (as a word), else the first; after a tool result (last
    message ``role: tool``) an ``auto`` request gets a text answer instead, so an agent loop
    ends."""
    echo_auth: bool = False
    """Injected error bodies quote the request's ``Authorization`` header, as some careless
    upstreams do (for testing that a key an upstream echoes is never stored)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Behavior | None) -> Behavior:
        """Build from a dict (unknown keys raise ``ValueError``); passes Behaviors through."""
        if data is None:
            return cls()
        if isinstance(data, Behavior):
            return data
        unknown = set(data) - _BEHAVIOR_FIELDS
        if unknown:
            raise ValueError(f"unknown Behavior field(s): {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Behavior:
        return dataclasses.replace(self, **changes)


_BEHAVIOR_FIELDS = frozenset(f.name for f in dataclasses.fields(Behavior))


# --------------------------------------------------------------------------- helpers


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return str(content)


def estimate_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Whitespace-split word count over the text content of all messages."""
    return sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def _fit_tokens(text: str, n: int) -> str:
    words = text.split()
    if len(words) < n:
        words.extend(f"w{i}" for i in range(len(words) + 1, n + 1))
    return " ".join(words[:n])


def _error_body(status: int) -> dict[str, Any]:
    if status == 429:
        message, etype, code = (
            "Rate limit reached for requests (injected by test server).",
            "requests",
            "rate_limit_exceeded",
        )
    elif status == 401:
        message, etype, code = (
            "Incorrect API key provided.",
            "invalid_request_error",
            ("invalid_api_key"),
        )
    elif status == 404:
        message, etype, code = (
            "The model does not exist.",
            "invalid_request_error",
            ("model_not_found"),
        )
    elif status >= 500:
        message, etype, code = (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
    else:
        message, etype, code = f"Injected error {status}.", "invalid_request_error", None
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --------------------------------------------------------------------------- tool calls

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED_RE = re.compile(r"'([^']+)'|\"([^\"]+)\"")


def _value(schema: Mapping[str, Any], text: str) -> Any:
    """A deterministic value of ``schema`` read from ``text``: numbers are the first number
    in it, strings its first quoted phrase (else the text itself)."""
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if o.get("type") != "null"]
        if options:
            return _value(options[0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    number = _NUMBER_RE.search(text)
    if kind == "integer":
        return int(float(number.group())) if number else 1
    if kind == "number":
        return float(number.group()) if number else 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return _arguments(schema, text)
    quoted = _QUOTED_RE.search(text)
    return (quoted.group(1) or quoted.group(2)) if quoted else (text.strip() or "x")


def _arguments(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Arguments for a JSON-schema object: its required properties (all if none required)."""
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    return {name: _value(properties.get(name) or {}, text) for name in required}


def tool_call(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (tool name, JSON arguments) a ``tool_calls`` model answers ``body`` with, or None
    for a text answer (see ``Behavior.tool_calls``)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("function")]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    messages = body.get("messages") or []
    forced = None
    if isinstance(choice, dict):
        forced = (choice.get("function") or {}).get("name")
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if forced is None and choice != "required" and last.get("role") == "tool":
        return None
    text = _last_user_text(messages)
    by_name = {t["function"].get("name"): t["function"] for t in tools}
    mentioned = (n for n in by_name if n and re.search(rf"\b{re.escape(n)}\b", text))
    name = forced or next(mentioned, None) or next(iter(by_name))
    function = by_name.get(name) or {}
    arguments = _arguments(function.get("parameters") or {}, text)
    return str(name), json.dumps(arguments, ensure_ascii=False)
