"""Load test of ``squeezebert serve`` on loopback: throughput and latency with dynamic batching vs one-at-a-time,
and an overload run at ~10x capacity; or an A/B of several models served the same way. Every answer is checked
against the pipeline run directly (no server), built from the same serve flags as the server.

    .venv/bin/python benchmarks/load_test.py --model out/serve/minilm-cls --out out/serve/load_test.json

For each server setting (``batched``: the defaults, up to 64 rows a call; ``one-at-a-time``: --max-batch-size 1)
a fresh server process is started on 127.0.0.1 at a free port. At each concurrency (closed loop: C clients, each
sends its next request when the last one is answered) a bounded number of requests is sent (and each level stops
after --level-seconds); one SST-2 dev sentence per request. The overload run (batched server) offers requests
open-loop at ``--overload-factor`` x the best measured throughput for ``--overload-seconds``: it records every
status, checks that every 200 is the right answer, and samples the server's RSS (``--no-overload``: skipped).

Several models: ``--model LABEL=DIR`` (repeatable; a plain DIR is labelled by its folder name; the first is the
baseline), ``--model-args LABEL='FLAGS'`` (repeatable) adds serve flags for one model to the common
``--server-args``. E.g. the squeezed int8 student against the dense teacher served the same way, at C=8:

    .venv/bin/python benchmarks/load_test.py --model teacher=out/acc/teacher-sst2/best \
        --model student=out/serve/student-sst2 --model-args "teacher=--precision int8" \
        --model-args "student=--precision int8" --settings batched --concurrency 8 --rounds 3 --no-overload \
        --out docs/results/serve-ab.json

``--rounds N`` runs the (model, setting) servers in alternating rounds (round 1: A, B; round 2: A, B; ...), each
a fresh server process, so drift in the machine's load hits every model alike; the overload runs in round 1 only.
``levels`` keeps every level (tagged with its ``model`` and ``round``); ``summary`` has, per setting, model and
concurrency, the median throughput_rps and p50_ms over rounds and, with two models or more, each model's median
throughput over the baseline's (``throughput_ratio``). With one model the JSON keys are those of before
(``servers``, ``exit_codes`` and ``overload`` keyed by setting); with several, by ``LABEL/setting`` and label.

Checking answers: fp32 answers must match the reference to 1e-4 in every score and have its label (unless the
reference is a near tie, margin < 2e-4): padding is the only difference. bf16 and int8 cannot be matched exactly:
with fbgemm (int8 on CPUs without VNNI) activations are quantised per model call, so an answer depends on which
requests share its batch. Measured with the SST-2 teacher in int8 on an AVX2 EPYC, 600 answers in random batches
of 8 against the reference's batches: score differences p50 0.0015, p99 0.29, max 0.53, and 1.8% of labels
flipped (at reference margins up to 0.65). So for them an answer counts as ``wrong`` when a score is off by more
than 0.05 or its label differs where the reference margin is >= 0.1; expect some (a measure of batch dependence,
not a bug) and read ``label_flips`` (labels that differ from the reference's, near ties included) beside it. A
server that mixed up answers would show flips at large margins far beyond a few percent.

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
import statistics
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


TOLERANCE = {"fp32": 1e-4}  # per precision, on every score; others: APPROXIMATE (see the module docstring)
APPROXIMATE = 0.05


def parse_models(specs: list[str]) -> dict[str, str]:
    """``LABEL=DIR`` or ``DIR`` (labelled by its folder name) -> {label: dir}, in the order given."""
    models: dict[str, str] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        label, path = (label, path) if sep and label and "/" not in label else (Path(spec).name, spec)
        if label in models:
            raise ValueError(f"--model {spec}: label {label!r} given twice (name them LABEL=DIR)")
        models[label] = path
    return models


def parse_model_args(specs: list[str], labels: list[str]) -> dict[str, list[str]]:
    """``LABEL=FLAGS`` (repeatable; flags of one label add up) -> {label: [flags]} for every label."""
    flags: dict[str, list[str]] = {label: [] for label in labels}
    for spec in specs:
        label, sep, more = spec.partition("=")
        if not sep or label not in flags:
            raise ValueError(f"--model-args {spec!r}: expected LABEL=FLAGS with LABEL one of {', '.join(labels)}")
        flags[label] += more.split()
    return flags


def reference(model: str, flags: list[str], texts: list[str]) -> tuple[list[dict], str]:
    """What the server must answer, and in which precision: the pipeline run directly, in this process, built as
    ``squeezebert serve MODEL FLAGS`` builds it (precision, backend, max length, batch limits)."""
    from dataclasses import replace

    import torch

    from squeezebert.cli import build_parser, serve_config
    from squeezebert.serve.service import load_pipelines

    torch.set_num_threads(1)
    config = replace(serve_config(build_parser().parse_args(["serve", model, *flags])), embeddings=False)
    return load_pipelines(config)["text-classification"].run(texts), config.precision


def correct(got: dict, want: dict, tol: float = TOLERANCE["fp32"]) -> bool:
    """Every score within ``tol`` of the reference's, and the same label unless the reference's margin is under
    2 tol (then scores within tol can swap the order)."""
    close = all(abs(got["scores"][k] - v) <= tol for k, v in want["scores"].items())
    margin = abs(sorted(want["scores"].values())[-1] - sorted(want["scores"].values())[-2])
    return close and (got["label"] == want["label"] or margin < 2 * tol)


def summarize(levels: dict[str, list[dict]], labels: list[str]) -> dict:
    """Per setting, model and concurrency: the medians over rounds of throughput_rps and p50_ms; with two models
    or more, every other model's median throughput over the first's (the baseline) at each concurrency."""
    rounds: dict[tuple[str, str, str], list[dict]] = {}  # (setting, model, concurrency) -> its levels
    for setting, rows in levels.items():
        for row in rows:
            rounds.setdefault((setting, row["model"], str(row["concurrency"])), []).append(row)
    median: dict = {}
    for (setting, label, c), rows in rounds.items():
        cell = {key: round(statistics.median(row[key] for row in rows), 1) for key in ("throughput_rps", "p50_ms")}
        median.setdefault(setting, {}).setdefault(label, {})[c] = {**cell, "rounds": len(rows)}
    summary = {"baseline": labels[0], "median": median}
    if len(labels) >= 2:
        ratio: dict = {}
        for setting, label, c in rounds:
            base = median[setting].get(labels[0], {}).get(c, {}).get("throughput_rps")
            if label != labels[0] and base:
                ratio.setdefault(setting, {}).setdefault(label, {})[c] = round(
                    median[setting][label][c]["throughput_rps"] / base, 2)
        summary["throughput_ratio"] = ratio
    return summary


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
                      seconds: float, tol: float = TOLERANCE["fp32"]) -> dict:
    latencies, statuses, wrong, flips = [], Counter(), 0, 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal wrong, flips
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                k = i % len(texts)
                start = time.perf_counter()
                r = await client.post("/v1/classify", json={"inputs": texts[k]})
                latencies.append(time.perf_counter() - start)
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    got = r.json()["results"][0]
                    wrong += not correct(got, want[k], tol)
                    flips += got["label"] != want[k]["label"]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ok = statuses.get(200, 0)
    return {"concurrency": concurrency, "requests": sum(statuses.values()), "ok": ok, "wrong": wrong,
            "label_flips": flips, "statuses": dict(statuses), "wall_s": round(wall, 2),
            "throughput_rps": round(ok / wall, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


def batch_rows(url: str) -> tuple[float, float]:
    """(sum, count) of the server's rows-per-model-call histogram."""
    text = httpx.get(url + "/metrics", timeout=30).text
    value = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
             if line.startswith("squeezebert_batch_rows_")}
    return value["squeezebert_batch_rows_sum"], value["squeezebert_batch_rows_count"]


