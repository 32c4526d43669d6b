"""The server's settings: one typed dataclass, filled by ``squeezebert serve``'s flags or by hand in Python."""

from __future__ import annotations

from dataclasses import dataclass

from ..infer.fast import PRECISIONS


@dataclass
class ServeConfig:
    model: str  # checkpoint directory (config.json, model.safetensors, tokenizer files)
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
    # connections + requests in progress before uvicorn itself answers 503 (cheaply, before the app: bounds the
    # backlog the event loop carries under overload, so accepted requests keep a bounded latency; measured in
    # docs/serving.md: without a limit, 10x overload left accepted requests waiting past the timeout); None: no limit
    max_connections: int | None = 512
    embeddings: bool = True  # also serve /v1/embeddings from the encoder of a task model

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0: any free port), got {self.port}")
        positive = {"max_batch_tokens": self.max_batch_tokens,
                    "max_batch_size": self.max_batch_size, "max_queue": self.max_queue, "max_texts": self.max_texts,
                    "max_chars": self.max_chars, "max_body_bytes": self.max_body_bytes, "timeout_s": self.timeout_s}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be positive, got {self.max_connections}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_texts > self.max_queue:
            # a request is queued all or nothing: one bigger than the queue could never be accepted
            raise ValueError(f"max_texts ({self.max_texts}) must not exceed max_queue ({self.max_queue})")
