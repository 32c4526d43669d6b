"""Task accuracy of the reduced-precision paths against fp32, on a fine-tuned checkpoint (issue 3, goal 2).

    python benchmarks/int8_accuracy.py --model out/finetune/minilm-sst2/best \
        [--task sst2] [--data-dir /work/shared/data/glue/SST-2] [--precisions fp32,int8,onnx-fp32,onnx-int8] \
        [--max-length 128] [--threads 2] [--out out/bench/int8_accuracy.json]

Each precision scores the same dev set through ``squeezebert.finetune.tasks.load_task(...).evaluate``: the PyTorch
paths are ``for_inference(model, precision, compile=False)`` (the module swaps; compiling changes only the float
summation order), the ONNX paths run the exported file through onnxruntime. bf16 is included by default only on
CPUs with native bf16 (elsewhere oneDNN emulates it at a tiny fraction of fp32 speed). Prints a markdown table
with the accuracy, the difference from fp32 and the wall time of the whole dev pass.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from squeezebert.bench import cpu_features
from squeezebert.checkpoint import load_model
from squeezebert.export import export_onnx, onnx_session
from squeezebert.finetune.tasks import load_task
from squeezebert.infer.fast import for_inference, set_threads
from squeezebert.model import ModelOutput
from squeezebert.tokenizer import Tokenizer


class OnnxClassifier:
    """Callable like the model for ``evaluate``: (input_ids, attention_mask, token_type_ids) -> .logits."""

    def __init__(self, path: Path, threads: int):
        self.session = onnx_session(path, threads)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
                "token_type_ids": (token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)).numpy()}
        logits = self.session.run(["logits"], feed)[0]
        return ModelOutput(logits=torch.from_numpy(np.ascontiguousarray(logits)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="out/finetune/minilm-sst2/best")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--data-dir", default="/work/shared/data/glue/SST-2")
    ap.add_argument("--precisions", help="comma list of fp32, bf16, int8, onnx-fp32, onnx-int8")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/bench/int8_accuracy.json")
    args = ap.parse_args()
    if not Path(args.model).is_dir():
        raise SystemExit(f"{args.model}: no such checkpoint directory (fine-tune one first: squeezebert finetune)")
    features = cpu_features()
    precisions = (args.precisions.split(",") if args.precisions else
                  ["fp32"] + (["bf16"] if features["bf16"] else []) + ["int8", "onnx-fp32", "onnx-int8"])
    set_threads(args.threads)
    model = load_model(args.model)
    task = load_task(args.task, args.data_dir, Tokenizer.from_pretrained(args.model), max_length=args.max_length,
                     limit_train=0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for precision in precisions:
            if precision.startswith("onnx-"):
                file = Path(d) / f"{precision}.onnx"
                export_onnx(model, file, int8=precision == "onnx-int8")  # with its parity check
                runner = OnnxClassifier(file, args.threads)
            else:
                runner = for_inference(model, precision, compile=False)
            start = time.perf_counter()
            metrics = task.evaluate(runner, "dev")
            rows.append({"precision": precision, **metrics, "dev_pass_s": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)
    metric = task.metric
    base = next(r[metric] for r in rows if r["precision"] == "fp32") if any(r["precision"] == "fp32" for r in rows) else None
    print(f"\n# {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} | {args.threads} threads"
          f" | {args.model} | {args.task} dev ({len(task.examples['dev'])} examples), max_length {args.max_length}")
    print(f"| precision | {metric} | vs fp32 (points) | dev pass s |\n|---|---|---|---|")
    for r in rows:
        delta = f"{100 * (r[metric] - base):+.2f}" if base is not None else "-"
        print(f"| {r['precision']} | {100 * r[metric]:.2f} | {delta} | {r['dev_pass_s']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model,
                                          "task": args.task, "metric": metric, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
