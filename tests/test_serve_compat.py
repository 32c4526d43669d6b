"""The server in other servers' dialects: Text Embeddings Inference (TEI) and OpenAI embeddings.

First the shapes, in process (FastAPI's TestClient); then the real client libraries (``openai``,
``huggingface_hub``) against a real server on 127.0.0.1, each answer compared with our pipeline run directly.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="the server tests need httpx")

from test_serve import checkpoints, client, running_server  # noqa: E402,F401 (checkpoints: a fixture)

from squeezebert.pipelines import pipeline  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402

KEY = "test-key-123"
TEXTS = ["the cat sat on the mat", "a dog", "john lives in paris"]


def approx(x, tol=1e-5):
    return pytest.approx(x, abs=tol)


@pytest.fixture(scope="module")
def reference(checkpoints):
    """Our pipelines run directly (no server; `.run` gives our result shapes): what every route must answer."""
    return {"embed": pipeline("feature-extraction", checkpoints["base"]).run,  # our results, as the server's
            "classify": pipeline("text-classification", checkpoints["sequence_classification"]).run}


def unit(v):
    return math.sqrt(sum(x * x for x in v))


# ---------------------------------------------------------------------------------------------- TEI, in process


def test_tei_embed(checkpoints, reference):
    want = [r["embedding"] for r in reference["embed"](TEXTS, normalize=True)]
    raw = [r["embedding"] for r in reference["embed"](TEXTS[:1])]
    with client(checkpoints["base"]) as c:
        one = c.post("/embed", json={"inputs": TEXTS[0]})
        many = c.post("/embed", json={"inputs": TEXTS})
        plain = c.post("/embed", json={"inputs": TEXTS[0], "normalize": False})
        cut = c.post("/embed", json={"inputs": TEXTS[0], "dimensions": 8})
        default = c.post("/", json={"inputs": TEXTS[0]})  # TEI's default route: /embed for an embedding model
        refused = {name: c.post("/embed", json=body) for name, body in {
            "left": {"inputs": "a", "truncation_direction": "Left"},
            "prompt": {"inputs": "a", "prompt_name": "query"},
            "ids": {"inputs": [101, 102]},
            "too long": {"inputs": "the cat " * 400, "truncate": False},
            "dims": {"inputs": "a", "dimensions": 33},
            "empty": {"inputs": ""},
        }.items()}
    assert one.json() == [approx(want[0])] and len(one.json()[0]) == 32
    assert many.json() == [approx(w) for w in want]
    assert plain.json() == [approx(raw[0])]
    assert len(cut.json()[0]) == 8 and unit(cut.json()[0]) == approx(1.0)
    assert cut.json()[0] == approx(list(np.array(raw[0][:8]) / np.linalg.norm(raw[0][:8])))
    assert default.json() == one.json()
    for name, r in refused.items():
        assert r.status_code == 422, (name, r.text)
        body = r.json()
        assert body["error"] == body["detail"] and body["error_type"] == "tokenizer", name  # TEI's error shape
    assert "only 'Right'" in refused["left"].json()["detail"]
    assert "token-id inputs are not supported" in refused["ids"].json()["detail"]
    assert "longer than max_length" in refused["too long"].json()["detail"]
    assert "inputs[0] is empty" in refused["empty"].json()["detail"]


def test_tei_predict_and_the_default_route(checkpoints, reference):
    path = checkpoints["sequence_classification"]
    want = reference["classify"](["the movie was good", ("the cat sat", "a dog sat")])

    def ranking(result):
        return sorted(({"label": k, "score": approx(v)} for k, v in result["scores"].items()),
                      key=lambda p: -p["score"].expected)

    with client(path) as c:
        single = c.post("/predict", json={"inputs": "the movie was good"})
        pair = c.post("/predict", json={"inputs": ["the cat sat", "a dog sat"]})
        batch = c.post("/predict", json={"inputs": [["the movie was good"], ["the cat sat", "a dog sat"]]})
        raw = c.post("/predict", json={"inputs": "the movie was good", "raw_scores": True})
        default = c.post("/", json={"inputs": "the movie was good"})  # TEI: /predict for a classifier
        hf = c.post("/", json={"inputs": "the movie was good", "parameters": {}})  # the HF Inference API's body
        top1 = c.post("/", json={"inputs": ["the movie was good", "bad"], "parameters": {"top_k": 1}})
        sigmoid = c.post("/", json={"inputs": "bad", "parameters": {"function_to_apply": "sigmoid"}})
        three = c.post("/predict", json={"inputs": ["a", "b", "c"]})
    assert single.json() == ranking(want[0])
    assert [p["score"] for p in single.json()] == sorted((p["score"] for p in single.json()), reverse=True)
    assert pair.json() == ranking(want[1])
    assert batch.json() == [ranking(want[0]), ranking(want[1])]
    logits = {p["label"]: p["score"] for p in raw.json()}
    e = {k: math.exp(v) for k, v in logits.items()}
    assert {k: v / sum(e.values()) for k, v in e.items()} == approx(want[0]["scores"])
    assert default.json() == single.json()
    assert hf.json() == [single.json()]
    assert [len(x) for x in top1.json()] == [1, 1] and top1.json()[0] == ranking(want[0])[:1]  # batched: noise
    assert all(0 < p["score"] < 1 for p in sigmoid.json()[0])
    assert sum(p["score"] for p in sigmoid.json()[0]) != approx(1.0)
    assert three.status_code == 422 and "3 elements" in three.json()["error"]


def test_tei_tokenize_info_and_health(checkpoints):
    text = "John lives in Paris."
    tokenizer = Tokenizer.from_pretrained(checkpoints["sequence_classification"])
    with client(checkpoints["sequence_classification"]) as c:
        tokens = c.post("/tokenize", json={"inputs": text}).json()
        plain = c.post("/tokenize", json={"inputs": [text, "a dog"], "add_special_tokens": False}).json()
        empty = c.post("/tokenize", json={"inputs": []})  # was a 500 (found by tests/test_serve_props.py)
        info = c.get("/info").json()
        health = c.get("/health")
        c.service.draining = True
        down = c.get("/health")
    assert [t["id"] for t in tokens[0]] == tokenizer.encode(text)
    assert tokens[0][0] == {"id": tokenizer.encode(text)[0], "text": "[CLS]", "special": True, "start": None,
                            "stop": None}
    for t in tokens[0][1:-1]:
        assert not t["special"] and t["text"] == text[t["start"]:t["stop"]]
    assert [t["text"] for t in plain[0]] == ["John", "lives", "in", "Paris", "."] and len(plain) == 2
    assert empty.status_code == 422 and empty.json()["detail"] == "inputs is an empty list"
    assert info["model_type"] == {"classifier": {"id2label": {"0": "negative", "1": "positive"},
                                                 "label2id": {"negative": 0, "positive": 1}}}
    assert (info["model_id"], info["max_input_length"], info["max_client_batch_size"], info["model_dtype"]) == \
        ("sequence_classification", 512, 64, "float32")
    assert health.status_code == 200 and health.content == b""
    assert down.status_code == 503 and down.json()["error_type"] == "unhealthy"
    with client(checkpoints["base"]) as c:
        assert c.get("/info").json()["model_type"] == {"embedding": {"pooling": "mean"}}
        assert c.post("/predict", json={"inputs": "a"}).status_code == 404  # not a classifier


# ---------------------------------------------------------------------------------------------- OpenAI, in process


def test_openai_embeddings_body_on_our_route(checkpoints, reference):
    want = [r["embedding"] for r in reference["embed"](TEXTS, normalize=True)]
    tokenizer = Tokenizer.from_pretrained(checkpoints["base"])
    with client(checkpoints["base"]) as c:
        r = c.post("/v1/embeddings", json={"input": TEXTS, "model": "anything"})
        one = c.post("/embeddings", json={"input": TEXTS[0], "model": "x", "encoding_format": "base64"})
        cut = c.post("/v1/embeddings", json={"input": TEXTS[0], "model": "x", "dimensions": 4})
        ours = c.post("/v1/embeddings", json={"inputs": TEXTS[0]})  # our own dialect still works
        bad = c.post("/v1/embeddings", json={"input": "", "model": "x"})
        typo = c.post("/v1/embeddings", json={"input": "a", "modle": "x"})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "base"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and {d["object"] for d in body["data"]} == {"embedding"}
    assert [d["embedding"] for d in body["data"]] == [approx(w) for w in want]
    tokens = sum(len(tokenizer.encode(t)) for t in TEXTS)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    decoded = np.frombuffer(base64.b64decode(one.json()["data"][0]["embedding"]), dtype="<f4")
    assert list(decoded) == approx(want[0])
    assert len(cut.json()["data"][0]["embedding"]) == 4 and unit(cut.json()["data"][0]["embedding"]) == approx(1)
    assert ours.status_code == 200 and "results" in ours.json()
    assert bad.status_code == 422 and "input[0] is empty" in bad.json()["error"]["message"]
    assert typo.status_code == 422 and typo.json()["detail"] == "unknown field 'modle'"


# ---------------------------------------------------------------------------------------------- real clients


def test_the_openai_client(checkpoints, reference):
    openai = pytest.importorskip("openai", reason="the openai client is in the test extra")
    want = [r["embedding"] for r in reference["embed"](TEXTS, normalize=True)]
    with running_server(checkpoints["base"], api_key=KEY) as (_, url):
        api = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=30)
        default = api.embeddings.create(model="squeezebert", input=TEXTS)  # the client asks for base64
        floats = api.embeddings.create(model="squeezebert", input=TEXTS[0], encoding_format="float")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).embeddings.create(
                model="squeezebert", input="a")
        with pytest.raises(openai.UnprocessableEntityError, match="input\\[0\\] is empty"):
            api.embeddings.create(model="squeezebert", input=[""])
    assert [list(d.embedding) for d in default.data] == [approx(w) for w in want]
    assert list(floats.data[0].embedding) == approx(want[0])
    assert default.usage.prompt_tokens > len(TEXTS) * 2 and default.model == "base"


def test_the_huggingface_hub_inference_client(checkpoints, reference):
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is in the test extra")
    want = reference["embed"](TEXTS[:1], normalize=True)[0]["embedding"]
    with running_server(checkpoints["base"], api_key=KEY) as (_, url):
        vectors = hub.InferenceClient(base_url=url, api_key=KEY).feature_extraction(TEXTS[0])
        with pytest.raises(hub.errors.HfHubHTTPError, match="inputs\\[0\\] is empty"):
            hub.InferenceClient(base_url=url, api_key=KEY).feature_extraction(" ")
    assert vectors.shape == (1, 32) and list(vectors[0]) == approx(want)

    path = checkpoints["sequence_classification"]
    expected = reference["classify"](["the movie was good"])[0]["scores"]
    want_embed = pipeline("feature-extraction", path).run(["the movie was good"], normalize=True)[0]["embedding"]
    with running_server(path, api_key=KEY) as (_, url):
        labels = hub.InferenceClient(base_url=url, api_key=KEY).text_classification("the movie was good")
        # a classifier's default route predicts; its embeddings are at /embed, as on TEI
        vectors = hub.InferenceClient(base_url=url + "/embed", api_key=KEY).feature_extraction("the movie was good")
        with pytest.raises(hub.errors.HfHubHTTPError, match="401"):
            hub.InferenceClient(base_url=url, api_key="wrong").text_classification("a")
    assert {e.label: e.score for e in labels} == approx(expected)
    assert [e.score for e in labels] == sorted((e.score for e in labels), reverse=True)
    assert list(vectors[0]) == approx(want_embed)
