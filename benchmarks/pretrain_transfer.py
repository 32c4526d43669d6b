"""Does pretraining help? Fine-tune a pretrained model and the same model from scratch, same flags, several seeds.

    .venv/bin/python benchmarks/pretrain_transfer.py --model scratch=out/pretrain-small-cpu-scratch \
        --model pretrained=out/pretrain-small-cpu/final [--tasks sst2-2k,mrpc] [--seeds 1,2] [--out out/pretrain-ft]

The first ``--model`` is the baseline every other one is compared with. The scratch model is the pretraining config's
initial weights (``squeezebert pretrain --config F --save-initial DIR``: the config's seed, no step taken), so the
two runs differ only by pretraining. Each (setting, model, seed) writes ``OUT/<setting>-<model>-s<seed>/``; the
table (dev metric per seed, mean, difference from the baseline) is printed and written to ``OUT/transfer.md`` /
``transfer.json``. A run whose ``results.json`` exists is read, not redone, so ``--run scratch`` can go first while
pretraining runs.
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
from squeezebert.finetune.run import finetune

# setting -> (task, data folder under ../shared/data, the metrics to report, fine-tuning flags). Subsets stated here:
# pretraining is expected to matter most when labelled data is scarce, so SST-2 is run at two sizes.
TASKS: dict[str, tuple[str, str, tuple[str, ...], dict]] = {
    "sst2-2k": ("sst2", "glue/SST-2", ("accuracy",), dict(limit_train=2000, epochs=5, max_length=64)),
    "sst2-8k": ("sst2", "glue/SST-2", ("accuracy",), dict(limit_train=8000, epochs=3, max_length=64)),
    "mrpc": ("mrpc", "glue/MRPC", ("f1", "accuracy"), dict(epochs=3, max_length=128)),  # all 3,668 training pairs
}
COMMON = dict(batch_size=32, warmup=0.1, progress=False)
DEFAULT_LR = 3e-4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                        help="a model to fine-tune (repeat; the first is the baseline)")
    parser.add_argument("--tasks", default="sst2-2k,mrpc", help=f"settings, of {list(TASKS)}")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--out", default="out/pretrain-ft")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="fine-tuning learning rate, the same for every "
                        "model (runs and tables at another rate than the default are suffixed -lr<rate>)")
    parser.add_argument("--run", help="names of the models to fine-tune now (default: all; --run= none, only the "
                        "table; the table uses every finished run)")
    args = parser.parse_args()
    if any("=" not in spec for spec in args.model) or len({s.split("=", 1)[0] for s in args.model}) < 2:
        parser.error("give at least two --model NAME=DIR (the first is the baseline)")
    models = dict(spec.split("=", 1) for spec in args.model)
    to_run = list(models) if args.run is None else [n for n in args.run.split(",") if n]
    if unknown := set(to_run) - set(models):
        parser.error(f"--run names no --model: {', '.join(sorted(unknown))}")
    root = shared_data_dir()
    if root is None:
        sys.exit("needs ../shared/data (GLUE)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    suffix = "" if args.lr == DEFAULT_LR else f"-lr{args.lr:g}"
    rows = []
    for task in args.tasks.split(","):
        name_of_task, folder, metrics, flags = TASKS[task]
        for seed in (int(s) for s in args.seeds.split(",")):
            for name, model in models.items():
                run_dir = out / f"{task}-{name}-s{seed}{suffix}"
                if (run_dir / "results.json").exists():
                    result = json.loads((run_dir / "results.json").read_text())
                elif name in to_run:
                    result = finetune(model, name_of_task, root / folder, run_dir, resume=False, seed=seed,
                                      lr=args.lr, **COMMON, **flags)
                else:
                    continue
                row = {"task": task, "model": name, "seed": seed, "seconds": round(result["wall_seconds"]),
                       **{m: round(result["dev"][m], 4) for m in metrics}}
                print(json.dumps(row), flush=True)
                rows.append(row)
    names = list(models)
    base = names[0]
    lines = ["| setting | metric | " + " | ".join(f"{n} (per seed; mean)" for n in names) + " | "
             + " | ".join(f"{n} - {base}" for n in names[1:]) + " |", "|---" * (2 + 2 * len(names) - 1) + "|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for metric in TASKS[task][2]:
            got = {n: [r[metric] for r in rows if r["task"] == task and r["model"] == n] for n in names}
            if not all(got.values()):
                continue
            mean = {n: statistics.mean(v) for n, v in got.items()}
            cells = [f"{' / '.join(f'{v:.4f}' for v in got[n])}; {mean[n]:.4f}" for n in names]
            diffs = [f"{mean[n] - mean[base]:+.4f}" for n in names[1:]]
            lines.append(f"| {task} | {metric} | " + " | ".join(cells + diffs) + " |")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"transfer{suffix}.md").write_text(table + "\n")
    record = {"rows": rows, "flags": {t: {**COMMON, "lr": args.lr, **TASKS[t][3]} for t in TASKS}, "models": models,
              "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": " ".join(sys.argv)}
    (out / f"transfer{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
