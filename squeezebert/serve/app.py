"""The HTTP app: FastAPI routes over the pipelines, with every request's rows batched by the :class:`Batcher`.

A request's life: the body checks (size, JSON, UTF-8; ``middleware.BodyCheck``) -> pydantic validates the options
-> the pipeline's ``parse`` checks each input and names a bad one -> texts over ``max_chars`` are cut (flagged) or
refused -> ``prepare`` tokenizes into model rows -> the rows join the batcher's bounded queue (or the request is
refused at once with 429) -> a worker thread runs them in batches with other requests' rows -> ``finish`` turns
each input's outputs into labels / entities / an answer / a vector. Every refusal is a 4xx (or 503/504 for
shutdown/timeout) with ``{"detail": "..."}`` naming what is wrong; a 500 means a bug in the server, never bad input.

Endpoints follow the model's head: ``/v1/classify`` (sequence classification), ``/v1/entities`` (token
classification), ``/v1/answer`` (question answering), plus ``/v1/embeddings`` from the encoder of any model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ..pipelines import Feature, Pipeline, pipeline, task_for_model
from . import schemas
from .batcher import Batcher, QueueFull, ShuttingDown
from .config import ServeConfig
from .metrics import Metrics
from .middleware import BodyCheck, RequestMetrics
from .playground import PLAYGROUND_HTML

log = logging.getLogger(__name__)

# task -> (path, request model, response model); the routes a model gets are those of the tasks it has pipelines for
ENDPOINTS: dict[str, tuple[str, type[schemas.Request], type[schemas.Response]]] = {
    "text-classification": ("/v1/classify", schemas.ClassifyRequest, schemas.ClassifyResponse),
    "token-classification": ("/v1/entities", schemas.TokensRequest, schemas.TokensResponse),
    "question-answering": ("/v1/answer", schemas.AnswerRequest, schemas.AnswerResponse),
    "feature-extraction": ("/v1/embeddings", schemas.EmbedRequest, schemas.EmbedResponse),
}
# a warm-up input per task: the first model call happens before /readyz says yes
WARMUP: dict[str, Any] = {
    "text-classification": "warm up",
    "token-classification": "warm up",
    "question-answering": {"question": "warm up?", "context": "warm up"},
    "feature-extraction": "warm up",
}
LABELLED = ("text-classification", "token-classification")
RETRY_AFTER = {"Retry-After": "1"}
# below this many characters tokenizing takes well under a millisecond: a thread hop would cost more than it saves
INLINE_TOKENIZE_CHARS = 4096


class Refused(Exception):
    """A request refused with ``status`` and a message; ``reason`` labels the metrics counter."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.reason, self.headers = status, detail, reason, headers


def load_pipelines(config: ServeConfig) -> dict[str, Pipeline]:
    """The pipelines for ``config.model``: its head's task, plus embeddings from its encoder."""
    from ..checkpoint import load_model
    from ..tokenizer import Tokenizer

    model = load_model(config.model)
    tokenizer = Tokenizer.from_pretrained(config.model)
    task = task_for_model(model)
    tasks = [task] + (["feature-extraction"] if config.embeddings and task != "feature-extraction" else [])
    return {t: pipeline(t, model, tokenizer, precision=config.precision, batch_size=config.max_batch_size,
                        max_length=config.max_length, max_tokens=config.max_batch_tokens, compile=config.compile)
            for t in tasks}


