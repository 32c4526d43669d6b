"""What every route calls: the pipelines, the batcher, the limits and the server's state (:class:`Service`).

A request's life: the pipeline's ``parse`` checks each input and names a bad one -> texts over ``max_chars`` are cut
(flagged) or refused -> ``prepare`` tokenizes into model rows -> the rows join the batcher's bounded queue (or the
request is refused at once with 429) -> a worker thread runs them in batches with other requests' rows -> the
outputs are checked to be finite -> ``finish`` turns each input's outputs into labels / entities / an answer / a
vector. Every refusal is a :class:`Refused` (status, one-line message, metrics reason); a 500 means a bug in the
server (or a model that produces NaN), never bad input.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from ..pipelines import Feature, Pipeline, default_backend, pipeline, task_for_model
from ..tasks import endpoint
from . import schemas
from .batcher import Batcher, QueueFull, ShuttingDown
from .config import ServeConfig
from .metrics import Metrics


@dataclass(frozen=True)
class Route:
    """How the server exposes one pipeline task; its path is the task table's endpoint (``squeezebert.tasks``)."""

    request: type[schemas.Request]
    response: type[schemas.Response]
    warmup: Any  # an input run before /readyz says yes, so no request pays for the first model call
    # a QA or bare model's config still lists (meaningless) default labels: /v1/info shows labels only where used
    labelled: bool = False


# pipeline task -> its route; a model gets the routes of the tasks it has pipelines for
ROUTES: dict[str, Route] = {
    "text-classification": Route(schemas.ClassifyRequest, schemas.ClassifyResponse, "warm up", labelled=True),
    "token-classification": Route(schemas.TokensRequest, schemas.TokensResponse, "warm up", labelled=True),
    "question-answering": Route(schemas.AnswerRequest, schemas.AnswerResponse,
                                {"question": "warm up?", "context": "warm up"}),
    "feature-extraction": Route(schemas.EmbedRequest, schemas.EmbedResponse, "warm up"),
}
RETRY_AFTER = {"Retry-After": "1"}
# below this many characters tokenizing takes well under a millisecond: a thread hop would cost more than it saves
INLINE_TOKENIZE_CHARS = 4096


class Refused(Exception):
    """A request refused with ``status`` and a message; ``reason`` labels the metrics counter."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.reason, self.headers = status, detail, reason, headers


@dataclass
class Inference:
    """One request's answer: ``results`` (one dict per input) and what compatibility routes also need."""

    results: list[dict[str, Any]]
    features: list[Feature]
    outputs: list[Any]  # the model's output per feature (e.g. a classifier's logits)
    tokens: int  # model tokens over all inputs, special tokens included (OpenAI's usage.prompt_tokens)


def backend_of(config: ServeConfig) -> str:
    return config.backend or default_backend(config.model)


def load_pipelines(config: ServeConfig) -> dict[str, Pipeline]:
    """The pipelines for ``config.model``: its head's task, plus embeddings from its encoder (a PyTorch checkpoint;
    an ONNX export has its head's outputs only, so it serves its head's task alone, without torch)."""
    if backend_of(config) == "onnxruntime":
        from ..onnx_backend import OnnxModel

        head = pipeline(None, OnnxModel(config.model, threads=config.threads), precision=config.precision,
                        batch_size=config.max_batch_size, max_length=config.max_length,
                        max_tokens=config.max_batch_tokens)
        return {head.task: head}
    from ..checkpoint import load_model
    from ..tokenizer import Tokenizer

    model = load_model(config.model)
    tokenizer = Tokenizer.from_pretrained(config.model)
    task = task_for_model(model)
    tasks = [task] + (["feature-extraction"] if config.embeddings and task != "feature-extraction" else [])
    return {t: pipeline(t, model, tokenizer, precision=config.precision, batch_size=config.max_batch_size,
                        max_length=config.max_length, max_tokens=config.max_batch_tokens, compile=config.compile)
            for t in tasks}


def check_outputs_finite(pipelines: dict[str, Pipeline], model: str) -> None:
    """Run each pipeline once on its warm-up input; a model that gives NaN or infinity is refused before the server
    starts (its answers could not even be written as JSON)."""
    for task, pipe in pipelines.items():
        if not finite(pipe.forward(pipe.prepare([pipe.parse(ROUTES[task].warmup, 0)]))):
            raise ValueError(f"{model}: the model gives NaN or infinite outputs ({task}, on a warm-up input); "
                             "refusing to serve it (check its weights and config)")


def finite(value: Any) -> bool:
    """Whether every number in model outputs (arrays, or dicts / tuples / lists of them) is finite."""
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())


