"""Connection guards that uvicorn's HTTP/1.1 protocol lacks, so that idle or slow clients cannot lock others out.

What uvicorn 0.54 (our pin) does and does not do, read in ``uvicorn/protocols/http/h11_impl.py`` (h11 is the
protocol in use: httptools is not installed, and zttp would need another package):

- ``timeout_keep_alive`` closes a connection that is idle *after a response*. A new connection that sends nothing,
  or sends its request head one byte at a time, has no timer at all: it stays open for ever.
- ``limit_concurrency`` answers 503 to every new request while the open *connections* (idle ones included) or
  tasks reach the limit: 512 idle connections made every request, ``/healthz`` included, a plain-text 503 for as
  long as they stayed open. We do not use it; requests in progress are limited by ``middleware.InFlightLimit``
  instead, which counts only requests, answers JSON with ``Retry-After`` and lets health probes through.
- ``h11_max_incomplete_event_size`` (16 KiB) bounds the size of a request head, not the time it takes.

:class:`GuardedH11Protocol` keeps uvicorn's protocol and adds, per connection, one timer at a time:

- idle (no request in progress, nothing of a new one received), new connections included: closed after
  ``idle_timeout`` (uvicorn's ``timeout_keep_alive`` timer, armed at connect too);
- reading a request head (from its first byte): the whole head must arrive within ``read_timeout``, else a JSON 408
  and the connection is closed. One deadline for the whole head, not a per-read timer, which a client sending one
  byte a second would reset for ever. The body is timed by ``middleware.BodyCheck`` (a JSON 408 from the app);
- while the app handles a request, no timer here: the app has its own (``timeout_s``, 504).

And a cap on open connections (:class:`ConnectionGuard`): when a new one would exceed it, the connection that has
waited longest without a request in progress (idle, or still sending its request) is closed to make room. Only if
every connection has a request in the app (which ``max_requests`` bounds below the cap) is the new one answered
503 and closed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def raw_response(status: int, reason: str, detail: str, retry_after: bool = False) -> bytes:
    """A whole JSON error response that closes the connection, written straight to the socket: used where there is
    no request (or no app) to answer through."""
    body = json.dumps({"detail": detail}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close"] + (["retry-after: 1"] if retry_after else [])
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ConnectionGuard:
    """One server's open connections, their limit and timeouts; ``on_close(reason)`` counts the ones it closes
    (``idle``, ``read_timeout``, ``evicted``, ``over_limit``, ``bad_request``)."""

    def __init__(self, max_connections: int, idle_timeout: float, read_timeout: float,
                 on_close: Callable[[str], None] | None = None):
        self.max_connections, self.idle_timeout, self.read_timeout = max_connections, idle_timeout, read_timeout
        self.on_close = on_close or (lambda reason: None)
        self.open: set[GuardedH11Protocol] = set()

    def admit(self, new: GuardedH11Protocol) -> bool:
        """Make room for ``new`` if needed; False when every open connection is handling a request."""
        if len(self.open) >= self.max_connections:
            waiting = [c for c in self.open if not c.handling]
            if not waiting:
                return False
            min(waiting, key=lambda c: c.waiting_since).close("evicted")
        self.open.add(new)
        return True

    def protocol(self) -> type[GuardedH11Protocol]:
        """The protocol class to give uvicorn (``uvicorn.Config(http=...)``), bound to this guard."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})


class GuardedH11Protocol(H11Protocol):
    guard: ConnectionGuard  # set by ConnectionGuard.protocol()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = time.monotonic()
        self.read_deadline: asyncio.TimerHandle | None = None
        if not self.guard.admit(self):
            transport.write(raw_response(503, "Service Unavailable", f"the server has {self.guard.max_connections} "
                                         "connections open, all with a request in progress; retry later", True))
            self.guard.on_close("over_limit")
            transport.close()
            return
        # uvicorn arms this timer only after a response: without it a connection that never sends stays open
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.open.discard(self)
        self._cancel_read_deadline()
        super().connection_lost(exc)

    @property
    def in_request(self) -> bool:
        """A request head has arrived and the app has not finished answering it."""
        return self.cycle is not None and not self.cycle.response_complete

    @property
    def handling(self) -> bool:
        """A whole request (head and body) has arrived and the app has not finished answering it."""
        return self.in_request and not self.cycle.more_body

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # cancels the idle timer; may start a request
        if self.transport.is_closing():
            return
        if self.in_request:  # the app has it now: BodyCheck times the body, the app its answer
            self._cancel_read_deadline()
        elif self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]:
            # part of a request head (or the rest of a body the app did not read): it must all arrive in time
            if self.read_deadline is None:
                self.read_deadline = self.loop.call_later(self.guard.read_timeout, self._read_timed_out)
        else:  # these bytes completed something and nothing is pending: idle again
            self._cancel_read_deadline()
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        self.waiting_since = time.monotonic()
        super().on_response_complete()  # arms the idle timer; may start a pipelined request

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.guard.open.discard(self)
            self.guard.on_close("idle")
        super().timeout_keep_alive_handler()

    def send_400_response(self, msg: str) -> None:
        # h11 could not parse the request (or its head outgrew h11_max_incomplete_event_size): JSON, as every refusal
        self.transport.write(raw_response(400, "Bad Request", "invalid HTTP request: malformed request line or "
                                          "headers, or a request head larger than 16 KiB"))
        self.close("bad_request")

    def close(self, reason: str) -> None:
        self.guard.open.discard(self)
        self.guard.on_close(reason)
        self._cancel_read_deadline()
        self._unset_keepalive_if_required()
        self.transport.close()

    def _read_timed_out(self) -> None:
        self.read_deadline = None
        if self.in_request or self.transport.is_closing():
            return
        self.transport.write(raw_response(408, "Request Timeout", "the request head did not arrive within "
                                          f"{self.guard.read_timeout:g} s"))
        self.close("read_timeout")

    def _cancel_read_deadline(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None
