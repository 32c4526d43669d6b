"""Plain ASGI middlewares: request metrics, error bodies, the API key, the in-flight limit, and the body checks that
must run before FastAPI parses JSON.

``BodyCheck`` reads a POST body itself so that it can refuse early and clearly: a body over the size limit is a
413 as soon as its Content-Length (or its running total, when chunked) says so, without buffering it; a body that
is not ``application/json`` is a 415; bytes that are not UTF-8 are a 400 naming the offset (FastAPI would answer
"There was an error parsing the body"); a body that does not arrive within ``read_timeout`` is a 408 (a slow
client holds a connection, never the server). The checked body is then replayed to the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
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


def has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers


def close_if_body(scope: Scope) -> dict[str, str]:
    """Refusing a request without reading its body leaves the body unread: the connection cannot serve another."""
    return {"connection": "close"} if has_body(scope) else {}


class BodyCheck:
    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[str], None] | None = None,
                 read_timeout: float = 15.0):
        self.app, self.max_bytes, self.on_reject, self.read_timeout = app, max_bytes, on_reject, read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope["headers"]}
        error = self._check_headers(headers)
        if error is not None:
            return await self._refuse(send, *error)
        chunks, total = [], 0
        deadline = time.monotonic() + self.read_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                return await self._refuse(send, 408, f"the request body did not arrive within {self.read_timeout:g} s "
                                                     f"({total} bytes received)")
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
            self.on_reject({413: "body_too_large", 415: "content_type", 408: "read_timeout"}.get(status, "bad_body"))
        # the unread rest of a refused body makes the connection unusable: ask the client to close it
        await send_error(send, status, detail, {"connection": "close"})


class RequestMetrics:
    """Counts every HTTP request by endpoint and status and times it; unknown paths share one label."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Collection[str]):
        self.app, self.metrics, self.endpoints = app, metrics, set(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = status or 500
            raise
        finally:
            path = scope["path"] if scope["path"] in self.endpoints else "other"
            # no answer and no error: the client went away first (nginx's 499, "client closed request"), not a 500
            self.metrics.observe_request(path, status or 499, time.perf_counter() - start)


class ApiKey:
    """Every request but a GET of ``open_paths`` needs ``Authorization: Bearer <key>`` (as the OpenAI and Hugging
    Face clients send it), else a JSON 401. Keys are compared as SHA-256 digests with ``hmac.compare_digest``: the
    time taken tells nothing about the key's bytes, nor its length."""

    def __init__(self, app: ASGIApp, key: str, open_paths: Collection[str],
                 on_reject: Callable[[str], None] | None = None):
        self.app, self.open_paths, self.on_reject = app, set(open_paths), on_reject or (lambda reason: None)
        self.digest = hashlib.sha256(key.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["path"] in self.open_paths and scope["method"] in ("GET", "HEAD")):
            return await self.app(scope, receive, send)
        given = bearer_token(scope)
        if given is not None and hmac.compare_digest(hashlib.sha256(given).digest(), self.digest):
            return await self.app(scope, receive, send)
        self.on_reject("unauthorized")
        detail = ("this server needs an API key: send the header 'Authorization: Bearer <key>'" if given is None
                  else "the API key is not valid")
        await send_error(send, 401, detail, {"www-authenticate": "Bearer", **close_if_body(scope)})


def bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" and token.strip() else None
    return None


class InFlightLimit:
    """At most ``limit`` requests in progress; beyond, a JSON 503 with ``Retry-After`` at once. This replaces
    uvicorn's ``limit_concurrency``, which also counts idle connections (see ``protocol.py``). Requests to ``exempt``
    paths (health probes, metrics: cheap, and needed most under load) are not counted. It sits inside ``BodyCheck``:
    a client still sending its body holds a connection (bounded by the read timeout), not a request slot."""

    def __init__(self, app: ASGIApp, limit: int, exempt: Collection[str],
                 on_reject: Callable[[str], None] | None = None):
        self.app, self.limit, self.exempt = app, limit, set(exempt)
        self.on_reject = on_reject or (lambda reason: None)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            self.on_reject("overloaded")
            return await send_error(send, 503, f"server overloaded: {self.limit} requests in progress; retry later",
                                    {"retry-after": "1"})
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


# Text Embeddings Inference's error_type for a status (its clients show "error"; ours read "detail")
TEI_ERROR_TYPES = {400: "validation", 401: "unauthorized", 413: "validation", 422: "tokenizer", 429: "overloaded",
                   503: "unhealthy", 504: "backend", 500: "backend"}


class ErrorShape:
    """Every error answer as JSON with ``detail``: plain-text ones from starlette's host and CORS checks are
    rewritten, and on the compatibility routes the error also carries the key those clients read (TEI:
    ``error`` + ``error_type``, which huggingface_hub shows; OpenAI: ``error.message``)."""

    def __init__(self, app: ASGIApp, tei_paths: Collection[str], openai_paths: Collection[str]):
        self.app, self.tei_paths, self.openai_paths = app, set(tei_paths), set(openai_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # hold it: the body decides the new length
                return
            if start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                headers = dict(start["headers"])
                body = self.body(scope["path"], start["status"], b"".join(chunks),
                                 headers.get(b"content-type", b""))
                headers.update({b"content-type": b"application/json", b"content-length": str(len(body)).encode()})
                await send({**start, "headers": list(headers.items())})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)

    def body(self, path: str, status: int, raw: bytes, content_type: bytes) -> bytes:
        detail = raw.decode("utf-8", "replace").strip() or f"HTTP {status}"
        data: dict[str, Any] = {"detail": detail}
        if content_type.startswith(b"application/json"):
            try:
                parsed = json.loads(raw)
                data = parsed if isinstance(parsed, dict) and "detail" in parsed else data
            except ValueError:
                pass
        message = str(data["detail"])
        if path in self.tei_paths:
            data.update(error=message, error_type=TEI_ERROR_TYPES.get(status, "validation"))
        elif path in self.openai_paths:
            data["error"] = {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                             "param": None, "code": None}
        return json.dumps(data).encode()
