"""Distillation evidence on real data: all-MiniLM-L6-v2 (dense) -> squeezed SqueezeBERT student.

    .venv/bin/python benchmarks/distill_minilm.py squeeze-error --teacher out/finetune/minilm-sst2/best
    .venv/bin/python benchmarks/distill_minilm.py evaluate --teacher T --student out/distill/sst2-a/best --task sst2
    .venv/bin/python benchmarks/distill_minilm.py speed --teacher T --student S [--compile] [--threads 2]

``squeeze-error``: relative error of the squeezed model's last hidden states (and logits) against the teacher on
200 SST-2 dev sentences, for each squeeze variant (diagonal blocks; + folded permutations; + least-squares fit on
256 SST-2 train sentences). ``evaluate``: dev metric of teacher, student fp32 and student int8 (same run).
``speed``: median latency at batch 1 x 128 of teacher and student (fp32, int8, ONNX), rounds interleaved.
The distillation runs themselves are ``squeezebert distill`` commands, listed with their results in
docs/results.md ("Distillation"). Every sub-command prints JSON and writes it to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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
    torch.set_num_threads(args.threads)
    teacher, student = load_model(args.teacher), load_model(args.student)
    paths = {"teacher fp32": for_inference(teacher, "fp32", compile=args.compile),
             "student fp32": for_inference(student, "fp32", compile=args.compile)}
    if args.int8:  # int8 runs fast only with AVX512-VNNI (torch._int_mm); elsewhere it is far slower than fp32
        paths |= {"teacher int8": for_inference(teacher, "int8", compile=args.compile),
                  "student int8": for_inference(student, "int8", compile=args.compile)}
    if args.onnx:  # both exported by `squeezebert export` and run by onnxruntime (fp32 and dynamic int8)
        from squeezebert.bench import onnx_runner
        from squeezebert.export import export_onnx

        work = Path(args.onnx)
        for name, model in (("teacher", teacher), ("student", student)):
            for int8 in (False, True):
                file = work / f"{name}{'-int8' if int8 else ''}.onnx"
                export_onnx(model, file, int8=int8, check=False)
                paths[f"{name} onnx {'int8' if int8 else 'fp32'}"] = onnx_runner(file, args.threads)
    ids = torch.randint(1000, 20000, (1, 128), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    times: dict[str, list[float]] = {k: [] for k in paths}
    with torch.inference_mode():
        for fn in paths.values():
            for _ in range(3):
                fn(ids, mask)
        for _ in range(args.rounds):
            for name, fn in paths.items():
                start = time.perf_counter()
                fn(ids, mask)
                times[name].append((time.perf_counter() - start) * 1000)
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    result = {"median_ms_1x128": med, "rounds": args.rounds, "threads": args.threads, "compiled": args.compile,
              "student_speedup_fp32": round(med["teacher fp32"] / med["student fp32"], 2)}
    if args.onnx:
        result |= {f"student_speedup_onnx_{p}": round(med[f"teacher onnx {p}"] / med[f"student onnx {p}"], 2)
                   for p in ("fp32", "int8")}
        result["student_onnx_int8_vs_teacher_fastest"] = round(
            min(v for k, v in med.items() if k.startswith("teacher")) / med["student onnx int8"], 2)
    if args.int8:
        result |= {"student_int8_speedup_vs_teacher_fp32": round(med["teacher fp32"] / med["student int8"], 2),
                   "student_speedup_int8_vs_teacher_int8": round(med["teacher int8"] / med["student int8"], 2)}
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
            p.add_argument("--int8", action="store_true", help="also time the int8 paths")
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
