"""Running the app under uvicorn, with a graceful shutdown.

On SIGINT/SIGTERM uvicorn stops listening, lets in-flight requests finish (up to ``timeout_graceful_shutdown``)
and then runs the app's lifespan shutdown, where the batcher finishes every accepted row. The only thing it does
not do is tell the app that shutdown began: requests still arriving on open keep-alive connections would be queued.
:class:`DrainingServer` marks the service as draining first, so those get a 503 and ``/readyz`` turns false.
"""

from __future__ import annotations

from types import FrameType

import uvicorn

from .app import Service, create_app
from .config import ServeConfig


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.draining = True
        super().handle_exit(sig, frame)

    def drain(self) -> None:
        """Begin a graceful shutdown from Python (what a signal does)."""
        self.service.draining = True
        self.should_exit = True


def make_server(config: ServeConfig, log_level: str = "info") -> DrainingServer:
    app = create_app(config)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                        # accepted requests may wait up to their own timeout; give them that long to finish
                        timeout_graceful_shutdown=int(config.timeout_s) + 5,
                        limit_concurrency=config.max_connections)
    return DrainingServer(uv, app.state.service)


def serve(config: ServeConfig, log_level: str = "info") -> None:
    """Load the model, warm it up, and serve until interrupted."""
    make_server(config, log_level).run()
