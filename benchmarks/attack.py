"""The server under attack: latency of ``/healthz`` and of a real request while idle connections, slow-body clients
and an overload burst hit it together, against the same latencies just before. Bounded in time; JSON out.

    .venv/bin/python benchmarks/attack.py --seconds 20 --idle 200 --slow 20 --out out/serve/attack.json
    .venv/bin/python benchmarks/attack.py --model out/serve/minilm-cls --seconds 60 --idle 1000 --slow 100 \\
        --burst 64 --out out/serve/attack-1000.json

The server is ``squeezebert serve`` in a subprocess on 127.0.0.1 at a free port (``--server-args`` adds flags, e.g.
``'--idle-timeout 5 --read-timeout 15'``). The default model is a tiny random classifier (hidden 32, the real
MiniLM vocabulary) built in a temporary folder: what is measured is the connection handling, not the model;
``--model`` serves a real checkpoint instead.

1. before (``--baseline-seconds``): probes only. A probe is ``GET /healthz`` and ``POST /v1/embeddings`` (one short
   text), each on a new connection (a new client must get in), one pair every ``--probe-interval`` seconds.
2. attack (``--seconds``): the same probes, while
   - ``--idle`` connections send nothing; each the server closes is recorded (how long it was open) and reopened,
     so that as many stay open as the attacker can keep;
   - ``--slow`` clients each send a POST head announcing a 4 KiB body, then one body byte a second; each the
     server closes is recorded (its answer's status, how long it lasted) and reopened;
   - ``--burst`` clients send real requests back to back (a closed loop, so the offered load follows the server):
     every status is counted, and every 429/503 must be JSON with ``Retry-After``.
3. after: ``/healthz``, a real request, and the server's own counters (``/metrics``: connections closed by reason,
   requests by status).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import Server, percentile  # noqa: E402

TEXT = "the movie was a delight from start to finish"
SLOW_HEAD = (b"POST /v1/embeddings HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\n"
             b"Content-Length: 4096\r\n\r\n")


def tiny_model(directory: Path) -> str:
    """A tiny random sequence classifier with the real MiniLM vocabulary (cheap to run; real tokenization)."""
    import torch

    from squeezebert import HEADS, preset
    from squeezebert.assets import minilm_dir
    from squeezebert.checkpoint import save_model
    from squeezebert.tokenizer import Tokenizer

    source = minilm_dir()
    if source is None:
        sys.exit("all-MiniLM-L6-v2 is not installed (its vocabulary makes the tiny model); pass --model DIR")
    tokenizer = Tokenizer.from_vocab(source / "vocab.txt")
    torch.manual_seed(0)
    model = HEADS["sequence_classification"](preset("tiny", vocab_size=tokenizer.vocab_size))
    save_model(model, directory, tokenizer=tokenizer)
    return str(directory)


def quantiles(values: list[float], scale: float, qs: dict[str, float]) -> dict[str, float | None]:
    """Named percentiles of ``values`` times ``scale``; None when there are none (JSON has no NaN)."""
    return {name: round(percentile(values, q) * scale, 2) if values else None for name, q in qs.items()}


def summary(latencies: list[float], errors: Counter) -> dict[str, Any]:
    return {"n": len(latencies), **quantiles(latencies, 1000, {"p50_ms": 50, "p90_ms": 90, "p99_ms": 99,
                                                               "max_ms": 100}), "errors": dict(errors)}


class Probes:
    """``/healthz`` and one real request, each on a new connection, at a steady pace; latencies by phase."""

    def __init__(self, url: str, interval: float, timeout: float):
        self.url, self.interval, self.timeout = url, interval, timeout
        self.phase = "before"
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.errors: dict[tuple[str, str], Counter] = {}

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per probe
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=self.timeout) as http:
            while not stop.is_set():
                await asyncio.gather(self.one(http, "healthz", "GET", "/healthz", None),
                                     self.one(http, "request", "POST", "/v1/embeddings", {"inputs": TEXT}))
                await asyncio.sleep(self.interval)

    async def one(self, http: httpx.AsyncClient, name: str, method: str, path: str, body: Any) -> None:
        key, start = (self.phase, name), time.perf_counter()
        try:
            r = await http.request(method, path, json=body)
            outcome = None if r.status_code == 200 else f"status {r.status_code}"
        except httpx.HTTPError as e:
            outcome = type(e).__name__
        if outcome is None:
            self.latency.setdefault(key, []).append(time.perf_counter() - start)
        else:
            self.errors.setdefault(key, Counter())[outcome] += 1

    def report(self) -> dict[str, Any]:
        keys = sorted(set(self.latency) | set(self.errors))
        return {f"{phase}/{name}": summary(self.latency.get((phase, name), []), self.errors.get((phase, name),
                                                                                                  Counter()))
                for phase, name in keys}


class Attackers:
    """Idle connections, slow-body clients and an overload burst, each kept up until ``stop``."""

    def __init__(self, url: str):
        self.host, self.port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        self.url = url
        self.idle_closed: list[float] = []  # seconds each idle connection stayed open before the server closed it
        self.slow_closed: list[float] = []
        self.slow_answers: Counter = Counter()
        self.connect_errors: Counter = Counter()
        self.burst_statuses: Counter = Counter()
        self.burst_bad_refusals = 0  # a 429/503 without JSON or Retry-After

    async def connect(self, kind: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as e:  # the server refused or reset it: counted, and tried again shortly
            self.connect_errors[f"{kind}: {type(e).__name__}"] += 1
            await asyncio.sleep(0.1)
            return None

    async def idle(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if (connection := await self.connect("idle")) is None:
                continue
            reader, writer = connection
            opened = time.monotonic()
            closed = await first(reader.read(), stop)
            if closed:
                self.idle_closed.append(time.monotonic() - opened)
            writer.close()

    async def slow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if (connection := await self.connect("slow")) is None:
                continue
            reader, writer = connection
            opened = time.monotonic()
            answer = asyncio.ensure_future(first_bytes(reader))
            try:
                writer.write(SLOW_HEAD)
                for _ in range(4096):
                    if stop.is_set() or answer.done():
                        break
                    writer.write(b" ")
                    await writer.drain()
                    await first(asyncio.shield(answer), stop, timeout=1.0)
            except OSError:
                pass  # the server closed it
            if await first(asyncio.shield(answer), stop, timeout=5.0):
                data = answer.result()
                self.slow_answers[data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"] += 1
                self.slow_closed.append(time.monotonic() - opened)
            answer.cancel()
            writer.close()

    async def burst(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            while not stop.is_set():
                try:
                    r = await http.post("/v1/embeddings", json={"inputs": TEXT})
                except httpx.HTTPError as e:
                    self.burst_statuses[type(e).__name__] += 1
                    continue
                self.burst_statuses[str(r.status_code)] += 1
                if r.status_code in (429, 503) and not (r.headers.get("retry-after") and is_json(r)):
                    self.burst_bad_refusals += 1

    def report(self) -> dict[str, Any]:
        return {"idle_closed_by_server": len(self.idle_closed),
                "idle_open_s": summary_s(self.idle_closed),
                "slow_closed_by_server": len(self.slow_closed), "slow_answers": dict(self.slow_answers),
                "slow_open_s": summary_s(self.slow_closed),
                "burst_statuses": dict(self.burst_statuses), "burst_refusals_without_json_retry_after":
                    self.burst_bad_refusals, "connect_errors": dict(self.connect_errors)}


async def first_bytes(reader: asyncio.StreamReader) -> bytes:
    """The first bytes the server sends (b"" if it closes or resets first). Not ``reader.read()``: that waits for
    EOF, and a server that closes while our bytes sit unread in its buffer resets the connection (RST, not FIN), so
    ``read()`` raises and drops the answer that had already arrived: a 408 counted as "closed"."""
    try:
        return await reader.read(65536)
    except OSError:
        return b""


async def first(work: Any, stop: asyncio.Event, timeout: float | None = None) -> bool:
    """Wait for ``work`` (True), or ``stop`` / ``timeout`` (False)."""
    task, stopper = asyncio.ensure_future(work), asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task not in done:
        task.cancel()
        return False
    return True


def is_json(response: httpx.Response) -> bool:
    try:
        return "detail" in response.json()
    except ValueError:
        return False


def summary_s(values: list[float]) -> dict[str, Any]:
    return quantiles(values, 1, {"p50": 50, "max": 100})


async def attack(url: str, idle: int, slow: int, burst: int, seconds: float, baseline_seconds: float,
                 probe_interval: float = 0.2, probe_timeout: float = 10.0) -> dict[str, Any]:
    """Baseline probes, then the attack with probes, then a last check; the measurements as a dict."""
    probes, attackers = Probes(url, probe_interval, probe_timeout), Attackers(url)
    stop_probes, stop_attack = asyncio.Event(), asyncio.Event()
    prober = asyncio.create_task(probes.run(stop_probes))
    await asyncio.sleep(baseline_seconds)
    probes.phase = "during"
    tasks = ([asyncio.create_task(attackers.idle(stop_attack)) for _ in range(idle)]
             + [asyncio.create_task(attackers.slow(stop_attack)) for _ in range(slow)]
             + [asyncio.create_task(attackers.burst(stop_attack)) for _ in range(burst)])
    await asyncio.sleep(seconds)
    stop_attack.set()
    probes.phase = "after"
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(min(baseline_seconds, 2.0))
    stop_probes.set()
    await prober
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        health = (await http.get("/healthz")).status_code
        request = (await http.post("/v1/embeddings", json={"inputs": TEXT})).status_code
        metrics = (await http.get("/metrics")).text
    counters = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                if line.startswith(("squeezebert_connections_closed_total", "squeezebert_requests_total",
                                    "squeezebert_rejected_total"))}
    return {"probes": probes.report(), "attack": attackers.report(),
            "after": {"healthz": health, "request": request}, "server_counters": counters}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint to serve (default: a tiny random classifier with MiniLM's vocab)")
    p.add_argument("--seconds", type=float, default=20.0, help="attack length (default 20)")
    p.add_argument("--baseline-seconds", type=float, default=5.0, help="probes before the attack (default 5)")
    p.add_argument("--idle", type=int, default=200, help="idle connections (default 200)")
    p.add_argument("--slow", type=int, default=20, help="slow-body clients (default 20)")
    p.add_argument("--burst", type=int, default=32, help="clients sending requests back to back (default 32)")
    p.add_argument("--probe-interval", type=float, default=0.2, help="seconds between probes (default 0.2)")
    p.add_argument("--threads", type=int, default=1, help="server torch threads (default 1)")
    p.add_argument("--server-args", default="", help="more flags for squeezebert serve")
    p.add_argument("--out", default="out/serve/attack.json")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the client holds every attacking connection
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(Path(tmp) / "tiny")
        server = Server(model, ["--threads", str(args.threads), *args.server_args.split()], out.with_suffix(".log"))
        try:
            results = asyncio.run(attack(server.url, args.idle, args.slow, args.burst, args.seconds,
                                         args.baseline_seconds, args.probe_interval))
        finally:
            code = server.stop()
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "server": server.command,
               "model": args.model or "tiny random classifier (MiniLM vocab)", "exit_code": code, **results}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
