"""Our fp32 forward vs transformers' SqueezeBERT, paper config (random weights), measured interleaved in one run.

    python benchmarks/fp32_vs_transformers.py [--batch 1] [--seq 128] [--rounds 30] [--threads 2]

Prints medians and p90 in ms, the ratio, and achieved GFLOP/s. Both models hold the same weights (ours is loaded
from the transformers checkpoint), and the outputs are compared, so the timing is of equal work.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import torch

from squeezebert.checkpoint import load_model
from squeezebert.config import count_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = transformers.SqueezeBertModel(transformers.SqueezeBertConfig()).eval()
    with tempfile.TemporaryDirectory() as d:
        ref.save_pretrained(d)
        ours = load_model(d)
    ids = torch.randint(1, 30522, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    runs = {"transformers SqueezeBertModel": lambda: ref(input_ids=ids, attention_mask=mask).last_hidden_state,
            "squeezebert fp32": lambda: ours(ids, mask).last_hidden_state}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        diff = (runs["transformers SqueezeBertModel"]() - runs["squeezebert fp32"]()).abs().max().item()
        for fn in runs.values():  # warm-up
            for _ in range(3):
                fn()
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000)
    flops = count_flops(ours.config, args.seq) * args.batch
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} | torch {torch.__version__} "
          f"| {args.threads} threads | batch {args.batch} x {args.seq} tokens | {args.rounds} rounds interleaved")
    print(f"max abs diff of last_hidden_state: {diff:.2e}")
    print("| path | median ms | p90 ms | GFLOP/s |")
    print("|---|---|---|---|")
    med = {}
    for name, xs in times.items():
        med[name] = statistics.median(xs)
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"| {name} | {med[name]:.1f} | {p90:.1f} | {flops / med[name] / 1e6:.0f} |")
    print(f"speed-up: {med['transformers SqueezeBertModel'] / med['squeezebert fp32']:.2f}x")


if __name__ == "__main__":
    main()