class Service:
    """What the routes call: the pipelines, the batcher, the limits, and the server's state."""

    def __init__(self, config: ServeConfig, pipelines: dict[str, Pipeline]):
        unknown = set(pipelines) - set(ENDPOINTS)
        if unknown or not pipelines:
            raise ValueError(f"pipelines must be for tasks among {', '.join(ENDPOINTS)}, got {sorted(pipelines)}")
        self.config, self.pipelines = config, pipelines
        self.metrics = Metrics()
        self.batcher = Batcher(config.max_batch_tokens, config.max_batch_size, config.max_wait_ms / 1000,
                               config.max_queue, self.metrics)
        self.ready = False
        self.draining = False  # set when shutdown begins: new requests get 503, accepted ones finish

    @property
    def task(self) -> str:
        return next(iter(self.pipelines))  # the head's task comes first

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.batcher.start()
        for task, pipe in self.pipelines.items():  # one real model call per pipeline before we say we're ready
            features = pipe.prepare([pipe.parse(WARMUP[task], 0)])
            await asyncio.gather(*self.batcher.submit(pipe, features))
        self.ready = True

    async def stop(self) -> None:
        self.ready, self.draining = False, True
        await self.batcher.close()

    # ---- one request --------------------------------------------------------------------------------------------
    async def run(self, task: str, body: schemas.Request, **options: Any) -> dict[str, Any]:
        start = time.perf_counter()
        pipe = self.pipelines[task]
        if self.draining:
            raise Refused(503, "the server is shutting down", "shutting_down", RETRY_AFTER)
        raw = body.inputs if isinstance(body.inputs, list) else [body.inputs]
        if not raw:
            raise Refused(422, "inputs is an empty list", "bad_input")
        if len(raw) > self.config.max_texts:
            raise Refused(413, f"{len(raw)} inputs in one request; the limit is {self.config.max_texts}",
                          "too_many_inputs")
        try:
            items = [pipe.parse(value, i) for i, value in enumerate(raw)]
            items, clipped = clip(items, self.config.max_chars, body.truncation)
            features = await self._prepare(pipe, items, body.truncation)
        except (TypeError, ValueError) as e:  # the pipelines' messages name the input: inputs[2].text is empty
            raise Refused(422, str(e), "bad_input") from None
        if len(features) > self.config.max_queue:
            raise Refused(413, f"this request needs {len(features)} model rows (long contexts are read in "
                               f"windows), more than the queue holds ({self.config.max_queue})", "too_many_rows")
        try:
            futures = self.batcher.submit(pipe, features)
        except QueueFull as e:
            raise Refused(429, f"server busy: {e}; retry later", "queue_full", RETRY_AFTER) from None
        except ShuttingDown:
            raise Refused(503, "the server is shutting down", "shutting_down", RETRY_AFTER) from None
        remaining = self.config.timeout_s - (time.perf_counter() - start)
        try:
            outputs = await asyncio.wait_for(asyncio.gather(*futures), max(remaining, 0.0))
        except asyncio.TimeoutError:  # the gather's cancellation cancels our rows; the batcher skips them
            raise Refused(504, f"no answer within the server's timeout of {self.config.timeout_s:g} s (it is "
                               "busy); retry later", "timeout", RETRY_AFTER) from None
        try:
            results = pipe.collect(items, features, outputs, **options)
        except ValueError as e:
            raise Refused(422, str(e), "bad_input") from None
        for result, cut in zip(results, clipped):
            result["truncated"] = bool(result.get("truncated", False) or cut)
        return {"results": results, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    async def _prepare(self, pipe: Pipeline, items: Sequence[Any], truncation: bool) -> list[Feature]:
        if sum(map(text_chars, items)) <= INLINE_TOKENIZE_CHARS:
            return pipe.prepare(items, truncation)
        # long inputs: tokenize in a thread so the event loop keeps accepting and refusing requests meanwhile
        return await asyncio.to_thread(pipe.prepare, items, truncation)

    def info(self) -> dict[str, Any]:
        head = self.pipelines[self.task]
        c = self.config
        return {"model": os.path.basename(os.path.normpath(c.model)), "task": self.task,
                "endpoints": {t: ENDPOINTS[t][0] for t in self.pipelines},
                # a QA or bare model's config still lists (meaningless) default labels: show labels only where used
                "labels": head.describe()["labels"] if self.task in LABELLED else [],
                "precision": c.precision, "max_length": head.max_length,
                "limits": {"max_texts": c.max_texts, "max_chars": c.max_chars, "max_body_bytes": c.max_body_bytes,
                           "max_queue": c.max_queue, "timeout_s": c.timeout_s, "max_batch_size": c.max_batch_size,
                           "max_batch_tokens": c.max_batch_tokens, "max_wait_ms": c.max_wait_ms}}


def clip(items: Sequence[Any], max_chars: int, truncation: bool) -> tuple[list[Any], list[bool]]:
    """Cut each text of each item (a str or a tuple of str/None) to ``max_chars``; flag the items cut.
    With ``truncation=False`` a long text is an error instead. Cutting keeps a prefix, so character offsets into
    the cut text are offsets into the original."""
    out, flags = [], []
    for index, item in enumerate(items):
        texts = item if isinstance(item, tuple) else (item,)
        if not truncation:
            for text in texts:
                if text is not None and len(text) > max_chars:
                    raise ValueError(f"inputs[{index}] has a text of {len(text)} characters, more than max_chars="
                                     f"{max_chars}, and truncation is disabled")
        cut = tuple(t[:max_chars] if t is not None else None for t in texts)
        flags.append(cut != texts)
        out.append(cut if isinstance(item, tuple) else cut[0])
    return out, flags


def text_chars(item: Any) -> int:
    return sum(len(t) for t in item if t is not None) if isinstance(item, tuple) else len(item)


def create_app(config: ServeConfig, pipelines: dict[str, Pipeline] | None = None) -> FastAPI:
    """The ASGI app for ``config`` (pipelines loaded from ``config.model`` unless given). The batcher starts, and
    the model is warmed up, in the app's lifespan; ``app.state.service`` is the :class:`Service`."""
    from ..infer.fast import set_threads

    # one model call at a time owns the cores; the tokenizers library's own thread pool would compete with it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    service = Service(config, pipelines if pipelines is not None else load_pipelines(config))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        set_threads(config.threads)
        await service.start()
        log.info("serving %s (%s) on its %s endpoints", config.model, service.task, ", ".join(service.pipelines))
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="squeezebert", version="0.1.0", lifespan=lifespan,
                  description=f"SqueezeBERT inference server: {config.model}")
    app.state.service = service
    error_responses = {c: {"model": schemas.Error} for c in (400, 413, 415, 422, 429, 503, 504)}

    for task in service.pipelines:
        path, request_model, response_model = ENDPOINTS[task]
        app.add_api_route(path, make_route(service, task, request_model), methods=["POST"], name=task,
                          summary=task, response_class=JSONResponse,
                          responses={200: {"model": response_model}, **error_responses})

    @app.get("/healthz", summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="the model is loaded and warmed up, and the server is not shutting down",
             responses={503: {"model": schemas.Error}})
    async def readyz() -> Response:
        if service.ready and not service.draining and service.batcher.running:
            return JSONResponse({"status": "ready", "queue": service.batcher.depth})
        state = "shutting down" if service.draining else "not ready"
        return JSONResponse({"detail": state}, status_code=503, headers=RETRY_AFTER)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/v1/info", summary="the model, its endpoints and the server's limits", response_model=schemas.Info)
    async def info() -> dict[str, Any]:
        return service.info()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(PLAYGROUND_HTML)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation(exc.errors())},
                            status_code=400 if is_malformed_json(exc.errors()) else 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404:
            routes = ", ".join(ENDPOINTS[t][0] for t in service.pipelines)
            detail = (f"no such endpoint {request.url.path}; this model ({service.task}) serves {routes}, "
                      "and GET /v1/info, /healthz, /readyz, /metrics, /docs")
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    endpoints = [ENDPOINTS[t][0] for t in service.pipelines] + ["/", "/healthz", "/readyz", "/metrics", "/v1/info"]
    app.add_middleware(BodyCheck, max_bytes=config.max_body_bytes,
                       on_reject=lambda reason: service.metrics.rejected.labels(reason).inc())
    app.add_middleware(RequestMetrics, metrics=service.metrics, endpoints=endpoints)  # outermost: counts all
    return app


