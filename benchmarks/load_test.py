"""Load test of ``squeezebert serve`` on loopback: throughput and latency with dynamic batching vs one-at-a-time,
and an overload run at ~10x capacity. Every answer is checked against the pipeline run directly (no server).

    .venv/bin/python benchmarks/load_test.py --model out/serve/minilm-cls --out out/serve/load_test.json

For each server setting (``batched``: the defaults, up to 64 rows a call; ``one-at-a-time``: --max-batch-size 1)
a fresh server process is started on 127.0.0.1 at a free port. At each concurrency (closed loop: C clients, each
sends its next request when the last one is answered) a bounded number of requests is sent (and each level stops
after --level-seconds); one SST-2 dev sentence per request. The overload run (batched server) offers requests
open-loop at ``--overload-factor`` x the best measured throughput for ``--overload-seconds``: it records every
status, checks that every 200 is the right answer, and samples the server's RSS.

Both the client and the server run on this machine; on a 2-core machine the client takes a share of the CPU, so
figures are lower than a remote client would see. Use ``--threads`` to pin the server's torch threads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "dev.tsv"


def load_texts(path: Path, limit: int) -> list[str]:
    if not path.exists():
        sys.exit(f"{path}: not found (the SST-2 dev set from ../shared/data; pass --texts FILE, one text a line)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("sentence\t"):
        lines = [line.split("\t")[0] for line in lines[1:]]
    texts = [t for t in lines if t.strip()]
    return texts[:limit]


def reference(model: str, texts: list[str]) -> list[dict]:
    """What the server must answer: the pipeline run directly, in this process."""
    import torch

    from squeezebert.pipelines import pipeline

    torch.set_num_threads(1)
    return pipeline("text-classification", model).run(texts)


def correct(got: dict, want: dict) -> bool:
    # padding differs between a batch and a direct call: scores agree to float noise; a label may only differ
    # where the reference itself is a near tie
    close = all(abs(got["scores"][k] - v) < 1e-4 for k, v in want["scores"].items())
    margin = abs(sorted(want["scores"].values())[-1] - sorted(want["scores"].values())[-2])
    return close and (got["label"] == want["label"] or margin < 2e-4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``squeezebert serve`` in a subprocess, ready when /readyz says so; stopped with SIGTERM (graceful)."""

    def __init__(self, model: str, extra: list[str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "squeezebert.cli", "serve", model, "--port", str(self.port), *extra]
        self.command = " ".join(cmd[1:])
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"server exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"server not ready after 180 s; see {log}")
            time.sleep(0.2)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def closed_loop(url: str, texts: list[str], want: list[dict], concurrency: int, requests: int,
                      seconds: float) -> dict:
    latencies, statuses, wrong = [], Counter(), 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal wrong
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                k = i % len(texts)
                start = time.perf_counter()
                r = await client.post("/v1/classify", json={"inputs": texts[k]})
                latencies.append(time.perf_counter() - start)
                statuses[r.status_code] += 1
                if r.status_code == 200 and not correct(r.json()["results"][0], want[k]):
                    wrong += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ok = statuses.get(200, 0)
    return {"concurrency": concurrency, "requests": sum(statuses.values()), "ok": ok, "wrong": wrong,
            "statuses": dict(statuses), "wall_s": round(wall, 2), "throughput_rps": round(ok / wall, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


def batch_rows(url: str) -> tuple[float, float]:
    """(sum, count) of the server's rows-per-model-call histogram."""
    text = httpx.get(url + "/metrics", timeout=30).text
    value = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
             if line.startswith("squeezebert_batch_rows_")}
    return value["squeezebert_batch_rows_sum"], value["squeezebert_batch_rows_count"]


async def overload(server: Server, texts: list[str], want: list[dict], rate: float, seconds: float,
                   connections: int) -> dict:
    """Open loop: a request every 1/rate s for ``seconds``, whatever the answers; then check the server.

    The client holds at most ``connections`` requests in flight (httpx's pool slows down badly when thousands of
    requests wait for a connection, and then the client, not the server, is what is measured); a request due
    while all are busy is not sent and is counted as ``client_skipped``."""
    statuses, errors, wrong, ok_latency, skipped = Counter(), Counter(), 0, [], 0
    rss = [rss_mb(server.proc.pid)]
    slots = asyncio.Semaphore(connections)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

        async def one(k: int) -> None:
            async with slots:
                await send(k)

        async def send(k: int) -> None:
            nonlocal wrong
            start = time.perf_counter()
            try:
                r = await client.post("/v1/classify", json={"inputs": texts[k]})
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                return
            statuses[r.status_code] += 1
            if r.status_code == 200:
                ok_latency.append(time.perf_counter() - start)
                if not correct(r.json()["results"][0], want[k]):
                    wrong += 1
            elif r.status_code in (429, 503) and "retry-after" not in r.headers:
                errors["refusal without Retry-After"] += 1

        async def sample_rss() -> None:
            while True:
                rss.append(rss_mb(server.proc.pid))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample_rss())
        tasks, start, i = [], time.perf_counter(), 0
        while (now := time.perf_counter()) - start < seconds:
            due = int((now - start) * rate) + 1
            while i < due:
                if slots.locked():
                    skipped += 1
                else:
                    tasks.append(asyncio.create_task(one(i % len(texts))))
                i += 1
            await asyncio.sleep(0.002)
        offered_s = time.perf_counter() - start
        await asyncio.gather(*tasks)
        sampler.cancel()
        rss.append(rss_mb(server.proc.pid))
        after = await client.post("/v1/classify", json={"inputs": texts[0]})
        health = await client.get("/healthz")
    return {"target_rps": round(rate, 1), "due": i, "client_skipped": skipped, "sent": i - skipped,
            "sent_rps": round((i - skipped) / offered_s, 1),
            "seconds": round(offered_s, 1), "statuses": dict(statuses), "client_errors": dict(errors),
            "wrong": wrong, "accepted_p50_ms": round(percentile(ok_latency, 50) * 1000, 1),
            "accepted_p99_ms": round(percentile(ok_latency, 99) * 1000, 1),
            "rss_mb_start": round(rss[0], 1), "rss_mb_peak": round(max(rss), 1), "rss_mb_end": round(rss[-1], 1),
            "alive_after": server.proc.poll() is None and health.status_code == 200,
            "answer_after": after.status_code == 200 and correct(after.json()["results"][0], want[0])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="out/serve/minilm-cls", help="a sequence-classification checkpoint")
    p.add_argument("--texts", type=Path, default=SST2, help="SST-2 dev.tsv or a file with one text a line")
    p.add_argument("--pool", type=int, default=400, help="distinct texts to send (default 400)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--requests", type=int, default=600, help="requests per concurrency level (default 600)")
    p.add_argument("--level-seconds", type=float, default=60, help="time cap per level (default 60)")
    p.add_argument("--overload-factor", type=float, default=10.0)
    p.add_argument("--overload-seconds", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=512, help="overload client's connections (default 512)")
    p.add_argument("--threads", type=int, help="server torch threads (passed to squeezebert serve)")
    p.add_argument("--server-args", default="", help="more flags for squeezebert serve, e.g. '--max-queue 64'")
    p.add_argument("--settings", nargs="+", choices=("batched", "one-at-a-time"),
                   default=["batched", "one-at-a-time"], help="servers to run (the overload runs on batched)")
    p.add_argument("--out", default="out/serve/load_test.json")
    args = p.parse_args()

    texts = load_texts(args.texts, args.pool)
    print(f"{len(texts)} texts; computing reference answers ...", flush=True)
    want = reference(args.model, texts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    common = (["--threads", str(args.threads)] if args.threads else []) + args.server_args.split()
    settings = {"batched": common, "one-at-a-time": common + ["--max-batch-size", "1"]}
    settings = {name: settings[name] for name in args.settings}
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                     "command": " ".join([Path(sys.executable).name, *sys.argv]), "model": args.model,
                     "levels": {}, "servers": {}}
    for name, extra in settings.items():
        server = Server(args.model, extra, out.parent / f"server-{name}.log")
        results["servers"][name] = server.command
        try:
            # warm-up: a few requests at each batch shape the run will see
            asyncio.run(closed_loop(server.url, texts, want, 8, 64, 30))
            for c in args.concurrency:
                before = batch_rows(server.url)
                level = asyncio.run(closed_loop(server.url, texts, want, c, args.requests, args.level_seconds))
                after = batch_rows(server.url)
                level["mean_batch_rows"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 1)
                results["levels"].setdefault(name, []).append(level)
                print(f"{name:14s} c={c:<3d} {level['throughput_rps']:7.1f} req/s  p50 {level['p50_ms']:7.1f} ms  "
                      f"p99 {level['p99_ms']:7.1f} ms  rows/call {level['mean_batch_rows']:5.1f}  "
                      f"ok {level['ok']}/{level['requests']}  wrong {level['wrong']}",
                      flush=True)
            if name == "batched":
                capacity = max(level["throughput_rps"] for level in results["levels"][name])
                rate = capacity * args.overload_factor
                print(f"overload: {rate:.0f} req/s offered for {args.overload_seconds:g} s ...", flush=True)
                results["overload"] = asyncio.run(overload(server, texts, want, rate, args.overload_seconds,
                                                           args.connections))
                print(json.dumps(results["overload"], indent=2), flush=True)
        finally:
            code = server.stop()
            results.setdefault("exit_codes", {})[name] = code
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
