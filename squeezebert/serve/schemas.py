"""Request and response bodies, as pydantic models: they validate the options and document the API (OpenAPI).

``inputs`` is typed ``Any`` for validation on purpose: the pipelines' ``parse`` checks each input and names the
bad one (``inputs[3].text_pair is empty``), which pydantic's union errors do not; its documented schema is given
by hand. Responses are documented here but built as plain dicts (no second validation pass on the hot path);
the tests check real responses against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

TEXT = {"type": "string", "minLength": 1}
PAIR = {"type": "object", "properties": {"text": TEXT, "text_pair": TEXT}, "required": ["text"],
        "additionalProperties": False}
QA = {"type": "object", "properties": {"question": TEXT, "context": TEXT}, "required": ["question", "context"],
      "additionalProperties": False}


def one_or_many(schema: dict[str, Any], description: str) -> Any:
    return Annotated[Any, WithJsonSchema({"anyOf": [schema, {"type": "array", "items": schema, "minItems": 1}],
                                          "description": description})]


TRUNCATION = ("cut inputs longer than the server's limits (max_length tokens, max_chars characters) and flag them "
              "'truncated'; false: refuse them with 422")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    truncation: StrictBool = Field(True, description=TRUNCATION)


class ClassifyRequest(Request):
    inputs: one_or_many({"anyOf": [TEXT, PAIR]}, "a text, a {text, text_pair} pair, or a list of them")


class TokensRequest(Request):
    inputs: one_or_many(TEXT, "a text or a list of texts")


class AnswerRequest(Request):
    inputs: one_or_many(QA, "a {question, context} or a list of them")


class EmbedRequest(Request):
    inputs: one_or_many(TEXT, "a text or a list of texts")
    pooling: Literal["mean", "cls"] | None = Field(None, description="default: the server's (mean)")
    normalize: StrictBool = Field(False, description="scale each vector to unit length")


# ---- responses (documentation, and the tests' check of real responses) -----------------------------------------


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")
    took_ms: float = Field(description="server time for the request, queueing included")


class ClassifyResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(None, description="best label (absent for regression)")
    score: float | list[float]
    scores: dict[str, float] | None = Field(None, description="probability of every label")
    truncated: bool


class ClassifyResponse(Response):
    results: list[ClassifyResult]


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity: str
    score: float
    word: str = Field(description="text[start:end]")
    start: int = Field(description="character offset into the text")
    end: int


class TokensResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entities: list[Entity]
    truncated: bool


class TokensResponse(Response):
    results: list[TokensResult]


class AnswerResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str
    score: float
    start: int = Field(description="character offset into the context")
    end: int
    windows: int = Field(description="overlapping windows the context was read in")
    truncated: bool = Field(description="the context was cut at max_chars")


class AnswerResponse(Response):
    results: list[AnswerResult]


class EmbedResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding: list[float]
    truncated: bool


class EmbedResponse(Response):
    results: list[EmbedResult]


class Error(BaseModel):
    detail: str


class Info(BaseModel):
    model: str
    task: str
    endpoints: dict[str, str]
    labels: list[str]
    precision: str
    max_length: int
    limits: dict[str, float]
