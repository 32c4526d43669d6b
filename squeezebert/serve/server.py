"""Running the app under uvicorn: guarded connections, a graceful shutdown, and warnings about exposure.

Connections: uvicorn's own protocol leaves new and slow connections without timeouts, and its
``limit_concurrency`` counts idle connections (see ``protocol.py``); we give uvicorn our guarded protocol instead,
and limit requests in progress in the app (``middleware.InFlightLimit``).

On SIGINT/SIGTERM uvicorn stops listening, lets in-flight requests finish (up to ``timeout_graceful_shutdown``)
and then runs the app's lifespan shutdown, where the batcher finishes every accepted row. The only thing it does
not do is tell the app that shutdown began: requests still arriving on open keep-alive connections would be queued.
:class:`DrainingServer` marks the service as draining first, so those get a 503 and ``/readyz`` turns false.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
from types import FrameType

import uvicorn

from .app import create_app
from .config import ServeConfig
from .protocol import ConnectionGuard
from .service import Service

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service, guard: ConnectionGuard):
        super().__init__(config)
        self.service, self.guard = service, guard

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.draining = True
        super().handle_exit(sig, frame)

    def drain(self) -> None:
        """Begin a graceful shutdown from Python (what a signal does)."""
        self.service.draining = True
        self.should_exit = True


def make_server(config: ServeConfig, log_level: str = "info") -> DrainingServer:
    app = create_app(config)
    service: Service = app.state.service
    guard = ConnectionGuard(config.max_connections, config.idle_timeout_s, config.read_timeout_s,
                            on_close=lambda reason: service.metrics.closed.labels(reason).inc())
    service.metrics.connections.set_function(lambda: len(guard.open))
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                        http=guard.protocol(), timeout_keep_alive=config.idle_timeout_s,  # type: ignore[arg-type]
                        # accepted requests may wait up to their own timeout; give them that long to finish
                        timeout_graceful_shutdown=int(config.timeout_s) + 5)
    return DrainingServer(uv, service, guard)


def serve(config: ServeConfig, log_level: str = "info") -> None:
    """Load the model, warm it up, and serve until interrupted."""
    if not config.api_key and not is_loopback(config.host):
        log.warning("listening on %s, beyond this machine, without an API key: anyone who can reach the port can use "
                    "the model; set --api-key or SQUEEZEBERT_API_KEY", config.host)
    raise_open_files_limit(config.max_connections + 256)
    server = make_server(config, log_level)
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind the port or the app cannot start
        raise OSError(f"the server did not start on {config.host}:{config.port} (see the log above)") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name: it may resolve beyond this machine
        return False


def raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor: a soft limit of 1,024 (common) would refuse connections long before
    ``max_connections``. Raise it towards the hard limit, and say so when that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted or soft == resource.RLIM_INFINITY:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open files limit is %d (hard), below max_connections + 256 = %d: lower --max-connections",
                    target, wanted)
