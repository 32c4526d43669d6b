"""What a pretraining config costs on N GPUs, on paper: FLOPs counted on the meta device, time from a stated throughput.

    .venv/bin/python benchmarks/pretrain_cost.py [--config configs/pretrain-paper.toml] [key=value ...] \
        [--gpus 8,64] [--gpu-tflops 312] [--mfu 0.35] [--busbw 25] [--json out/pretrain-cost.json]

FLOPs: torch's FlopCounterMode over one training micro-batch (forward + backward of MLM + SOP; the MLM head decodes
``max_predictions`` positions per sequence, as squeezebert/pretrain/run.py decodes only the masked ones) of the model
built on the meta device (shapes only: no memory, no arithmetic). Time: FLOPs / (GPUs x peak x MFU), plus one
gradient all-reduce per optimizer step. Every row is repeated for dense BERT-base (the same config, all groups 1).
"""

from __future__ import annotations

import argparse
import math
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from squeezebert.config import GROUP_FIELDS, SqueezeBertConfig, preset
from squeezebert.fileio import write_json
from squeezebert.model import ModelOutput, SqueezeBertForPreTraining, SqueezeBertPreTrainedModel
from squeezebert.pretrain.config import PretrainConfig, load_config


def model_config(config: PretrainConfig, dense: bool = False) -> SqueezeBertConfig:
    """The model a run of ``config`` trains (as run.build_model builds it); ``dense``: every group count 1 (BERT)."""
    dense_groups = {name: 1 for name in GROUP_FIELDS} if dense else {}
    if config.init_from:
        return SqueezeBertConfig.from_json_file(f"{config.init_from}/config.json").replace(**config.model,
                                                                                            **dense_groups)
    return preset(config.model_preset, **{**config.model, **dense_groups})


def meta_model(config: SqueezeBertConfig) -> SqueezeBertForPreTraining:
    # Initialising meta tensors does nothing, yet torch's normal_ on meta runs a Python decomposition (seconds).
    with torch.device("meta"), mock.patch.object(SqueezeBertPreTrainedModel, "init_weights", lambda self: self):
        model = SqueezeBertForPreTraining(config)
    # bf16 weights send GroupedProjection down its batched-matmul path (the same products as its fp32 conv1d path):
    # FlopCounterMode counts a grouped convolution's weight gradient as if it were dense, G times too many.
    return model.to(torch.bfloat16).train()


def training_flops(model: SqueezeBertForPreTraining, batch: int, seq_len: int, predictions: int) -> int:
    """FLOPs of forward + backward of MLM + SOP on ``batch`` sequences (matrix products only, as count_flops)."""
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        encoded = model.transformer.forward_prepared(model.transformer.prepare_inputs(ids, torch.ones_like(ids),
                                                                                      ids, traceable=True))
        # which positions are masked costs nothing; how many is what the vocabulary projection costs
        hidden = encoded.last_hidden_state[:, :predictions].reshape(batch * predictions, -1)  # (B, P, H) -> (M, H)
        out = model.head(ModelOutput(last_hidden_state=hidden, pooler_output=encoded.pooler_output), None)
        targets = torch.zeros(batch * predictions, dtype=torch.long, device="meta")
        loss = F.cross_entropy(out.logits.float(), targets, reduction="sum") + \
            F.cross_entropy(out.sop_logits.float(), targets[:batch])
        loss.backward()
    return counter.get_total_flops()


def phase_costs(config: PretrainConfig, model: SqueezeBertForPreTraining) -> list[dict]:
    rows = []
    for i, phase in enumerate(config.phases, 1):
        predictions = phase.max_predictions or math.ceil(phase.seq_len * config.mask_prob)
        micro = training_flops(model, phase.micro_batch, phase.seq_len, predictions)
        per_sequence = micro // phase.micro_batch
        sequences = phase.steps * phase.global_batch
        rows.append(dict(phase=i, seq_len=phase.seq_len, steps=phase.steps, global_batch=phase.global_batch,
                         micro_batch=phase.micro_batch, predictions=predictions, sequences=sequences,
                         tokens=sequences * phase.seq_len, micro_batch_flops=micro, flops_per_sequence=per_sequence,
                         flops_per_step=per_sequence * phase.global_batch, flops=per_sequence * sequences))
    return rows


