"""The HTTP server, in process (FastAPI's TestClient) on tiny random checkpoints, plus one real-socket smoke test.

Overload, timeout and shutdown are driven deterministically: a gate stops the worker inside its model call, so the
test knows exactly which rows are running, which are queued, and when the queue is full. No test depends on timing.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
from fastapi.testclient import TestClient  # noqa: E402

from squeezebert import preset  # noqa: E402
from squeezebert.checkpoint import save_model  # noqa: E402
from squeezebert.model import HEADS  # noqa: E402
from squeezebert.pipelines import pipeline  # noqa: E402
from squeezebert.serve import schemas  # noqa: E402
from squeezebert.serve.app import create_app  # noqa: E402
from squeezebert.serve.batcher import Batcher  # noqa: E402
from squeezebert.serve.config import ServeConfig  # noqa: E402
from squeezebert.serve.server import make_server  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402

WORDS = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a cat dog sat on mat paris is in france john lives where does "
         "capital of movie was good bad delight from start to finish , . ? ##s ##ing").split()
LABELS = {"sequence_classification": {0: "negative", 1: "positive"},
          "token_classification": {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}}
TASK_OF = {"sequence_classification": "text-classification", "token_classification": "token-classification",
           "question_answering": "question-answering", "base": "feature-extraction"}
QA = {"question": "where does john live?", "context": "john lives in paris, the capital of france."}


def tiny_checkpoint(directory: Path, head: str) -> Path:
    """A tiny random model with the ``head``, saved with a small WordPiece vocabulary."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = Tokenizer.from_vocab(directory / "vocab.txt")
    torch.manual_seed(0)
    config = preset("tiny", vocab_size=len(WORDS), **({"id2label": LABELS[head]} if head in LABELS else {}))
    save_model(HEADS[head](config), directory, tokenizer=tokenizer)
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    return {head: tiny_checkpoint(root / head, head) for head in TASK_OF}


def config(path: Path, **overrides) -> ServeConfig:
    # one thread: the test machine is shared, and two OpenMP threads fighting other jobs are slower than one
    return ServeConfig(model=str(path), threads=1, max_wait_ms=0, **overrides)


@contextmanager
def client(path: Path, **overrides):
    app = create_app(config(path, **overrides))
    with TestClient(app) as c:
        c.service = app.state.service
        yield c