def make_route(service: Service, task: str, request_model: type[schemas.Request]):
    """The POST handler of one task, typed with its request model (FastAPI reads the annotation)."""

    async def route(body: request_model) -> JSONResponse:  # type: ignore[valid-type]
        options = {}
        if isinstance(body, schemas.EmbedRequest):
            options = {"pooling": body.pooling, "normalize": body.normalize}
        try:
            return JSONResponse(await service.run(task, body, **options))
        except Refused as e:
            service.metrics.rejected.labels(e.reason).inc()
            return JSONResponse({"detail": e.detail}, status_code=e.status, headers=e.headers)

    # this module's annotations are strings (postponed evaluation); FastAPI must see the real request model
    route.__annotations__ = {"body": request_model, "return": JSONResponse}
    return route


def is_malformed_json(errors: Sequence[dict[str, Any]]) -> bool:
    return any(e.get("type") == "json_invalid" for e in errors)


def describe_validation(errors: Sequence[dict[str, Any]]) -> str:
    """pydantic's errors as one line a person can act on: ``truncation: Input should be a valid boolean``."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        if e.get("type") == "json_invalid":
            parts.append(f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot parse')} at character "
                         f"{loc[0] if loc else '?'}")
        elif e.get("type") == "missing" and not loc:
            parts.append("the request body is empty; send a JSON object such as {\"inputs\": \"some text\"}")
        elif e.get("type") == "extra_forbidden":
            parts.append(f"unknown field {'.'.join(loc)!r}")
        else:
            parts.append(f"{'.'.join(loc) or 'request body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)
