"""Does pretraining help? Fine-tune a pretrained model and the same model from scratch, same flags, several seeds.

    .venv/bin/python benchmarks/pretrain_transfer.py --pretrained out/pretrain-small-cpu/final \
        --scratch out/pretrain-small-cpu-scratch [--tasks sst2-2k,mrpc] [--seeds 1,2] [--out out/pretrain-ft]

The scratch model is the pretraining config's initial weights (``build_model`` with the config's seed, saved before
any step), so the two runs differ only by pretraining. Each (setting, model, seed) writes ``OUT/<setting>-<model>-s<seed>/``;
the table (dev metric per seed, mean, difference) is printed and written to ``OUT/transfer.md`` / ``transfer.json``.
A run whose ``results.json`` exists is read, not redone, so ``--models scratch`` can go first while pretraining runs.
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
COMMON = dict(batch_size=32, lr=3e-4, warmup=0.1, progress=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--tasks", default="sst2-2k,mrpc", help=f"settings, of {list(TASKS)}")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--out", default="out/pretrain-ft")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="scratch,pretrained", help="which to fine-tune now (the table uses all "
                        "finished runs)")
    args = parser.parse_args()
    root = shared_data_dir()
    if root is None:
        sys.exit("needs ../shared/data (GLUE)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for task in args.tasks.split(","):
        name_of_task, folder, metrics, flags = TASKS[task]
        for seed in (int(s) for s in args.seeds.split(",")):
            for name, model in (("scratch", args.scratch), ("pretrained", args.pretrained)):
                run_dir = out / f"{task}-{name}-s{seed}"
                if (run_dir / "results.json").exists():
                    result = json.loads((run_dir / "results.json").read_text())
                elif name in args.models.split(","):
                    result = finetune(model, name_of_task, root / folder, run_dir, resume=False, seed=seed, **COMMON,
                                      **flags)
                else:
                    continue
                row = {"task": task, "model": name, "seed": seed, "seconds": round(result["wall_seconds"]),
                       **{m: round(result["dev"][m], 4) for m in metrics}}
                print(json.dumps(row), flush=True)
                rows.append(row)
    lines = ["| setting | metric | from scratch (per seed) | pretrained (per seed) | mean scratch | mean pretrained | "
             "difference |", "|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for metric in TASKS[task][2]:
            got = {n: [r[metric] for r in rows if r["task"] == task and r["model"] == n]
                   for n in ("scratch", "pretrained")}
            if not all(got.values()):
                continue
            mean = {n: statistics.mean(v) for n, v in got.items()}
            lines.append(f"| {task} | {metric} | {' / '.join(f'{v:.4f}' for v in got['scratch'])} | "
                         f"{' / '.join(f'{v:.4f}' for v in got['pretrained'])} | {mean['scratch']:.4f} | "
                         f"{mean['pretrained']:.4f} | {mean['pretrained'] - mean['scratch']:+.4f} |")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.md").write_text(table + "\n")
    record = {"rows": rows, "flags": {t: {**COMMON, **TASKS[t][3]} for t in TASKS}, "pretrained": args.pretrained,
              "scratch": args.scratch, "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": " ".join(sys.argv)}
    (out / "transfer.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