class Service:
    def __init__(self, config: ServeConfig, pipelines: dict[str, Pipeline]):
        unknown = set(pipelines) - set(ROUTES)
        if unknown or not pipelines:
            raise ValueError(f"pipelines must be for tasks among {', '.join(ROUTES)}, got {sorted(pipelines)}")
        self.config, self.pipelines = config, pipelines
        self.metrics = Metrics()
        self.batcher = Batcher(config.max_batch_tokens, config.max_batch_size, config.max_wait_ms / 1000,
                               config.max_queue, self.metrics)
        self.ready = False
        self.draining = False  # set when shutdown begins: new requests get 503, accepted ones finish

    @property
    def task(self) -> str:
        return next(iter(self.pipelines))  # the head's task comes first

    @property
    def endpoints(self) -> dict[str, str]:
        """Pipeline task -> its path, for the tasks served (the head's first)."""
        return {task: endpoint(task) for task in self.pipelines}

    @property
    def model_id(self) -> str:
        return os.path.basename(os.path.normpath(self.config.model))

    @property
    def healthy(self) -> bool:
        return self.ready and not self.draining and self.batcher.running

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.batcher.start()
        for task, pipe in self.pipelines.items():  # one real model call per pipeline before we say we're ready
            features = pipe.prepare([pipe.parse(ROUTES[task].warmup, 0)])
            await asyncio.gather(*self.batcher.submit(pipe, features))
        self.ready = True

    async def stop(self) -> None:
        self.ready, self.draining = False, True
        await self.batcher.close()

    # ---- one request --------------------------------------------------------------------------------------------
    async def run(self, task: str, body: schemas.Request, **options: Any) -> dict[str, Any]:
        """Our own routes' answer: ``{"results": [...], "took_ms": ...}``."""
        start = time.perf_counter()
        raw = body.inputs if isinstance(body.inputs, list) else [body.inputs]
        done = await self.infer(task, raw, body.truncation, **options)
        return {"results": done.results, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    async def infer(self, task: str, raw: list[Any], truncation: bool, field: str = "inputs",
                    **options: Any) -> Inference:
        """Run the ``task`` pipeline on the raw inputs of one request; ``field`` names them in error messages."""
        start = time.perf_counter()
        pipe = self.pipelines[task]
        if self.draining:
            raise Refused(503, "the server is shutting down", "shutting_down", RETRY_AFTER)
        if not raw:
            raise Refused(422, f"{field} is an empty list", "bad_input")
        if len(raw) > self.config.max_texts:
            raise Refused(413, f"{len(raw)} inputs in one request; the limit is {self.config.max_texts}",
                          "too_many_inputs")
        try:
            items = [pipe.parse(value, i) for i, value in enumerate(raw)]
            items, clipped = clip(items, self.config.max_chars, truncation)
            features = await self._prepare(pipe, items, truncation)
        except (TypeError, ValueError) as e:  # the pipelines' messages name the input: inputs[2].text is empty
            raise Refused(422, str(e).replace("inputs[", f"{field}[", 1), "bad_input") from None
        if len(features) > self.config.max_queue:
            raise Refused(413, f"this request needs {len(features)} model rows (long contexts are read in "
                               f"windows), more than the queue holds ({self.config.max_queue})", "too_many_rows")
        outputs = await self._run(pipe, features, self.config.timeout_s - (time.perf_counter() - start))
        try:
            results = pipe.collect(items, features, outputs, **options)
        except ValueError as e:
            raise Refused(422, str(e), "bad_input") from None
        for result, cut in zip(results, clipped):
            result["truncated"] = bool(result.get("truncated", False) or cut)
        return Inference(results, features, outputs, sum(len(f) for f in features))

    async def _run(self, pipe: Pipeline, features: list[Feature], remaining_s: float) -> list[Any]:
        try:
            futures = self.batcher.submit(pipe, features)
        except QueueFull as e:
            raise Refused(429, f"server busy: {e}; retry later", "queue_full", RETRY_AFTER) from None
        except ShuttingDown:
            raise Refused(503, "the server is shutting down", "shutting_down", RETRY_AFTER) from None
        try:
            outputs = await asyncio.wait_for(asyncio.gather(*futures), max(remaining_s, 0.0))
        except asyncio.TimeoutError:  # the gather's cancellation cancels our rows; the batcher skips them
            raise Refused(504, f"no answer within the server's timeout of {self.config.timeout_s:g} s (it is "
                               "busy); retry later", "timeout", RETRY_AFTER) from None
        if not finite(outputs):  # checked at start-up too; an input can still overflow a fragile model
            raise Refused(500, "the model produced NaN or infinity for this request; the served model is broken "
                               "for such inputs", "non_finite")
        return list(outputs)

    async def _prepare(self, pipe: Pipeline, items: Sequence[Any], truncation: bool) -> list[Feature]:
        return await in_thread_if_long(pipe.prepare, items, sum(map(text_chars, items)), truncation)

    def info(self) -> dict[str, Any]:
        head = self.pipelines[self.task]
        c = self.config
        return {"model": self.model_id, "task": self.task,
                "endpoints": self.endpoints,
                "labels": head.describe()["labels"] if ROUTES[self.task].labelled else [],
                "precision": c.precision, "max_length": head.max_length,
                "limits": {"max_texts": c.max_texts, "max_chars": c.max_chars, "max_body_bytes": c.max_body_bytes,
                           "max_queue": c.max_queue, "timeout_s": c.timeout_s, "max_batch_size": c.max_batch_size,
                           "max_batch_tokens": c.max_batch_tokens, "max_wait_ms": c.max_wait_ms}}


async def in_thread_if_long(work: Any, items: Any, chars: int, *args: Any) -> Any:
    """``work(items, *args)``, in a thread when the texts are long: the event loop keeps accepting and refusing
    requests meanwhile."""
    if chars <= INLINE_TOKENIZE_CHARS:
        return work(items, *args)
    return await asyncio.to_thread(work, items, *args)


async def respond(service: Service, work: Awaitable[Any]) -> JSONResponse:
    """The JSON answer of ``work``, or its refusal as ``{"detail": ...}`` with the refusal's status (counted)."""
    try:
        return JSONResponse(await work)
    except Refused as e:
        service.metrics.rejected.labels(e.reason).inc()
        return JSONResponse({"detail": e.detail}, status_code=e.status, headers=e.headers)


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
