"""Prometheus metrics of the server, in a registry of its own (several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("squeezebert_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("squeezebert_request_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("squeezebert_rejected", "requests refused before inference, by reason",
                                ["reason"], registry=r)
        self.queue_depth = Gauge("squeezebert_queue_depth", "model rows waiting to be batched", registry=r)
        self.batch_rows = Histogram("squeezebert_batch_rows", "rows per model call", buckets=ROW_BUCKETS,
                                    registry=r)
        self.batch_tokens = Histogram("squeezebert_batch_tokens", "padded tokens per model call",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.inference = Histogram("squeezebert_inference_seconds", "time of one batched model call",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.connections = Gauge("squeezebert_open_connections", "open HTTP connections", registry=r)
        self.closed = Counter("squeezebert_connections_closed", "connections the server closed, by reason (idle, "
                              "read_timeout, evicted, over_limit, bad_request)", ["reason"], registry=r)

    def observe_batch(self, rows: int, tokens: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_tokens.observe(tokens)
        self.inference.observe(seconds)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