def wait_until(condition, what: str, limit_s: float = 30.0) -> None:
    """Poll for a state the test drives deterministically; the limit only keeps a broken server from hanging."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


class Gate:
    """Replaces a pipeline's ``run_batch``: records each batch's size and blocks inside it until opened."""

    def __init__(self, pipe):
        self.pipe, self.inner = pipe, pipe.run_batch
        self.entered, self.opened, self.sizes = threading.Event(), threading.Event(), []
        pipe.run_batch = self

    def __call__(self, features):
        self.sizes.append(len(features))
        self.entered.set()
        assert self.opened.wait(60), "the test never opened the gate"
        return self.inner(features)

    def open(self) -> None:  # stays in place (recording sizes): each test's app, and its pipelines, are its own
        self.opened.set()


def post_in_thread(c: TestClient, path: str, body: dict) -> tuple[threading.Thread, dict]:
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(response=c.post(path, json=body)), daemon=True)
    thread.start()
    return thread, box


def approx(x):
    return pytest.approx(x, abs=1e-5)


# ---------------------------------------------------------------------------------------------- endpoints


def test_classify_one_text_a_list_and_pairs_match_the_pipeline(checkpoints):
    path = checkpoints["sequence_classification"]
    direct = pipeline("text-classification", path).run  # our results, as the server gives them
    inputs = ["the movie was good", {"text": "the cat sat", "text_pair": "a dog sat"}, "bad"]
    with client(path) as c:
        one = c.post("/v1/classify", json={"inputs": "the movie was good"})
        many = c.post("/v1/classify", json={"inputs": inputs})
    assert one.status_code == 200 and many.status_code == 200
    schemas.ClassifyResponse.model_validate(one.json())
    body = schemas.ClassifyResponse.model_validate(many.json())
    assert len(body.results) == 3
    expected = direct(["the movie was good", ("the cat sat", "a dog sat"), "bad"])
    for got, want in zip(many.json()["results"], expected):
        assert got["label"] == want["label"] and set(got["scores"]) == {"negative", "positive"}
        assert got["scores"] == approx(want["scores"]) and sum(got["scores"].values()) == approx(1.0)
        assert got["truncated"] is False
    assert one.json()["results"][0] == many.json()["results"][0] | {"scores": approx(expected[0]["scores"]),
                                                                     "score": approx(expected[0]["score"])}


def test_entities_have_character_offsets_into_the_text(checkpoints):
    path = checkpoints["token_classification"]
    text = "John lives in Paris, the capital of France."
    with client(path) as c:
        r = c.post("/v1/entities", json={"inputs": [text, "the cat sat"]})
    assert r.status_code == 200, r.text
    body = schemas.TokensResponse.model_validate(r.json())
    want = pipeline("token-classification", path).run(text)
    got = r.json()["results"][0]
    assert [(e["entity"], e["start"], e["end"]) for e in got["entities"]] == \
        [(e["entity"], e["start"], e["end"]) for e in want["entities"]]
    assert body.results[0].entities, "a random 5-label model tags at least one of 8 words"
    for entity in got["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["word"]
        assert entity["entity"] in {"PER", "LOC"}


def test_answer_is_a_span_of_the_context(checkpoints):
    path = checkpoints["question_answering"]
    with client(path) as c:
        r = c.post("/v1/answer", json={"inputs": QA})
        many = c.post("/v1/answer", json={"inputs": [QA, QA]})
    assert r.status_code == 200 and many.status_code == 200
    schemas.AnswerResponse.model_validate(r.json())
    got, want = r.json()["results"][0], pipeline("question-answering", path).run(QA)
    assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
    assert got["answer"] and QA["context"][got["start"]:got["end"]] == got["answer"]
    assert 0 < got["score"] <= 1 and got["truncated"] is False
    assert [x["answer"] for x in many.json()["results"]] == [got["answer"]] * 2


def test_embeddings_pooling_and_normalisation(checkpoints):
    path = checkpoints["base"]
    direct = pipeline("feature-extraction", path).run
    with client(path) as c:
        mean = c.post("/v1/embeddings", json={"inputs": ["the cat sat", "a dog"]})
        cls = c.post("/v1/embeddings", json={"inputs": "the cat sat", "pooling": "cls"})
        unit = c.post("/v1/embeddings", json={"inputs": "the cat sat", "normalize": True})
        routes = c.get("/openapi.json").json()["paths"]
    for r in (mean, cls, unit):
        assert r.status_code == 200, r.text
        schemas.EmbedResponse.model_validate(r.json())
    vector = mean.json()["results"][0]["embedding"]
    assert len(vector) == 32 and vector == approx(direct("the cat sat")["embedding"])
    assert cls.json()["results"][0]["embedding"] == approx(direct("the cat sat", pooling="cls")["embedding"])
    assert cls.json()["results"][0]["embedding"] != approx(vector)
    assert sum(x * x for x in unit.json()["results"][0]["embedding"]) == approx(1.0)
    assert "/v1/embeddings" in routes and "/v1/classify" not in routes  # a bare encoder only embeds


def test_a_task_model_also_embeds_and_documents_only_its_endpoints(checkpoints):
    with client(checkpoints["sequence_classification"]) as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert c.get("/docs").status_code == 200
        info = c.get("/v1/info").json()
        r = c.post("/v1/embeddings", json={"inputs": "the cat"})
        wrong = c.post("/v1/answer", json={"inputs": QA})
    assert {"/v1/classify", "/v1/embeddings", "/healthz", "/readyz", "/metrics"} <= set(paths)
    assert "/v1/answer" not in paths and "/v1/entities" not in paths
    assert info["task"] == "text-classification" and info["labels"] == ["negative", "positive"]
    assert info["endpoints"] == {"text-classification": "/v1/classify", "feature-extraction": "/v1/embeddings"}
    assert r.status_code == 200 and len(r.json()["results"][0]["embedding"]) == 32
    assert wrong.status_code == 404 and "/v1/classify" in wrong.json()["detail"]


def test_health_readiness_and_metrics(checkpoints):
    with client(checkpoints["sequence_classification"]) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        c.post("/v1/classify", json={"inputs": ["the cat", "a dog sat on the mat"]})
        c.post("/v1/classify", json={"inputs": ""})
        text = c.get("/metrics").text
    assert 'squeezebert_requests_total{endpoint="/v1/classify",status="200"} 1.0' in text
    assert 'squeezebert_requests_total{endpoint="/v1/classify",status="422"} 1.0' in text
    assert 'squeezebert_rejected_total{reason="bad_input"} 1.0' in text
    assert 'squeezebert_request_seconds_count{endpoint="/v1/classify"} 2.0' in text
    assert "squeezebert_queue_depth 0.0" in text
    rows = float(text.split("squeezebert_batch_rows_sum ")[1].split()[0])
    assert rows == 4.0  # one warm-up row per pipeline (classify, embeddings) + the request's two


def test_playground_page_is_self_contained(checkpoints):
    with client(checkpoints["sequence_classification"]) as c:
        r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script>" in page and 'id="run"' in page and "/v1/info" in page
    assert "src=" not in page and "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert "innerHTML" not in page  # user text is rendered with textContent only


# ---------------------------------------------------------------------------------------------- bad input


JSON = {"content-type": "application/json"}
BAD_BODIES = [  # (raw body, headers, status, words the message must contain)
    (b'{"inputs": ', JSON, 400, "malformed JSON"),
    (b'{"inputs": "caf\xe9"}', JSON, 400, "not valid UTF-8: byte 15"),
    (b'{"inputs": "a"}', {"content-type": "text/plain"}, 415, "application/json"),
    (b'{"inputs": "a"}', {}, 415, "application/json"),
    (b'{"inputs": "a"}', {"content-type": "application/json; charset=latin-1"}, 415, "UTF-8"),
    (b"", JSON, 422, "body is empty"),
    (b"[1, 2]", JSON, 422, "valid dictionary"),
]
BAD_JSON = [  # (JSON body, status, words the message must contain)
    ({"inputs": ""}, 422, "inputs[0] is empty"),
    ({"inputs": "   "}, 422, "inputs[0] is empty"),
    ({"inputs": ["ok", ""]}, 422, "inputs[1] is empty"),
    ({"inputs": 3}, 422, "inputs[0] must be a string, got int"),
    ({"inputs": None}, 422, "inputs[0] must be a string, got NoneType"),
    ({"inputs": [["a", "b"]]}, 422, "inputs[0] must be a string, got list"),
    ({"inputs": {"txt": "a"}}, 422, "expected keys 'text'"),
    ({"inputs": {"text": "a", "text_pair": ""}}, 422, "inputs[0].text_pair is empty"),
    ({"inputs": "\ud800"}, 422, "lone surrogate"),
    ({"inputs": []}, 422, "empty list"),
    ({"text": "a"}, 422, "inputs: Field required"),
    ({"inputs": "a", "extra": 1}, 422, "unknown field 'extra'"),
    ({"inputs": "a", "truncation": "no"}, 422, "truncation: Input should be a valid boolean"),
    ({"inputs": ["a"] * 4}, 413, "4 inputs in one request; the limit is 3"),
    ({"inputs": "the cat " * 30, "truncation": False}, 422, "240 characters, more than max_chars=100"),
    ({"inputs": "the cat sat " * 6, "truncation": False}, 422, "longer than max_length=16 tokens"),
]


@pytest.fixture(scope="module")
def strict(checkpoints):
    with client(checkpoints["sequence_classification"], max_texts=3, max_chars=100, max_length=16,
                max_body_bytes=2048) as c:
        yield c


@pytest.mark.parametrize("raw, headers, status, words", BAD_BODIES)
def test_bad_bodies_are_4xx_with_a_clear_message(strict, raw, headers, status, words):
    r = strict.post("/v1/classify", content=raw, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


@pytest.mark.parametrize("body, status, words", BAD_JSON)
def test_bad_inputs_are_4xx_with_a_clear_message(strict, body, status, words):
    r = strict.post("/v1/classify", content=json.dumps(body), headers=JSON)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_other_endpoints_check_their_inputs(checkpoints):
    with client(checkpoints["question_answering"]) as c:
        no_context = c.post("/v1/answer", json={"inputs": {"question": "where?"}})
        text_only = c.post("/v1/answer", json={"inputs": "where?"})
        pooling = c.post("/v1/embeddings", json={"inputs": "a", "pooling": "max"})
        get = c.get("/v1/answer")
    assert no_context.status_code == 422 and "'question' and 'context'" in no_context.json()["detail"]
    assert text_only.status_code == 422 and "expected {'question'" in text_only.json()["detail"]
    assert pooling.status_code == 422 and "pooling" in pooling.json()["detail"]
    assert get.status_code == 405 and "GET is not allowed" in get.json()["detail"]


def test_body_size_limit(strict):
    big = json.dumps({"inputs": "a" * 3000})
    r = strict.post("/v1/classify", content=big, headers=JSON)
    assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the running total trips the limit
        for _ in range(10):
            yield b" " * 500
    r = strict.post("/v1/classify", content=chunks(), headers=JSON)
    assert r.status_code == 413 and "larger than 2048 bytes" in r.json()["detail"]
    assert strict.post("/v1/classify", json={"inputs": "still fine"}).status_code == 200


def test_long_texts_are_cut_and_flagged(strict):
    r = strict.post("/v1/classify", json={"inputs": ["the cat " * 30, "the cat sat " * 6, "a dog"]})
    assert r.status_code == 200, r.text
    assert [x["truncated"] for x in r.json()["results"]] == [True, True, False]


def test_nothing_bad_reaches_a_500(strict):
    text = strict.get("/metrics").text
    assert 'status="500"' not in text and "squeezebert_requests_total" in text


# ---------------------------------------------------------------------------------------------- overload


def test_full_queue_refuses_at_once_and_accepted_requests_finish(checkpoints):
    path = checkpoints["sequence_classification"]
    with client(path, max_queue=2, max_texts=2) as c:
        gate = Gate(c.service.pipelines["text-classification"])
        try:
            first, first_box = post_in_thread(c, "/v1/classify", {"inputs": "the movie was good"})
            assert gate.entered.wait(30)  # the worker is inside the model call: its row left the queue
            second, second_box = post_in_thread(c, "/v1/classify", {"inputs": ["the cat", "a dog sat"]})
            wait_until(lambda: c.service.batcher.depth == 2, "two rows queued")
            refused = c.post("/v1/classify", json={"inputs": "one more"})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert "queue full (2 of 2 rows waiting)" in refused.json()["detail"]
            assert c.get("/healthz").status_code == 200  # the server still answers while saturated
        finally:
            gate.open()
        first.join(60), second.join(60)
        assert first_box["response"].status_code == 200 and second_box["response"].status_code == 200
        assert gate.sizes == [1, 2]  # the two queued rows ran together: dynamic batching
        expected = pipeline("text-classification", path).run(["the movie was good", "the cat", "a dog sat"])
        got = first_box["response"].json()["results"] + second_box["response"].json()["results"]
        assert [g["label"] for g in got] == [e["label"] for e in expected]
        assert [g["score"] for g in got] == approx([e["score"] for e in expected])
        metrics = c.get("/metrics").text
        assert 'squeezebert_rejected_total{reason="queue_full"} 1.0' in metrics
        assert 'squeezebert_requests_total{endpoint="/v1/classify",status="429"} 1.0' in metrics


def test_request_timeout_is_a_504_and_the_server_recovers(checkpoints):
    with client(checkpoints["sequence_classification"], timeout_s=0.2) as c:
        gate = Gate(c.service.pipelines["text-classification"])
        try:
            r = c.post("/v1/classify", json={"inputs": "the cat"})  # blocked in the model until we open the gate
        finally:
            gate.open()
        assert r.status_code == 504 and "timeout of 0.2 s" in r.json()["detail"]
        assert c.post("/v1/classify", json={"inputs": "the cat"}).status_code == 200


def test_draining_refuses_new_requests_and_finishes_accepted_ones(checkpoints):
    with client(checkpoints["sequence_classification"]) as c:
        gate = Gate(c.service.pipelines["text-classification"])
        try:
            running, running_box = post_in_thread(c, "/v1/classify", {"inputs": "the cat"})
            assert gate.entered.wait(30)
            queued, queued_box = post_in_thread(c, "/v1/classify", {"inputs": "a dog"})
            wait_until(lambda: c.service.batcher.depth == 1, "one row queued")
            c.service.draining = True  # what DrainingServer.handle_exit does on SIGTERM
            late = c.post("/v1/classify", json={"inputs": "too late"})
            assert late.status_code == 503 and "shutting down" in late.json()["detail"]
            assert c.get("/readyz").status_code == 503
        finally:
            gate.open()
        running.join(60), queued.join(60)
        assert running_box["response"].status_code == 200 and queued_box["response"].status_code == 200


def test_batcher_close_finishes_everything_accepted(checkpoints):
    import asyncio

    pipe = pipeline("text-classification", checkpoints["sequence_classification"])
    features = pipe.prepare([(t, None) for t in ["the cat", "a dog", "the movie was good", "bad"]])

    async def main():
        batcher = Batcher(max_batch_tokens=64, max_batch_size=2, max_wait_s=10.0, max_queue=8)
        batcher.start()
        futures = batcher.submit(pipe, features)
        await batcher.close()  # does not wait the 10 s max_wait: closing flushes at once
        assert all(f.done() for f in futures)
        with pytest.raises(Exception, match="shutting down"):
            batcher.submit(pipe, features[:1])
        return [f.result() for f in futures]

    outputs = asyncio.run(main())
    flat = [x for o in outputs for x in o.tolist()]
    assert flat == approx([x for o in pipe.forward(features) for x in o.tolist()])


# ---------------------------------------------------------------------------------------------- real socket


@contextmanager
def running_server(path: Path, **overrides):
    """uvicorn on 127.0.0.1 at a free port, in a thread; drained (gracefully shut down) on exit."""
    server = make_server(config(path, port=0, **overrides), log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "the server started")
    assert server.started, "the server failed to start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.drain()
        thread.join(60)
        assert not thread.is_alive(), "the server did not shut down"


def test_real_socket_smoke_and_graceful_shutdown(checkpoints):
    with running_server(checkpoints["token_classification"]) as (server, url):
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/readyz").status_code == 200
            r = http.post("/v1/entities", json={"inputs": "John lives in Paris."})
            assert r.status_code == 200 and "entities" in r.json()["results"][0]
            assert http.post("/v1/entities", content=b"{", headers=JSON).status_code == 400
            gate = Gate(server.service.pipelines["token-classification"])
            box: dict = {}
            thread = threading.Thread(target=lambda: box.update(
                r=httpx.post(f"{url}/v1/entities", json={"inputs": "the cat"}, timeout=30)), daemon=True)
            thread.start()
            assert gate.entered.wait(30)
            server.drain()  # shutdown begins while a request is inside the model
            assert http.get("/readyz").status_code == 503
            gate.open()
            thread.join(60)
    assert box["r"].status_code == 200 and box["r"].json()["results"][0]["truncated"] is False


# ---------------------------------------------------------------------------------------------- command line


def test_serve_command_builds_the_config(checkpoints, monkeypatch):
    from squeezebert import cli
    from squeezebert.serve import server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda config, log_level: seen.update(config=config))
    monkeypatch.setenv("SQUEEZEBERT_API_KEY", "from-the-environment")
    code = cli.main(["serve", str(checkpoints["base"]), "--port", "9001", "--max-batch-size", "1",
                     "--max-queue", "8", "--max-texts", "4", "--timeout", "2.5", "--precision", "bf16",
                     "--max-requests", "8", "--max-connections", "16", "--idle-timeout", "2", "--read-timeout", "3",
                     "--cors-origin", "https://a.example", "--cors-origin", "https://b.example",
                     "--allowed-host", "api.example.com"])
    assert code == 0
    c = seen["config"]
    assert (c.port, c.max_batch_size, c.max_queue, c.max_texts, c.timeout_s, c.precision) == \
        (9001, 1, 8, 4, 2.5, "bf16")
    assert (c.max_requests, c.max_connections, c.idle_timeout_s, c.read_timeout_s) == (8, 16, 2.0, 3.0)
    assert c.api_key == "from-the-environment"  # the flag's default: the key stays out of the process list
    assert c.cors_origins == ("https://a.example", "https://b.example") and c.allowed_hosts == ("api.example.com",)
    assert cli.main(["serve", str(checkpoints["base"]), "--api-key", "on-the-line"]) == 0
    assert seen["config"].api_key == "on-the-line" and seen["config"].max_requests == 512
    assert cli.main(["serve", str(checkpoints["base"]), "--max-requests", "0"]) == 0
    assert seen["config"].max_requests is None
    assert cli.main(["serve", str(checkpoints["base"]), "--max-texts", "9", "--max-queue", "8"]) == 2
    assert cli.main(["serve", str(checkpoints["base"]), "--api-key", " "]) == 2
    monkeypatch.setenv("SQUEEZEBERT_API_KEY", "")  # set but empty: no key
    assert cli.main(["serve", str(checkpoints["base"])]) == 0 and seen["config"].api_key is None


def test_config_rejects_bad_limits():
    with pytest.raises(ValueError, match="precision"):
        ServeConfig(model="m", precision="fp8")
    with pytest.raises(ValueError, match="max_queue must be positive"):
        ServeConfig(model="m", max_queue=0)
    with pytest.raises(ValueError, match="max_requests must be positive"):
        ServeConfig(model="m", max_requests=0)
    with pytest.raises(ValueError, match=r"max_connections \(512\) must exceed max_requests \(512\)"):
        ServeConfig(model="m", max_connections=512)
    with pytest.raises(ValueError, match="idle_timeout_s must be positive"):
        ServeConfig(model="m", idle_timeout_s=0)
    with pytest.raises(ValueError, match="allowed host"):
        ServeConfig(model="m", allowed_hosts=("api.*.com",))
    with pytest.raises(ValueError, match="must not exceed max_queue"):
        ServeConfig(model="m", max_texts=10, max_queue=5)