async def overload(server: Server, texts: list[str], want: list[dict], rate: float, seconds: float,
                   connections: int, tol: float = TOLERANCE["fp32"]) -> dict:
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
                if not correct(r.json()["results"][0], want[k], tol):
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
            "answer_after": after.status_code == 200 and correct(after.json()["results"][0], want[0], tol)}


def measure(server: Server, texts: list[str], want: list[dict], tol: float, args: argparse.Namespace,
            tag: dict) -> list[dict]:
    """A warm-up, then one closed-loop level per --concurrency; each level tagged with ``tag`` (model, round)."""
    # warm-up: a few requests at each batch shape the run will see
    asyncio.run(closed_loop(server.url, texts, want, 8, 64, 30, tol))
    levels = []
    for c in args.concurrency:
        before = batch_rows(server.url)
        level = asyncio.run(closed_loop(server.url, texts, want, c, args.requests, args.level_seconds, tol))
        after = batch_rows(server.url)
        level["mean_batch_rows"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 1)
        levels.append({**level, **tag})
        print(f"  c={c:<3d} {level['throughput_rps']:7.1f} req/s  p50 {level['p50_ms']:7.1f} ms  "
              f"p99 {level['p99_ms']:7.1f} ms  rows/call {level['mean_batch_rows']:5.1f}  "
              f"ok {level['ok']}/{level['requests']}  wrong {level['wrong']}  label flips {level['label_flips']}",
              flush=True)
    return levels


