"""Two plain ASGI middlewares: request metrics, and the body checks that must run before FastAPI parses JSON.

``BodyCheck`` reads a POST body itself so that it can refuse early and clearly: a body over the size limit is a
413 as soon as its Content-Length (or its running total, when chunked) says so, without buffering it; a body that
is not ``application/json`` is a 415; bytes that are not UTF-8 are a 400 naming the offset (FastAPI would answer
"There was an error parsing the body"). The checked body is then replayed to the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from .metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyCheck:
    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[str], None] | None = None):
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope["headers"]}
        error = self._check_headers(headers)
        if error is not None:
            return await self._refuse(send, *error)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await self._refuse(send, 413, f"request body is larger than {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            return await self._refuse(send, 400, f"request body is not valid UTF-8: byte {e.start} "
                                                 f"(0x{body[e.start]:02x}) cannot be decoded")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    def _check_headers(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        media, _, params = headers.get(b"content-type", b"").decode("latin-1").partition(";")
        if media.strip().lower() != "application/json":
            return 415, (f"send the request body as JSON with 'Content-Type: application/json' "
                         f"(got {media.strip() or 'no Content-Type'!r})")
        charset = params.strip().lower().removeprefix("charset=").strip('"') if "charset=" in params.lower() else ""
        if charset and charset not in ("utf-8", "utf8"):
            return 415, f"request body must be UTF-8 JSON (got charset={charset!r})"
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, f"Content-Length {length.decode('latin-1')!r} is not a number"
            if size > self.max_bytes:
                return 413, f"request body of {size} bytes is larger than the limit of {self.max_bytes} bytes"
        return None

    async def _refuse(self, send: Send, status: int, detail: str) -> None:
        if self.on_reject is not None:
            self.on_reject({413: "body_too_large", 415: "content_type"}.get(status, "bad_body"))
        # the unread rest of a refused body makes the connection unusable: ask the client to close it
        await send_error(send, status, detail, {"connection": "close"})


class RequestMetrics:
    """Counts every HTTP request by endpoint and status and times it; unknown paths share one label."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Collection[str]):
        self.app, self.metrics, self.endpoints = app, metrics, set(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope["path"] if scope["path"] in self.endpoints else "other"
            self.metrics.observe_request(path, status, time.perf_counter() - start)
