"""Routes in other servers' dialects, so that clients users already have work unchanged against ours:

- Text Embeddings Inference (TEI): ``POST /embed``, ``/predict``, ``/tokenize``, ``GET /info``, ``/health``, and
  ``POST /``, TEI's default route: ``/predict`` for a classifier, ``/embed`` for any other model. A body with
  ``parameters`` there is the Hugging Face Inference API's text-classification request, which
  ``huggingface_hub.InferenceClient(base_url).text_classification`` sends; it gets that API's list of lists.
- OpenAI embeddings: ``POST /v1/embeddings`` (our own route; a body with ``input`` instead of ``inputs`` is
  OpenAI's) and ``POST /embeddings``: ``input`` a string or a list of strings, ``model`` (any name: one model is
  served), ``encoding_format`` ``float`` or ``base64``, ``dimensions``; vectors are unit length, as OpenAI's and
  TEI's are; ``usage`` counts the model's tokens.

Shapes follow TEI's router (``router/src/http/types.rs``) and OpenAI's API. Everything runs through the same
:class:`Service` as our routes (batching, limits, timeouts, metrics). What we do not support (token-id inputs,
left truncation, prompts) is a 422 naming it. Errors are ``{"detail"}`` like ours, plus the key those clients
read (added by ``middleware.ErrorShape``).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, StrictInt, Tag, WithJsonSchema

from .. import __version__
from ..pipelines import Pipeline
from . import schemas
from .service import Inference, Refused, Service, in_thread_if_long, respond

TEXT = {"type": "string", "minLength": 1}
TEXTS = Annotated[Any, WithJsonSchema({"anyOf": [TEXT, {"type": "array", "items": TEXT, "minItems": 1}],
                                       "description": "a text or a list of texts"})]
PREDICT_INPUTS = Annotated[Any, WithJsonSchema({"description": "TEI's: a text, a pair [text, text_pair], or a batch "
                                                               "[[text], [text, text_pair], ...]"})]
TEI_PATHS = ("/", "/embed", "/predict", "/tokenize", "/info", "/health")
OPENAI_PATHS = ("/v1/embeddings", "/embeddings")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeiRequest(Strict):
    truncate: StrictBool | None = Field(None, description="cut long inputs (default: yes, TEI's --auto-truncate); "
                                                          "false: refuse them")
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"


class TeiEmbed(TeiRequest):
    inputs: TEXTS
    normalize: StrictBool = True
    prompt_name: str | None = None
    dimensions: StrictInt | None = Field(None, ge=1, description="keep the first N dimensions (Matryoshka)")


class TeiPredict(TeiRequest):
    inputs: PREDICT_INPUTS
    raw_scores: StrictBool = False


class TeiTokenize(Strict):
    inputs: TEXTS
    add_special_tokens: StrictBool = True
    prompt_name: str | None = None


class HfClassifyParameters(Strict):
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = None
    top_k: StrictInt | None = Field(None, ge=1)


class HfClassify(Strict):
    """The Hugging Face Inference API's text-classification request."""

    inputs: TEXTS
    parameters: HfClassifyParameters = HfClassifyParameters()


class OpenAIEmbed(Strict):
    input: TEXTS
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1)
    user: str | None = None


def by_key(key: str, present: str, absent: str) -> Any:
    """A pydantic discriminator: the body's dialect is ``present`` when it has ``key``."""
    return Discriminator(lambda body: present if isinstance(body, dict) and key in body else absent)


# /v1/embeddings: OpenAI's body when it has "input", else ours; POST / on a classifier: the Hugging Face Inference
# API's when it has "parameters", else TEI's /predict
EMBEDDINGS_BODY = Annotated[Annotated[OpenAIEmbed, Tag("openai")] | Annotated[schemas.EmbedRequest, Tag("ours")],
                            by_key("input", "openai", "ours")]
CLASSIFY_BODY = Annotated[Annotated[HfClassify, Tag("hf")] | Annotated[TeiPredict, Tag("tei")],
                          by_key("parameters", "hf", "tei")]
DIALECT_TAGS = ("openai", "ours", "hf", "tei")  # pydantic puts them in error locations


# ---------------------------------------------------------------------------------------------- answers


async def embed(service: Service, raw: Any, field: str, truncate: bool | None, normalize: bool,
                dimensions: int | None) -> tuple[list[np.ndarray], int]:
    """Pooled vectors (float32) of the texts in ``raw``, cut to ``dimensions`` and then normalised if asked, and the
    tokens they took."""
    done = await service.infer("feature-extraction", texts(raw, field), truncation=truncate is not False,
                               field=field, normalize=normalize and dimensions is None)
    vectors = [np.asarray(r["embedding"], dtype=np.float32) for r in done.results]
    if dimensions is not None:
        if dimensions > len(vectors[0]):
            raise Refused(422, f"dimensions={dimensions} is more than the model's {len(vectors[0])}", "bad_input")
        vectors = [v[:dimensions] for v in vectors]
        if normalize:
            vectors = [v / max(float(np.linalg.norm(v)), 1e-12) for v in vectors]
    return vectors, done.tokens


