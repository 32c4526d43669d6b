"""The HTTP app: FastAPI routes over the :class:`~squeezebert.serve.service.Service`, behind plain ASGI middlewares.

A request's way in (outermost first): metrics (every request, by endpoint and status) -> error bodies as JSON ->
Host check (``allowed_hosts``) -> CORS (``cors_origins``) -> the API key (``api_key``) -> the body checks (size,
JSON, UTF-8, arrival time; ``middleware.BodyCheck``) -> the in-flight limit (``max_requests``: a JSON 503 beyond)
-> pydantic validates the options -> the service runs the pipeline (``service.py``). Every refusal is a 4xx (or
503/504 for overload, shutdown or timeout) with ``{"detail": "..."}`` naming what is wrong; a 500 means a bug in
the server (or a model that produced NaN), never bad input, and is JSON too.

Endpoints follow the model's head, as the task table says (``squeezebert.tasks.HEAD_TASKS``): ``/v1/classify``
(sequence classification), ``/v1/entities`` (token classification), ``/v1/answer`` (question answering), plus
``/v1/embeddings`` from the encoder of any model; and Text Embeddings Inference's and OpenAI's routes over the same
service (``compat.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..pipelines import Pipeline
from . import compat, schemas
from .config import ServeConfig
from .middleware import ApiKey, BodyCheck, ErrorShape, InFlightLimit, RequestMetrics
from .playground import PLAYGROUND_HTML
from .service import RETRY_AFTER, ROUTES, Service, backend_of, check_outputs_finite, load_pipelines, respond

log = logging.getLogger(__name__)

PROBES = ("/healthz", "/readyz", "/health", "/metrics")  # cheap, and needed most under load: never limited
# what needs no API key: the probes, and static pages (the playground asks for the key; the docs describe the API)
OPEN_PATHS = PROBES + ("/", "/docs", "/docs/oauth2-redirect", "/openapi.json")


def create_app(config: ServeConfig, pipelines: dict[str, Pipeline] | None = None) -> FastAPI:
    """The ASGI app for ``config`` (pipelines loaded from ``config.model`` unless given). The model must give finite
    outputs on a warm-up input (else ValueError); the batcher starts, and the model is warmed up again through it,
    in the app's lifespan. ``app.state.service`` is the :class:`Service`."""
    # one model call at a time owns the cores; the tokenizers library's own thread pool would compete with it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    pipelines = pipelines if pipelines is not None else load_pipelines(config)
    check_outputs_finite(pipelines, config.model)
    service = Service(config, pipelines)
    app = FastAPI(title="squeezebert", version="0.1.0", lifespan=lifespan(service),
                  description=f"SqueezeBERT inference server: {service.model_id} ({service.task})")
    app.state.service = service
    add_task_routes(app, service)
    compat_paths = compat.add_routes(app, service)
    add_probes(app, service)
    add_error_handlers(app, service, compat_paths)
    endpoints = list(service.endpoints.values()) + compat_paths + list(PROBES) + ["/v1/info"]
    add_middlewares(app, service, endpoints)
    return app


def lifespan(service: Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the batcher (and warm the model up through it) before the first request; drain it at shutdown."""

    @asynccontextmanager
    async def span(app: FastAPI) -> AsyncIterator[None]:
        config = service.config
        if backend_of(config) == "torch":  # an onnxruntime session got its threads when it was made
            from ..infer.fast import set_threads

            set_threads(config.threads)
        await service.start()
        log.info("serving %s (%s) on its %s endpoints", config.model, service.task, ", ".join(service.pipelines))
        try:
            yield
        finally:
            await service.stop()

    return span


def add_task_routes(app: FastAPI, service: Service) -> None:
    """A POST route per served pipeline task, at the task table's endpoint."""
    error_responses = {c: {"model": schemas.Error} for c in (400, 401, 408, 413, 415, 422, 429, 503, 504)}
    for task, path in service.endpoints.items():
        route = ROUTES[task]
        body_type = compat.EMBEDDINGS_BODY if task == "feature-extraction" else route.request
        app.add_api_route(path, make_route(service, task, body_type), methods=["POST"], name=task,
                          summary=task, response_class=JSONResponse,
                          responses={200: {"model": route.response}, **error_responses})


def add_probes(app: FastAPI, service: Service) -> None:
    """The GET routes: liveness, readiness, metrics, the server's description and the playground page."""

    @app.get("/healthz", summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="the model is loaded and warmed up, and the server is not shutting down",
             responses={503: {"model": schemas.Error}})
    async def readyz() -> Response:
        if service.healthy:
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


def add_error_handlers(app: FastAPI, service: Service, compat_paths: Sequence[str]) -> None:
    """Every error as ``{"detail": ...}``: validation (400 malformed JSON, else 422), 404 listing the routes there
    are, 405, and 500 for a bug."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation(exc.errors())},
                            status_code=400 if is_malformed_json(exc.errors()) else 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404:
            routes = ", ".join(service.endpoints.values())
            detail = (f"no such endpoint {request.url.path}; this model ({service.task}) serves {routes}, "
                      f"TEI's {', '.join(p for p in compat_paths if p != '/')} and GET /v1/info, /healthz, /readyz, "
                      "/metrics, /docs")
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:  # a bug: JSON all the same, and logged
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server's log"},
                            status_code=500)


def add_middlewares(app: FastAPI, service: Service, endpoints: Sequence[str]) -> None:
    """The ASGI stack, added innermost first (each ``add_middleware`` wraps everything added before)."""
    config, reject = service.config, (lambda reason: service.metrics.rejected.labels(reason).inc())
    if config.max_requests is not None:
        app.add_middleware(InFlightLimit, limit=config.max_requests, exempt=PROBES, on_reject=reject)
    app.add_middleware(BodyCheck, max_bytes=config.max_body_bytes, on_reject=reject,
                       read_timeout=config.read_timeout_s)
    if config.api_key is not None:
        app.add_middleware(ApiKey, key=config.api_key, open_paths=OPEN_PATHS, on_reject=reject)
    if config.cors_origins:  # outside the key check: a browser's preflight carries no Authorization header
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    if config.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts), www_redirect=False)
    app.add_middleware(ErrorShape, tei_paths=compat.TEI_PATHS, openai_paths=compat.OPENAI_PATHS)
    app.add_middleware(RequestMetrics, metrics=service.metrics, endpoints=endpoints)  # outermost: counts all


def make_route(service: Service, task: str, request_model: Any):
    """The POST handler of one task, typed with its request model (FastAPI reads the annotation)."""

    async def route(body: request_model) -> JSONResponse:  # type: ignore[valid-type]
        if isinstance(body, compat.OpenAIEmbed):  # /v1/embeddings in OpenAI's dialect
            return await respond(service, compat.openai_embed(service, body))
        options = {}
        if isinstance(body, schemas.EmbedRequest):
            options = {"pooling": body.pooling, "normalize": body.normalize}
        return await respond(service, service.run(task, body, **options))

    # this module's annotations are strings (postponed evaluation); FastAPI must see the real request model
    route.__annotations__ = {"body": request_model, "return": JSONResponse}
    return route


def is_malformed_json(errors: Sequence[dict[str, Any]]) -> bool:
    return any(e.get("type") == "json_invalid" for e in errors)


def describe_validation(errors: Sequence[dict[str, Any]]) -> str:
    """pydantic's errors as one line a person can act on: ``truncation: Input should be a valid boolean``."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body" and x not in compat.DIALECT_TAGS]
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
