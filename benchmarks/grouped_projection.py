"""A grouped 1x1 projection at training shapes: grouped conv1d (transformers' kernel) vs one batched matmul.

    .venv/bin/python benchmarks/grouped_projection.py [--tokens 4096] [--groups 4] [--threads 2] [--precision bf16]

Forward and backward (to input, weight and bias) of SqueezeBERT's three projection shapes (768->768, 768->3072,
3072->768), medians of 6 timed repetitions after 2 warm-ups. The choice in squeezebert.model.GroupedProjection
(batched matmul whenever autograd records) rests on this measurement. ``--precision bf16`` runs the forward under
bf16 autocast, as training with ``--precision bf16`` does (only meaningful where the CPU has native bf16).
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from unittest.mock import patch

import torch
import torch.nn.functional as F

from squeezebert.model import GroupedProjection


def conv(x: torch.Tensor, module: GroupedProjection) -> torch.Tensor:
    """transformers' kernel: nn.Conv1d(groups=G) with kernel size 1, on the module's own parameters."""
    return F.conv1d(x.unsqueeze(0), module.weight.unsqueeze(-1), module.bias, groups=module.groups).squeeze(0)


def bmm(x: torch.Tensor, module: GroupedProjection) -> torch.Tensor:
    """squeezebert's GroupedProjection, which takes its batched matmul whenever autograd records."""
    return module(x)


def bmm_add(x: torch.Tensor, module: GroupedProjection) -> torch.Tensor:
    """GroupedProjection in the form it takes under torch.compile (squeezebert.model.grouped_matmul: the batched
    matmul, then the bias added, which inductor fuses into the next kernel); eager it is an extra pass."""
    with patch("torch.compiler.is_compiling", return_value=True):
        return module(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096, help="batch x sequence length (32 x 128)")
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="autocast of the forward pass")
    args = ap.parse_args()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16" else nullcontext
    torch.set_num_threads(args.threads)
    print(f"{args.precision}, {args.tokens} tokens, {args.groups} groups, {args.threads} threads")
    print("| Cin -> Cout | kernel | forward ms | backward ms |\n|---|---|---|---|")
    for cin, cout in ((768, 768), (768, 3072), (3072, 768)):
        x = torch.randn(cin, args.tokens, requires_grad=True)
        module = GroupedProjection(cin, cout, args.groups)
        torch.nn.init.normal_(module.weight, std=0.02)
        for name, f in (("grouped conv1d", conv), ("batched matmul", bmm), ("batched matmul, then + bias", bmm_add)):
            forward, backward = [], []
            for i in range(8):
                t0 = time.perf_counter()
                with autocast():
                    y = f(x, module)
                t1 = time.perf_counter()
                y.float().sum().backward()
                if i >= 2:
                    forward.append(t1 - t0)
                    backward.append(time.perf_counter() - t1)
            print(f"| {cin} -> {cout} | {name} | {statistics.median(forward) * 1e3:.1f} | "
                  f"{statistics.median(backward) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
