"""What the test server answers: per-model ``Behavior`` (latency, faults, content) and the
rules that turn a request into an answer (content, token counts, error bodies).

See ``langgraph_moa.testing.server`` for the server itself.
"""

from __future__ import annotations

import dataclasses
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