def wall_clock(row: dict, gpus: int, parameters: int, args: argparse.Namespace) -> dict:
    per_gpu = args.gpu_tflops * 1e12 * args.mfu
    step = row["flops_per_step"] / (gpus * per_gpu)
    # DDP all-reduces fp32 gradients once per optimizer step (no_sync while accumulating); a ring moves 2(N-1)/N of
    # them through every GPU. Counted as not overlapped with the backward pass: an upper bound.
    allreduce = 2 * (gpus - 1) / gpus * parameters * 4 / (args.busbw * 1e9)
    accum = row["global_batch"] / (row["micro_batch"] * gpus)
    hours = row["steps"] * (step + allreduce) / 3600
    return dict(phase=row["phase"], gpus=gpus, accumulation=accum if accum == int(accum) else None,
                step_seconds=step, allreduce_seconds=allreduce, hours=hours, gpu_hours=hours * gpus)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/pretrain-paper.toml")
    p.add_argument("overrides", nargs="*", help="key=value, as `squeezebert pretrain` takes them")
    p.add_argument("--gpus", default="8,64", help="comma-separated GPU counts")
    p.add_argument("--gpu-tflops", type=float, default=312.0, help="peak per GPU (A100: 312 bf16 dense)")
    # 0.35: below the ~0.5 that tuned BERT-large stacks reach on A100, because these GEMMs are small: hidden 768,
    # and a grouped projection is 4 GEMMs of 192 x 192 (below the A100's compute-bound arithmetic intensity); eager
    # LayerNorm/GELU/softmax/dropout and the optimizer step add time but no counted FLOPs.
    p.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation: counted FLOPs / peak")
    p.add_argument("--busbw", type=float, default=25.0, help="NCCL all-reduce bus bandwidth per GPU, GB/s "
                   "(25: one 200 Gb/s InfiniBand link per GPU)")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    gpus = [int(g) for g in args.gpus.split(",")]
    result: dict = {"config": args.config, "overrides": args.overrides, "gpu_tflops": args.gpu_tflops,
                    "mfu": args.mfu, "busbw": args.busbw, "models": {}}
    for name, dense in (("squeezebert", False), ("bert-base (groups 1)", True)):
        model = meta_model(model_config(config, dense))
        parameters = sum(t.numel() for t in model.parameters())
        phases = phase_costs(config, model)
        times = [wall_clock(row, n, parameters, args) for n in gpus for row in phases]
        result["models"][name] = dict(parameters=parameters, phases=phases, wall_clock=times)
    print_tables(result, gpus)
    if args.json:
        write_json(args.json, result)
    return result


def print_tables(result: dict, gpus: list[int]) -> None:
    print("| model | params | phase | seq | steps x batch | tokens | train GFLOP/seq | PFLOP/step | total EFLOP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in result["models"].items():
        for r in m["phases"]:
            print(f"| {name} | {m['parameters'] / 1e6:.1f}M | {r['phase']} | {r['seq_len']} | "
                  f"{r['steps']:,} x {r['global_batch']:,} | {r['tokens'] / 1e9:.1f}B | "
                  f"{r['flops_per_sequence'] / 1e9:.1f} | {r['flops_per_step'] / 1e15:.3f} | {r['flops'] / 1e18:.1f} |")
    total = {name: sum(r["flops"] for r in m["phases"]) for name, m in result["models"].items()}
    squeeze, dense = total.values()
    print(f"\nTotal: {squeeze / 1e18:.1f} EFLOP vs {dense / 1e18:.1f} EFLOP dense: "
          f"{dense / squeeze:.2f}x fewer FLOPs.\n")
    print(f"At {result['gpu_tflops']:g} TFLOP/s peak x MFU {result['mfu']:g} per GPU, all-reduce bus bandwidth "
          f"{result['busbw']:g} GB/s:\n")
    print("| model | GPUs | phase | accumulation | compute s/step | all-reduce s/step | hours | GPU-hours |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in result["models"].items():
        for n in gpus:
            rows = [t for t in m["wall_clock"] if t["gpus"] == n]
            for t in rows:
                accum = "does not divide" if t["accumulation"] is None else f"{t['accumulation']:g}"
                print(f"| {name} | {n} | {t['phase']} | {accum} | {t['step_seconds']:.3f} | "
                      f"{t['allreduce_seconds']:.3f} | {t['hours']:.1f} | {t['gpu_hours']:,.0f} |")
            print(f"| {name} | {n} | **all** | | | | **{sum(t['hours'] for t in rows):.1f}** | "
                  f"**{sum(t['gpu_hours'] for t in rows):,.0f}** |")


if __name__ == "__main__":
    main()
