"""The server under hostile or unlucky clients: idle and slow connections, overload, disconnects, access control,
and models that produce NaN. Real sockets on 127.0.0.1 where the behaviour lives in the connection (uvicorn +
``serve/protocol.py``), FastAPI's TestClient where it lives in the app.

Timing: each timeout under test is short (0.3-0.6 s) and the assertions allow generous slack (seconds), so a busy
machine makes these tests slower, not flaky.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from contextlib import ExitStack

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="the server tests need httpx")

from fastapi.testclient import TestClient  # noqa: E402
from test_serve import Gate, checkpoints, client, config, post_in_thread, running_server  # noqa: E402,F401

from squeezebert.checkpoint import load_model, save_model  # noqa: E402
from squeezebert.serve import server as server_module  # noqa: E402
from squeezebert.serve.app import create_app  # noqa: E402
from squeezebert.serve.config import ServeConfig  # noqa: E402

KEY = "s3cret-key"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(url: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def metric(url: str, line_start: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start)]
    return values[0] if values else 0.0


# ---------------------------------------------------------------------------------------------- connections


def test_idle_connections_do_not_lock_out_requests(checkpoints):
    """600 connections that send nothing: uvicorn's limit_concurrency (512, our old default) answered 503 to every
    request while they stayed open, /healthz included."""
    with running_server(checkpoints["sequence_classification"], idle_timeout_s=60) as (_, url), ExitStack() as stack:
        idle = [stack.enter_context(connect(url)) for _ in range(600)]
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            r = http.post("/v1/classify", json={"inputs": "the movie was good"})
            assert r.status_code == 200, r.text
        assert metric(url, "squeezebert_open_connections") >= len(idle)


def test_the_longest_idle_connection_makes_room_at_the_limit(checkpoints):
    with running_server(checkpoints["sequence_classification"], max_requests=2, max_connections=4,
                        idle_timeout_s=60) as (_, url), ExitStack() as stack:
        oldest = stack.enter_context(connect(url))
        time.sleep(0.05)
        for _ in range(3):
            stack.enter_context(connect(url))
        r = httpx.get(url + "/healthz", timeout=30)  # a fifth connection
        assert r.status_code == 200
        _, took = read_until_closed(oldest, limit_s=5)
        assert took < 5, "the oldest idle connection was not closed to make room"
        assert metric(url, 'squeezebert_connections_closed_total{reason="evicted"}') >= 1


def test_new_and_kept_alive_connections_close_after_the_idle_timeout(checkpoints):
    with running_server(checkpoints["sequence_classification"], idle_timeout_s=0.3) as (_, url):
        fresh = connect(url)  # sends nothing at all: uvicorn alone never closed these
        data, took = read_until_closed(fresh)
        assert data == b"" and 0.2 < took < 5
        used = connect(url)
        used.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = read_until_closed(used)
        assert data.startswith(b"HTTP/1.1 200") and took < 5  # answered, then closed once idle
        assert metric(url, 'squeezebert_connections_closed_total{reason="idle"}') >= 2


def test_a_request_head_sent_byte_by_byte_gets_a_408_in_bounded_time(checkpoints):
    """A slowloris keeps a per-read timer alive for ever; the head has one deadline from its first byte."""
    with running_server(checkpoints["sequence_classification"], read_timeout_s=0.6) as (_, url):
        sock = connect(url)
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):  # one byte every 0.1 s, for up to 4 s
                sock.sendall(b"X")
                time.sleep(0.1)
        except OSError:
            pass  # closed by the server, as it should be
        data, _ = read_until_closed(sock)
        took = time.monotonic() - start
        status, body = status_and_json(data)
        assert status == 408 and "did not arrive within 0.6 s" in body["detail"]
        assert took < 3.5


def test_a_slow_body_gets_a_json_408(checkpoints):
    with running_server(checkpoints["sequence_classification"], read_timeout_s=0.5) as (_, url):
        sock = connect(url)
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"inputs\": ")
        data, took = read_until_closed(sock)
        status, body = status_and_json(data)
        assert status == 408 and "body did not arrive within 0.5 s (11 bytes received)" in body["detail"]
        assert took < 5
        assert metric(url, 'squeezebert_rejected_total{reason="read_timeout"}') == 1
        assert metric(url, 'squeezebert_requests_total{endpoint="/v1/classify",status="408"}') == 1


def test_malformed_http_is_a_json_400(checkpoints):
    with running_server(checkpoints["sequence_classification"]) as (_, url):
        sock = connect(url)
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, body = status_and_json(read_until_closed(sock)[0])
        assert status == 400 and "invalid HTTP request" in body["detail"]


def test_a_client_that_disconnects_is_counted_as_499_not_500(checkpoints):
    with running_server(checkpoints["sequence_classification"], read_timeout_s=30) as (_, url):
        sock = connect(url)
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"in")
        time.sleep(0.2)
        sock.close()
        deadline = time.monotonic() + 10
        while metric(url, 'squeezebert_requests_total{endpoint="/v1/classify",status="499"}') < 1:
            assert time.monotonic() < deadline, "the disconnect was never counted"
            time.sleep(0.05)
        assert metric(url, 'squeezebert_requests_total{endpoint="/v1/classify",status="500"}') == 0


# ---------------------------------------------------------------------------------------------- overload


def test_requests_in_progress_beyond_the_limit_get_a_json_503_and_probes_still_answer(checkpoints):
    with client(checkpoints["sequence_classification"], max_requests=1) as c:
        gate = Gate(c.service.pipelines["text-classification"])
        try:
            first, box = post_in_thread(c, "/v1/classify", {"inputs": "the movie was good"})
            assert gate.entered.wait(30)
            refused = c.post("/v1/classify", json={"inputs": "one more"})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "1 requests in progress" in refused.json()["detail"]
            for probe in ("/healthz", "/readyz", "/health", "/metrics"):
                assert c.get(probe).status_code == 200, probe
        finally:
            gate.open()
        first.join(60)
        assert box["response"].status_code == 200
        metrics = c.get("/metrics").text
    assert 'squeezebert_rejected_total{reason="overloaded"} 1.0' in metrics
    assert 'squeezebert_requests_total{endpoint="/v1/classify",status="503"} 1.0' in metrics


# ---------------------------------------------------------------------------------------------- access control


def test_api_key_guards_every_route_but_probes_and_pages(checkpoints):
    with client(checkpoints["sequence_classification"], api_key=KEY) as c:
        missing = c.post("/v1/classify", json={"inputs": "a"})
        wrong = c.post("/v1/classify", json={"inputs": "a"}, headers={"Authorization": "Bearer nope"})
        basic = c.post("/v1/classify", json={"inputs": "a"}, headers={"Authorization": f"Basic {KEY}"})
        right = c.post("/v1/classify", json={"inputs": "a"}, headers={"Authorization": f"Bearer {KEY}"})
        lower = c.get("/v1/info", headers={"authorization": f"bearer {KEY}"})
        guarded = {path: c.request(method, path, json={"inputs": "a"}).status_code
                   for method, path in [("GET", "/v1/info"), ("POST", "/embed"), ("POST", "/predict"),
                                        ("POST", "/"), ("POST", "/v1/embeddings"), ("POST", "/tokenize"),
                                        ("GET", "/info"), ("GET", "/no/such/path")]}
        open_ = {path: c.get(path).status_code for path in ("/healthz", "/readyz", "/health", "/metrics", "/",
                                                             "/docs", "/openapi.json")}
        metrics = c.get("/metrics").text
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    assert wrong.status_code == 401 and wrong.json()["detail"] == "the API key is not valid"
    assert basic.status_code == 401
    assert right.status_code == 200 and lower.status_code == 200
    assert set(guarded.values()) == {401}, guarded
    assert set(open_.values()) == {200}, open_
    assert 'squeezebert_rejected_total{reason="unauthorized"}' in metrics


def test_no_cors_by_default_and_listed_origins_only(checkpoints):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with client(checkpoints["sequence_classification"]) as c:
        r = c.post("/v1/classify", json={"inputs": "a"}, headers={"Origin": "https://app.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    with client(checkpoints["sequence_classification"], cors_origins=("https://app.example",), api_key=KEY) as c:
        ok = c.options("/v1/classify", headers=preflight)  # a preflight carries no key: it must not be a 401
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        bad = c.options("/v1/classify", headers={**preflight, "Origin": "https://evil.example"})
        assert bad.status_code == 400 and "origin" in bad.json()["detail"].lower()  # JSON, not starlette's text
        r = c.post("/v1/classify", json={"inputs": "a"},
                   headers={"Origin": "https://app.example", "Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"


def test_allowed_hosts(checkpoints):
    with client(checkpoints["sequence_classification"], allowed_hosts=("api.example.com", "*.internal")) as c:
        evil = c.get("/healthz", headers={"Host": "evil.example.com"})
        assert evil.status_code == 400 and evil.json() == {"detail": "Invalid host header"}
        assert c.get("/healthz", headers={"Host": "api.example.com"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "gpu1.internal:8000"}).status_code == 200


def test_a_warning_when_listening_beyond_loopback_without_a_key(monkeypatch, caplog):
    class Stub:
        def run(self) -> None:
            pass

    monkeypatch.setattr(server_module, "make_server", lambda config, log_level: Stub())
    with caplog.at_level(logging.WARNING, logger="squeezebert.serve.server"):
        server_module.serve(ServeConfig(model="m", host="127.0.0.1"))
        server_module.serve(ServeConfig(model="m", host="0.0.0.0", api_key=KEY))
        assert not caplog.records
        server_module.serve(ServeConfig(model="m", host="0.0.0.0"))
    assert len(caplog.records) == 1 and "without an API key" in caplog.records[0].getMessage()
    assert server_module.is_loopback("::1") and server_module.is_loopback("localhost")
    assert not server_module.is_loopback("::") and not server_module.is_loopback("example.com")


# ---------------------------------------------------------------------------------------------- broken models


def test_a_model_with_nan_weights_is_refused_at_load(checkpoints, tmp_path, capsys):
    from squeezebert import cli

    model = load_model(checkpoints["sequence_classification"])
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    broken = tmp_path / "broken"
    save_model(model, broken, copy_tokenizer_from=checkpoints["sequence_classification"])
    with pytest.raises(ValueError, match="NaN or infinite outputs"):
        create_app(ServeConfig(model=str(broken), threads=1))
    assert cli.main(["serve", str(broken), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("squeezebert serve: error:") and "NaN or infinite outputs" in err
    assert len(err.splitlines()) == 1


def test_nan_at_request_time_and_crashes_are_json_500s(checkpoints):
    app = create_app(config(checkpoints["sequence_classification"]))
    with TestClient(app, raise_server_exceptions=False) as c:
        pipe = app.state.service.pipelines["text-classification"]
        real = pipe.run_batch
        pipe.run_batch = lambda features: [np.full_like(o, np.nan) for o in real(features)]
        nan = c.post("/v1/classify", json={"inputs": "the cat"})
        pipe.run_batch = real
        pipe.collect = lambda *args, **kwargs: 1 / 0  # a bug in the server
        crash = c.post("/v1/classify", json={"inputs": "the cat"})
        metrics = c.get("/metrics").text
    assert nan.status_code == 500 and "NaN or infinity" in nan.json()["detail"]
    assert crash.status_code == 500 and "ZeroDivisionError" in crash.json()["detail"]
    assert 'squeezebert_rejected_total{reason="non_finite"} 1.0' in metrics