async def tei_embed(service: Service, body: TeiEmbed) -> list[list[float]]:
    check_tei_options(body)
    vectors, _ = await embed(service, body.inputs, "inputs", body.truncate, body.normalize, body.dimensions)
    return [v.tolist() for v in vectors]


async def openai_embed(service: Service, body: OpenAIEmbed) -> dict[str, Any]:
    vectors, tokens = await embed(service, body.input, "input", None, True, body.dimensions)
    encode = (lambda v: base64.b64encode(v.astype("<f4").tobytes()).decode()) if body.encoding_format == "base64" \
        else (lambda v: v.tolist())
    return {"object": "list", "model": service.model_id,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def tei_predict(service: Service, body: TeiPredict) -> list[Any]:
    check_tei_options(body)
    items, batched = predict_inputs(body.inputs)
    done = await service.infer("text-classification", items, truncation=body.truncate is not False)
    pipe = service.pipelines["text-classification"]
    answers = [ranked(pipe, logits(done, i), result, "none" if body.raw_scores else None)
               for i, result in enumerate(done.results)]
    return answers if batched else answers[0]


async def hf_classify(service: Service, body: HfClassify) -> list[list[dict[str, Any]]]:
    done = await service.infer("text-classification", texts(body.inputs, "inputs"), truncation=True)
    pipe, options = service.pipelines["text-classification"], body.parameters
    return [ranked(pipe, logits(done, i), result, options.function_to_apply)[:options.top_k]
            for i, result in enumerate(done.results)]


async def tei_tokenize(service: Service, body: TeiTokenize) -> list[list[dict[str, Any]]]:
    if body.prompt_name is not None:
        raise Refused(422, "prompt_name: this server has no prompts", "bad_input")
    pipe = service.pipelines[service.task]
    try:
        items = [Pipeline.parse(pipe, value, i) for i, value in enumerate(texts(body.inputs, "inputs"))]
    except (TypeError, ValueError) as e:
        raise Refused(422, str(e), "bad_input") from None
    if not items:
        raise Refused(422, "inputs is an empty list", "bad_input")
    if len(items) > service.config.max_texts:
        raise Refused(413, f"{len(items)} inputs in one request; the limit is {service.config.max_texts}",
                      "too_many_inputs")
    for i, text in enumerate(items):
        if len(text) > service.config.max_chars:
            raise Refused(413, f"inputs[{i}] has {len(text)} characters; the limit is {service.config.max_chars}",
                          "bad_input")
    return await in_thread_if_long(tokens, items, sum(map(len, items)), pipe, body.add_special_tokens)


def tokens(items: list[str], pipe: Pipeline, add_special_tokens: bool) -> list[list[dict[str, Any]]]:
    """TEI's token list per text: special tokens carry their own text and no offsets, others ``text[start:stop]``
    (character offsets)."""
    tok = pipe.tokenizer
    enc = tok(items, truncation=None, padding=False, return_offsets=True, return_tensors=None,
              add_special_tokens=add_special_tokens)
    out = []
    for row, text in enumerate(items):
        ids, offsets, words = enc["input_ids"][row], enc["offset_mapping"][row], enc.word_ids(row)
        out.append([{"id": i, "text": tok.convert_ids_to_tokens([i])[0], "special": True, "start": None, "stop": None}
                    if word is None else
                    {"id": i, "text": text[start:stop], "special": False, "start": start, "stop": stop}
                    for i, (start, stop), word in zip(ids, offsets, words)])
    return out


def tei_info(service: Service) -> dict[str, Any]:
    c, head = service.config, service.pipelines[service.task]
    if service.task == "text-classification":
        labels = {i: head.config.id2label[i] for i in sorted(head.config.id2label)}
        model_type: dict[str, Any] = {"classifier": {"id2label": {str(i): name for i, name in labels.items()},
                                                     "label2id": {name: i for i, name in labels.items()}}}
    else:
        embedder = service.pipelines.get("feature-extraction")
        model_type = {"embedding": {"pooling": embedder.pooling if embedder is not None else "mean"}}
    return {"model_id": service.model_id, "model_sha": None, "model_dtype": DTYPES[c.precision],
            "model_type": model_type, "max_concurrent_requests": c.max_requests or 0,
            "max_input_length": head.max_length, "max_batch_tokens": c.max_batch_tokens,
            "max_batch_requests": c.max_batch_size, "max_client_batch_size": c.max_texts, "auto_truncate": True,
            "tokenization_workers": 1, "version": __version__, "sha": None, "docker_label": None}


# ---------------------------------------------------------------------------------------------- reading inputs


def texts(value: Any, field: str) -> list[Any]:
    """A text or a list of texts as a list (each checked later, by the pipeline)."""
    if isinstance(value, list):
        ids = bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if ids or any(isinstance(v, list) for v in value):
            raise Refused(422, f"{field}: token-id inputs are not supported; send text", "bad_input")
        return value
    return [value]


def predict_inputs(value: Any) -> tuple[list[Any], bool]:
    """TEI's reading of /predict's ``inputs`` -> (our items, whether it was a batch): a text; ``[text]`` or
    ``[text, text_pair]`` (one input); a list of those lists (a batch)."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [sequence(v, f"inputs[{i}]") for i, v in enumerate(value)], True
    if isinstance(value, list):
        return [sequence(value, "inputs")], False
    return [value], False


def sequence(value: list[Any], where: str) -> Any:
    if len(value) not in (1, 2):
        raise Refused(422, f"{where} has {len(value)} elements: one input is [text] or [text, text_pair], a batch "
                           "a list of them", "bad_input")
    return value[0] if len(value) == 1 else tuple(value)


def check_tei_options(body: TeiEmbed | TeiPredict) -> None:
    if body.truncation_direction.lower() == "left":
        raise Refused(422, "truncation_direction: only 'Right' is supported (long inputs keep their beginning)",
                      "bad_input")
    if getattr(body, "prompt_name", None) is not None:
        raise Refused(422, "prompt_name: this server has no prompts", "bad_input")


def logits(done: Inference, index: int) -> np.ndarray:
    """The classifier's raw scores of input ``index`` (one feature per input)."""
    feature = next(i for i, f in enumerate(done.features) if f.item == index)
    return np.asarray(done.outputs[feature], dtype=np.float64)


def ranked(pipe: Pipeline, raw: np.ndarray, result: dict[str, Any], function: str | None) -> list[dict[str, Any]]:
    """``[{"label", "score"}]``, best first: the pipeline's scores, or ``function`` applied to the raw ones."""
    names = [pipe.config.id2label[i] for i in range(len(raw))]
    if function is None and "scores" in result:
        scores = [result["scores"][name] for name in names]
    elif function == "softmax":
        scores = list(np.exp(raw - raw.max()) / np.exp(raw - raw.max()).sum())
    elif function == "sigmoid":
        scores = list(1.0 / (1.0 + np.exp(-raw)))
    else:  # "none", or a regression model's raw value
        scores = list(raw)
    return sorted(({"label": n, "score": float(s)} for n, s in zip(names, scores)), key=lambda p: -p["score"])


# ---------------------------------------------------------------------------------------------- routes


def add_routes(app: FastAPI, service: Service) -> list[str]:
    """TEI's routes and OpenAI's ``/embeddings`` (``/v1/embeddings`` is registered with our routes); returns the
    paths added."""
    errors = {c: {"model": schemas.Error} for c in (400, 413, 415, 422, 429, 503, 504)}
    added = ["/info", "/health", "/tokenize"]

    @app.get("/info", summary="TEI: the model and the server's limits", tags=["TEI"])
    async def info() -> dict[str, Any]:
        return tei_info(service)

    @app.get("/health", summary="TEI: 200 when the model is ready", tags=["TEI"])
    async def health() -> Response:
        if service.healthy:
            return Response(status_code=200)
        return JSONResponse({"detail": "unhealthy"}, status_code=503, headers={"Retry-After": "1"})

    @app.post("/tokenize", summary="TEI: tokens with ids and character offsets", tags=["TEI"])
    async def tokenize(body: TeiTokenize) -> JSONResponse:
        return await respond(service, tei_tokenize(service, body))

    if "feature-extraction" in service.pipelines:
        added += ["/embed", "/embeddings"]

        @app.post("/embed", summary="TEI: one vector per text", tags=["TEI"], responses=errors)
        async def tei_embed_route(body: TeiEmbed) -> JSONResponse:
            return await respond(service, tei_embed(service, body))

        @app.post("/embeddings", summary="OpenAI: embeddings (also at /v1/embeddings)", tags=["OpenAI"],
                  responses=errors)
        async def openai_route(body: OpenAIEmbed) -> JSONResponse:
            return await respond(service, openai_embed(service, body))

    if service.task == "text-classification":
        added += ["/predict", "/"]

        @app.post("/predict", summary="TEI: every label's score, best first", tags=["TEI"], responses=errors)
        async def predict(body: TeiPredict) -> JSONResponse:
            return await respond(service, tei_predict(service, body))

        @app.post("/", summary="TEI's default route: /predict (a body with 'parameters': the Hugging Face "
                               "Inference API's text classification)", tags=["TEI"], responses=errors)
        async def default_classify(body: CLASSIFY_BODY) -> JSONResponse:  # type: ignore[valid-type]
            work = hf_classify(service, body) if isinstance(body, HfClassify) else tei_predict(service, body)
            return await respond(service, work)

    elif "feature-extraction" in service.pipelines:
        added.append("/")

        @app.post("/", summary="TEI's default route: /embed", tags=["TEI"], responses=errors)
        async def default_embed(body: TeiEmbed) -> JSONResponse:
            return await respond(service, tei_embed(service, body))

    return added
