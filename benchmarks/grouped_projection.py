"""A grouped 1x1 projection at training shapes: grouped conv1d (transformers' kernel) vs one batched matmul.

    .venv/bin/python benchmarks/grouped_projection.py [--tokens 4096] [--groups 4] [--threads 2]

Forward and backward (to input, weight and bias) of SqueezeBERT's three projection shapes (768->768, 768->3072,
3072->768), medians of 6 timed repetitions after 2 warm-ups. The choice in squeezebert.model.GroupedProjection
(batched matmul whenever autograd records) rests on this measurement.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def conv(x, w, b, g):
    return F.conv1d(x.unsqueeze(0), w.unsqueeze(-1), b, groups=g).squeeze(0)


def bmm(x, w, b, g):
    cout, t = w.shape[0], x.shape[1]
    return torch.baddbmm(b.view(g, cout // g, 1), w.view(g, cout // g, -1), x.view(g, x.shape[0] // g, t)).view(cout, t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096, help="batch x sequence length (32 x 128)")
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| Cin -> Cout | kernel | forward ms | backward ms |\n|---|---|---|---|")
    for cin, cout in ((768, 768), (768, 3072), (3072, 768)):
        x = torch.randn(cin, args.tokens, requires_grad=True)
        w = torch.randn(cout, cin // args.groups, requires_grad=True)
        b = torch.randn(cout, requires_grad=True)
        for name, f in (("grouped conv1d", conv), ("batched matmul", bmm)):
            forward, backward = [], []
            for i in range(8):
                t0 = time.perf_counter()
                y = f(x, w, b, args.groups)
                t1 = time.perf_counter()
                y.sum().backward()
                if i >= 2:
                    forward.append(t1 - t0)
                    backward.append(time.perf_counter() - t1)
            print(f"| {cin} -> {cout} | {name} | {statistics.median(forward) * 1e3:.1f} | "
                  f"{statistics.median(backward) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
