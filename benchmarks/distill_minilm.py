"""Distillation evidence on real data: all-MiniLM-L6-v2 (dense) -> squeezed SqueezeBERT student.

    .venv/bin/python benchmarks/distill_minilm.py squeeze-error --teacher out/finetune/minilm-sst2/best
    .venv/bin/python benchmarks/distill_minilm.py evaluate --teacher T --student out/distill/sst2-a/best --task sst2
    .venv/bin/python benchmarks/distill_minilm.py speed --teacher T --student S [--compile] [--threads 2]

``squeeze-error``: relative error of the squeezed model's last hidden states (and logits) against the teacher on
200 SST-2 dev sentences, for each squeeze variant (diagonal blocks; + folded permutations; + least-squares fit on
256 SST-2 train sentences). ``evaluate``: dev metric of teacher, student fp32 and student int8 (same run).
``speed``: median latency at batch 1 x 128 of teacher and student (eager fp32; ONNX fp32 and int8), each path in its
own worker process, rounds interleaved.
The distillation runs themselves are ``squeezebert distill`` commands, listed with their results in
docs/results.md ("Distillation"). Every sub-command prints JSON and writes it to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from squeezebert.assets import shared_data_dir
from squeezebert.checkpoint import load_model
from squeezebert.distill.squeeze import relative_error, squeeze, text_batches
from squeezebert.infer.fast import for_inference
from squeezebert.tokenizer import Tokenizer


def sst2_sentences(split: str, n: int) -> list[str]:
    root = shared_data_dir()
    if root is None:
        sys.exit("needs ../shared/data")
    lines = (root / "glue" / "SST-2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines[:n]]


def squeeze_error(args: argparse.Namespace) -> dict:
    teacher = load_model(args.teacher)
    tok = Tokenizer.from_pretrained(args.teacher)
    calibration = text_batches(tok, sst2_sentences("train", 256), 32)
    held_out = text_batches(tok, sst2_sentences("dev", 200), 32)
    rows = {}
    for name, permute, cal in (("diagonal blocks", False, None), ("+ folded permutations", True, None),
                               ("diagonal + least-squares fit", False, calibration),
                               ("+ permutations + least-squares fit", True, calibration)):
        start = time.perf_counter()
        student, report = squeeze(teacher, permute=permute, calibration=cal, return_report=True)
        seconds = time.perf_counter() - start
        rows[name] = {"kept_energy": round(report.mean_kept(), 4),
                      **{f"rel_err_{k}": round(v, 4) for k, v in relative_error(teacher, student, held_out).items()},
                      "squeeze_seconds": round(seconds, 1)}
        print(name, rows[name], flush=True)
    return {"teacher": args.teacher, "variants": rows}


def evaluate(args: argparse.Namespace) -> dict:
    from squeezebert.finetune.tasks import load_task

    root = shared_data_dir()
    data = root / "glue" / args.data
    student = load_model(args.student)
    teacher = load_model(args.teacher)
    task = load_task(args.task, data, Tokenizer.from_pretrained(args.student), max_length=args.max_length,
                     limit_train=0)
    result = {}
    models = [("student fp32", student), ("student int8", for_inference(student, "int8", compile=False))]
    if not args.student_only:
        models = [("teacher fp32", teacher), *models, ("teacher int8", for_inference(teacher, "int8", compile=False))]
    for name, model in models:
        start = time.perf_counter()
        result[name] = task.evaluate(model)
        result[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(name, result[name], flush=True)
    return {"task": args.task, "teacher": args.teacher, "student": args.student, "dev": result}


def speed(args: argparse.Namespace) -> dict:
    """Teacher and student at 1 x 128, each path in its own worker process (``squeezebert bench``'s workers: one
    onnxruntime session per process), rounds interleaved: eager fp32 (and bf16 where the CPU has it natively),
    and with ``--onnx DIR`` our ONNX export in fp32 and dynamic int8. The speedup compares the best path of each."""
    from squeezebert.bench import PathSpec, Worker, measure_shape, weight_formats
    from squeezebert.infer.fast import cpu_class, has_native_bf16

    paths = []
    torch_formats = [f for f in weight_formats(has_native_bf16()) if f != "int8"]  # int8: the ONNX graphs below
    for name, directory in (("teacher", args.teacher), ("student", args.student)):
        paths += [PathSpec(f"{name} {p}", p, False, 0, lambda s: 0.0,
                           {"kind": "ours", "checkpoint": directory, "precision": p, "compile": args.compile})
                  for p in torch_formats]
        if args.onnx:  # exported by `squeezebert export` (our graph) and quantised by onnxruntime
            from squeezebert.export import export_onnx, quantize_onnx

            work = Path(args.onnx)
            work.mkdir(parents=True, exist_ok=True)
            fp32, int8 = work / f"{name}.onnx", work / f"{name}-int8.onnx"
            export_onnx(load_model(directory), fp32, check=False)
            int8.write_bytes(quantize_onnx(fp32.read_bytes()))
            paths += [PathSpec(f"{name} onnx {p}", p, False, 0, lambda s: 0.0, {"kind": "onnx", "file": str(f)})
                      for p, f in (("fp32", fp32), ("int8", int8))]
    workers = [Worker(p, args.threads) for p in paths]
    try:
        for w in workers:
            w.wait_ready()
        measured = measure_shape(workers, 1, 128, args.rounds, {})
    finally:
        for w in workers:
            w.close()
    med = {m.path: round(m.median_ms, 2) for m in measured}
    best = {who: min((v, k) for k, v in med.items() if k.startswith(who)) for who in ("teacher", "student")}
    result = {"cpu_class": cpu_class(), "median_ms_1x128": med, "rounds": args.rounds, "threads": args.threads,
              "compiled": args.compile,
              "teacher_best": best["teacher"][1], "student_best": best["student"][1],
              **{f"student_speedup_{p}": round(med[f"teacher {p}"] / med[f"student {p}"], 2) for p in torch_formats},
              "student_best_vs_teacher_best": round(best["teacher"][0] / best["student"][0], 2)}
    if args.onnx:
        result |= {f"student_speedup_onnx_{p}": round(med[f"teacher onnx {p}"] / med[f"student onnx {p}"], 2)
                   for p in ("fp32", "int8")}
    print(result, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("squeeze-error", "evaluate", "speed"):
        p = sub.add_parser(name)
        p.add_argument("--teacher", required=True)
        p.add_argument("--json", help="also write the result here")
        if name != "squeeze-error":
            p.add_argument("--student", required=True)
        if name == "evaluate":
            p.add_argument("--task", default="sst2")
            p.add_argument("--data", default="SST-2", help="folder under ../shared/data/glue")
            p.add_argument("--max-length", type=int, default=64)
            p.add_argument("--student-only", action="store_true", help="student fp32 and int8 only")
        if name == "speed":
            p.add_argument("--threads", type=int, default=2)
            p.add_argument("--rounds", type=int, default=30)
            p.add_argument("--compile", action="store_true")
            p.add_argument("--onnx", metavar="DIR", help="also export both to ONNX (fp32, int8) in DIR and time them")
    args = parser.parse_args()
    started = time.time()
    result = {"squeeze-error": squeeze_error, "evaluate": evaluate, "speed": speed}[args.command](args)
    result.update(wall_seconds=round(time.time() - started, 1), machine=platform.processor() or platform.machine(),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), command=" ".join(sys.argv))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
