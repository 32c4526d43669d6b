"""Compare ONNX files for speed on a busy machine: interleaved A/B timing and onnxruntime's node-type profile.

  .venv/bin/python benchmarks/onnx_ab.py ab A.onnx B.onnx ... [--shape 1x128] [--rounds 15] [--cores 1]
  .venv/bin/python benchmarks/onnx_ab.py profile A.onnx [--shape 1x128] [--runs 5]

``ab``: one onnxruntime session per file, each in its own process pinned to ``--cores`` (``taskset``) with one
intra-op thread; the processes are called in turn, one run each, ``--rounds`` times, and the medians of both wall
time and the process's CPU time are printed with the ratio of the first file's CPU median to each. CPU time
counts only the time the process ran, so it is far less disturbed by other jobs than wall time (still not immune:
caches and memory bandwidth are shared); trust large differences only, and re-run. ``profile``: time per node type
(onnxruntime's profiler, one thread, after a warm-up), and the optimised graph's node counts: where the time goes.
Inputs are random ids of the given ``BATCHxSEQ`` with a full mask (``input_ids``, ``attention_mask`` and, when the
graph has it, ``token_type_ids``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

WORKER = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
print("ready", flush=True)
for line in sys.stdin:
    batch, seq, n = map(int, line.split())
    ids = np.random.default_rng(batch * 1000 + seq).integers(1, 1000, (batch, seq)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {k: v for k, v in feed.items() if k in names}
    times = []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        session.run(None, feed)
        times.append(((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000))
    print(json.dumps(times), flush=True)
"""


def feed_for(session, batch: int, seq: int):
    import numpy as np

    ids = np.random.default_rng(batch * 1000 + seq).integers(1, 1000, (batch, seq)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}}


def ab(files: list[str], batch: int, seq: int, rounds: int, cores: str) -> None:
    procs = [subprocess.Popen(["taskset", "-c", cores, sys.executable, "-c", WORKER, f], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for f in files]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker failed to load its file (see stderr): {p.args[-1]}")

        def call(p, n):
            p.stdin.write(f"{batch} {seq} {n}\n")
            p.stdin.flush()
            return json.loads(p.stdout.readline())

        for p in procs:
            call(p, 2)  # warm-up
        times = {f: [] for f in files}
        for _ in range(rounds):
            for f, p in zip(files, procs):
                times[f] += call(p, 1)
    finally:
        for p in procs:
            p.stdin.close()
            p.wait()
    first = statistics.median(c for _, c in times[files[0]])
    print(f"{batch}x{seq}, {rounds} interleaved rounds, 1 thread on core(s) {cores}")
    for f in files:
        wall, cpu = (statistics.median(t[i] for t in times[f]) for i in (0, 1))
        print(f"  {os.path.basename(f):36s} wall median {wall:9.1f} ms   cpu median {cpu:9.1f} ms   "
              f"first / this (cpu) {first / cpu:5.2f}x")


def profile(file: str, batch: int, seq: int, runs: int) -> None:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.optimized_model_filepath = os.path.join(d, "optimized.onnx")
        session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
        nodes = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath,
                                                                 load_external_data=False).graph.node)
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(d, "profile")
        session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
        feed = feed_for(session, batch, seq)
        session.run(None, feed)  # warm-up, profiled too: subtracted below by taking per-node medians
        for _ in range(runs):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    per_node = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["args"]["op_name"], e["name"])].append(e["dur"] / 1000)
    by_type = collections.defaultdict(float)
    for (op, _), durations in per_node.items():
        by_type[op] += statistics.median(durations)
    total = sum(by_type.values())
    print(f"{os.path.basename(file)} {batch}x{seq}: {total:.1f} ms of kernel time per run (median per node, "
          f"{runs} runs, 1 thread)")
    for op, ms in sorted(by_type.items(), key=lambda kv: -kv[1]):
        print(f"  {op:28s} {ms:8.2f} ms {100 * ms / total:5.1f} %   nodes {nodes.get(op, 0)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("ab", "profile"))
    parser.add_argument("files", nargs="+")
    parser.add_argument("--shape", default="1x128", help="BATCHxSEQ (default 1x128)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cores", default="1", help="taskset core list for the ab workers (default 1)")
    args = parser.parse_args()
    batch, seq = map(int, args.shape.lower().split("x"))
    if args.mode == "ab":
        ab(args.files, batch, seq, args.rounds, args.cores)
    else:
        for f in args.files:
            profile(f, batch, seq, args.runs)


if __name__ == "__main__":
    main()
