"""uvicorn's HTTP protocol with a deadline on request headers (slow-loris connections).

uvicorn times out an idle keep-alive connection (``timeout_keep_alive``) but not one that is
still sending a request's headers: a client sending a header byte now and then holds a
connection (and its buffers) forever, and a thousand of them exhaust the server's file
descriptors. Nothing else closes them: ``limit_concurrency`` only answers *new* requests
503, and h11's header size limit does not apply to the httptools parser uvicorn prefers.

``GuardedHTTPProtocol`` is uvicorn's own protocol (httptools, else h11) that closes a
connection whose request headers are not complete ``header_timeout`` seconds after their
first byte arrived (or after the connection opened), or that sends more than
``max_header_bytes`` of them. Once a request's headers are in, the body's deadline is the
ASGI guard's (``langgraph_moa.asgi``). Pass the class as ``uvicorn.run(..., http=...)``; a
worker process may change ``header_timeout`` before it serves (``moa serve --read-timeout``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from langgraph_moa.asgi import READ_TIMEOUT


class HeaderDeadline:
    """The deadline, for any of uvicorn's HTTP/1.1 protocols (``httptools``, ``h11``): both
    keep the request in progress as ``self.cycle`` (replaced when a request's headers are
    complete) and have ``loop`` and ``transport``."""

    header_timeout: float = READ_TIMEOUT
    max_header_bytes: int = 64 * 1024
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._armed_for: Any = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if not self._reading_headers():
            super().data_received(data)  # type: ignore[misc]
            return
        if self.cycle is not self._armed_for or self._header_timer is None:
            self._arm()
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is self._armed_for:  # these bytes did not complete the headers
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self.transport.close()

    def _reading_headers(self) -> bool:
        """No request in progress: what arrives now is the next request's headers."""
        cycle = self.cycle
        return cycle is None or bool(cycle.response_complete)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._armed_for = self.cycle
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _expire(self) -> None:
        self._header_timer = None
        expired = self.cycle is self._armed_for and self._reading_headers()
        if expired and not self.transport.is_closing():
            self.transport.close()


class GuardedHTTPProtocol(HeaderDeadline, AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's preferred protocol (httptools if installed, else h11) with the deadline."""