def print_summary(summary: dict) -> None:
    ratios = summary.get("throughput_ratio", {})
    print("median over rounds" + (f" (xN: throughput over {summary['baseline']}'s)" if ratios else ""))
    for setting, by_label in summary["median"].items():
        for label, by_c in by_label.items():
            for c, cell in by_c.items():
                ratio = ratios.get(setting, {}).get(label, {}).get(c)
                print(f"{setting:14s} {label:14s} c={c:<3s} {cell['throughput_rps']:7.1f} req/s  "
                      f"p50 {cell['p50_ms']:7.1f} ms  rounds {cell['rounds']}"
                      + (f"  x{ratio:.2f}" if ratio is not None else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", metavar="[LABEL=]DIR",
                   help="a sequence-classification checkpoint; repeat to compare models, the first is the baseline "
                        "(default out/serve/minilm-cls)")
    p.add_argument("--model-args", action="append", default=[], metavar="LABEL=FLAGS",
                   help="serve flags for one model, added to --server-args, e.g. 'student=--precision int8' "
                        "(repeatable)")
    p.add_argument("--texts", type=Path, default=SST2, help="SST-2 dev.tsv or a file with one text a line")
    p.add_argument("--pool", type=int, default=400, help="distinct texts to send (default 400)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--requests", type=int, default=600, help="requests per concurrency level (default 600)")
    p.add_argument("--level-seconds", type=float, default=60, help="time cap per level (default 60)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternating rounds of every (setting, model) server, a fresh process each (default 1)")
    p.add_argument("--overload-factor", type=float, default=10.0)
    p.add_argument("--overload-seconds", type=float, default=20.0)
    p.add_argument("--no-overload", action="store_true", help="skip the overload run")
    p.add_argument("--connections", type=int, default=512, help="overload client's connections (default 512)")
    p.add_argument("--threads", type=int, help="server torch threads (passed to squeezebert serve)")
    p.add_argument("--server-args", default="", help="more flags for squeezebert serve, e.g. '--max-queue 64'")
    p.add_argument("--settings", nargs="+", choices=("batched", "one-at-a-time"),
                   default=["batched", "one-at-a-time"], help="servers to run (the overload runs on batched)")
    p.add_argument("--out", default="out/serve/load_test.json")
    args = p.parse_args()
    try:
        models = parse_models(args.model or ["out/serve/minilm-cls"])
        flags = parse_model_args(args.model_args, list(models))
    except ValueError as e:
        p.error(str(e))
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    from squeezebert.bench import machine_description
    from squeezebert.infer.fast import cpu_class

    texts = load_texts(args.texts, args.pool)
    common = (["--threads", str(args.threads)] if args.threads else []) + args.server_args.split()
    flags = {label: common + flags[label] for label in models}
    want, tol = {}, {}
    for label, model in models.items():
        print(f"{len(texts)} texts; computing the reference answers of {label} ...", flush=True)
        want[label], precision = reference(model, flags[label], texts)
        tol[label] = TOLERANCE.get(precision, APPROXIMATE)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"batched": [], "one-at-a-time": ["--max-batch-size", "1"]}
    settings = {name: settings[name] for name in args.settings}
    single = len(models) == 1
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.node()}: {machine_description(args.threads or os.cpu_count())}, "
                                f"{os.cpu_count()} CPUs, {cpu_class()}",
                     "cpu_class": cpu_class(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                     "model": next(iter(models.values())), "rounds": args.rounds,
                     "models": {label: {"dir": models[label], "flags": flags[label], "tolerance": tol[label]}
                                for label in models},
                     "levels": {}, "servers": {}, "exit_codes": {}}
    for r in range(1, args.rounds + 1):
        for setting, extra in settings.items():
            for label, model in models.items():
                name = setting if single else f"{label}/{setting}"
                log = out.parent / f"server-{name.replace('/', '-')}{f'-r{r}' if args.rounds > 1 else ''}.log"
                print(f"{name} (round {r}/{args.rounds})", flush=True)
                server = Server(model, flags[label] + extra, log)
                results["servers"][name] = server.command
                try:
                    levels = measure(server, texts, want[label], tol[label], args, {"model": label, "round": r})
                    results["levels"].setdefault(setting, []).extend(levels)
                    if setting == "batched" and r == 1 and not args.no_overload:
                        rate = max(level["throughput_rps"] for level in levels) * args.overload_factor
                        print(f"overload: {rate:.0f} req/s offered for {args.overload_seconds:g} s ...", flush=True)
                        report = asyncio.run(overload(server, texts, want[label], rate, args.overload_seconds,
                                                      args.connections, tol[label]))
                        print(json.dumps(report, indent=2), flush=True)
                        if single:
                            results["overload"] = report
                        else:
                            results.setdefault("overload", {})[label] = report
                finally:
                    code = server.stop()
                    results["exit_codes"][name] = results["exit_codes"].get(name) or code  # the first failure
    results["summary"] = summarize(results["levels"], list(models))
    print_summary(results["summary"])
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
