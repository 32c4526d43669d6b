"""The server's settings: one typed dataclass, filled by ``squeezebert serve``'s flags or by hand in Python."""

from __future__ import annotations

from dataclasses import dataclass

from ..precision import WEIGHT_FORMATS

PRECISIONS = WEIGHT_FORMATS  # the weight formats the model may run in (squeezebert.precision: torch-free)
BACKENDS = ("torch", "onnxruntime")


@dataclass
class ServeConfig:
    model: str  # checkpoint directory (config.json, model.safetensors, tokenizer files), or an ONNX export folder
    backend: str | None = None  # torch or onnxruntime (None: onnxruntime for a folder of `squeezebert export`)
    host: str = "127.0.0.1"
    port: int = 8000
    precision: str = "fp32"  # fp32, bf16 or int8 (squeezebert.infer.fast)
    compile: bool = False  # torch.compile: faster calls, but a compile pause for every new padded length
    threads: int | None = None  # torch intra-op threads; None: one per core
    # dynamic batching (squeezebert.serve.batcher)
    max_batch_tokens: int = 4096  # padded tokens per model call
    max_batch_size: int = 64  # rows per model call; 1 turns batching off
    max_wait_ms: float = 5.0  # how long the oldest waiting row may wait for company
    max_queue: int = 256  # rows waiting; beyond this requests are refused at once (429)
    # limits on one request
    max_length: int | None = None  # tokens per model row (default: the model's position table, at most 512)
    max_texts: int = 64  # inputs per request
    max_chars: int = 20_000  # characters per text; longer texts are cut (flagged) or refused (truncation=false)
    max_body_bytes: int = 1 << 20  # request body size (413 beyond)
    timeout_s: float = 30.0  # per request, from when its handler starts, queueing included (504 beyond)
    # requests in progress (body received, not yet answered) beyond which new ones get a JSON 503 + Retry-After at
    # once: bounds the backlog the event loop carries under overload, so accepted requests keep a bounded latency
    # (docs/serving.md: without a limit, 10x overload left accepted requests waiting past the timeout). Health and
    # metrics probes are not counted. None: no limit
    max_requests: int | None = 512
    # open TCP connections; at the limit the connection waiting longest without a request in progress (idle, or
    # still sending its request) is closed to make room, so idle clients cannot lock others out (serve/protocol.py)
    max_connections: int = 2048
    idle_timeout_s: float = 5.0  # a connection with no request in progress is closed after this long (new ones too)
    read_timeout_s: float = 15.0  # a request's head, and then its body, must each arrive within this long (408)
    embeddings: bool = True  # also serve /v1/embeddings from the encoder of a task model
    # access control: every route but the health probes, /metrics, the playground page and the API docs needs
    # "Authorization: Bearer <api_key>" when set; cors_origins: browser origins allowed to call the API (none by
    # default); allowed_hosts: Host header values accepted (all by default; "*.example.com" patterns allowed)
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0: any free port), got {self.port}")
        positive = {"max_batch_tokens": self.max_batch_tokens,
                    "max_batch_size": self.max_batch_size, "max_queue": self.max_queue, "max_texts": self.max_texts,
                    "max_chars": self.max_chars, "max_body_bytes": self.max_body_bytes, "timeout_s": self.timeout_s,
                    "idle_timeout_s": self.idle_timeout_s, "read_timeout_s": self.read_timeout_s}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max_requests must be positive, got {self.max_requests}")
        if self.max_connections <= (self.max_requests or 0):
            # every connection beyond the requests in progress is one the server may close to make room
            raise ValueError(f"max_connections ({self.max_connections}) must exceed max_requests ({self.max_requests})")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty")
        for host in self.allowed_hosts:
            if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
                raise ValueError(f"allowed host {host!r}: a wildcard must be the whole name or lead it "
                                 "('*.example.com')")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_texts > self.max_queue:
            # a request is queued all or nothing: one bigger than the queue could never be accepted
            raise ValueError(f"max_texts ({self.max_texts}) must not exceed max_queue ({self.max_queue})")
