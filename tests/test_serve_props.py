"""Property-based tests of the server's request bodies (hypothesis): whatever a client sends to any route (our own,
TEI's, OpenAI's), the answer is JSON, never a 500, never a traceback; and a 200 is a well-formed answer.

Bodies are drawn from the fields the routes know, with values of any JSON type (texts with lone surrogates and
control characters, huge integers, nested lists and objects), plus arbitrary JSON and arbitrary bytes. Tiny random
models, in process (through httpx's ASGI transport). ``SQUEEZEBERT_HYPOTHESIS_EXAMPLES`` sets the examples per test
(default 300: 1,800 requests over the six tests, about a minute on a busy 2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="the server tests need httpx")
hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_serve import checkpoints, config  # noqa: E402,F401 (checkpoints: a fixture)

from squeezebert.serve.app import create_app  # noqa: E402

EXAMPLES = int(os.environ.get("SQUEEZEBERT_HYPOTHESIS_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FIELDS = ["inputs", "input", "truncation", "pooling", "normalize", "model", "encoding_format", "dimensions", "user",
          "parameters", "function_to_apply", "top_k", "raw_scores", "truncate", "truncation_direction",
          "prompt_name", "add_special_tokens", "text", "text_pair", "question", "context"]
WORDS = ["the", "cat", "sat", "john", "paris", "?", "[MASK]", "", " ", "mean", "cls", "float", "base64", "Left",
         "Right", "softmax", "sigmoid", "none"]
TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", "\x00", "\u200b"]),
               max_size=30) | st.sampled_from(WORDS) | st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join)
SCALAR = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
          | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=5)
                     | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4),
                     max_leaves=12)
BODY = st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=5) | VALUE

# route -> (the inputs field, the other fields it knows): bodies built from them reach the pipelines
ROUTE_FIELDS = {
    "/v1/classify": ("inputs", ["truncation"]),
    "/v1/embeddings": ("inputs", ["pooling", "normalize", "truncation", "input", "model", "encoding_format"]),
    "/embeddings": ("input", ["model", "encoding_format", "dimensions", "user"]),
    "/embed": ("inputs", ["truncate", "truncation_direction", "normalize", "prompt_name", "dimensions"]),
    "/predict": ("inputs", ["truncate", "truncation_direction", "raw_scores"]),
    "/": ("inputs", ["parameters", "truncate", "raw_scores"]),
    "/tokenize": ("inputs", ["add_special_tokens", "prompt_name"]),
}
CLASSIFIER_ROUTES = list(ROUTE_FIELDS)


def route_and_body(route: str) -> st.SearchStrategy:
    main, others = ROUTE_FIELDS[route]
    fields = st.fixed_dictionaries({main: VALUE}, optional={k: VALUE for k in others})
    return st.tuples(st.just(route), fields | BODY)


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert "Traceback" not in response.text
    body = response.json()  # always JSON
    if response.status_code >= 400:
        assert isinstance(body["detail"], str) and body["detail"], body


class LoopClient:
    """The app on an event loop of this thread, called through httpx's ASGI transport: TestClient hops threads
    eight times a request, which made thousands of requests take minutes on a busy machine."""

    def __init__(self, app):
        self.app, self.loop = app, asyncio.new_event_loop()
        self.lifespan = app.router.lifespan_context(app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")

    def post(self, path: str, **kwargs):
        return self.loop.run_until_complete(self.http.post(path, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


def served(path) -> LoopClient:
    # small limits keep the drawn lists and texts meaningful (413s and cuts happen, not only successes)
    return LoopClient(create_app(config(path, max_texts=8, max_queue=64, max_chars=200)))


@pytest.fixture(scope="module")
def classifier(checkpoints):
    c = served(checkpoints["sequence_classification"])
    yield c
    c.close()


@pytest.fixture(scope="module")
def tagger(checkpoints):
    c = served(checkpoints["token_classification"])
    yield c
    c.close()


@pytest.fixture(scope="module")
def reader(checkpoints):
    c = served(checkpoints["question_answering"])
    yield c
    c.close()


@SETTINGS
@given(request=st.sampled_from(CLASSIFIER_ROUTES).flatmap(route_and_body))
def test_any_body_on_the_classifier_routes(classifier, request):
    route, body = request
    check(classifier.post(route, content=json.dumps(body), headers={"content-type": "application/json"}))


@SETTINGS
@given(route=st.sampled_from(CLASSIFIER_ROUTES), inputs=st.lists(TEXT, min_size=1, max_size=10) | TEXT,
       options=st.dictionaries(st.sampled_from(FIELDS), SCALAR, max_size=3))
def test_text_inputs_with_random_options(classifier, route, inputs, options):
    """Mostly well-formed bodies: this is where inputs reach the tokenizer and the model."""
    key = "input" if route.endswith("embeddings") else "inputs"
    response = classifier.post(route, json={**options, key: inputs})
    check(response)


@SETTINGS
@given(route=st.sampled_from(CLASSIFIER_ROUTES), raw=st.binary(max_size=200)
       | st.builds(lambda v: json.dumps(v, allow_nan=True).encode(), VALUE)
       | st.builds(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"), VALUE))
def test_any_bytes(classifier, route, raw):
    check(classifier.post(route, content=raw, headers={"content-type": "application/json"}))


@SETTINGS
@given(body=BODY)
def test_any_body_on_entities(tagger, body):
    check(tagger.post("/v1/entities", content=json.dumps(body), headers={"content-type": "application/json"}))


@SETTINGS
@given(inputs=st.lists(st.fixed_dictionaries({"question": TEXT, "context": TEXT}) | VALUE, min_size=1, max_size=4)
       | st.fixed_dictionaries({"question": TEXT, "context": TEXT}), truncation=st.booleans())
def test_questions_and_contexts(reader, inputs, truncation):
    check(reader.post("/v1/answer", json={"inputs": inputs, "truncation": truncation}))


@SETTINGS
@given(body=BODY)
def test_any_body_on_answers(reader, body):
    check(reader.post("/v1/answer", content=json.dumps(body), headers={"content-type": "application/json"}))
