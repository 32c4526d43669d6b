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
import statistics
import sys
import time
from pathlib import Path

import torch

from squeezebert.assets import shared_data_dir
from squeezebert.bench import machine_description
from squeezebert.fileio import write_json
from squeezebert.finetune.run import finetune
from squeezebert.pretrain.run import read_history

# setting -> (task, data folder under ../shared/data, the metrics to report, fine-tuning flags). Subsets stated here:
# pretraining is expected to matter most when labelled data is scarce, so SST-2 is run at two sizes.
TASKS: dict[str, tuple[str, str, tuple[str, ...], dict]] = {
    "sst2-2k": ("sst2", "glue/SST-2", ("accuracy",), dict(limit_train=2000, epochs=5, max_length=64)),
    "sst2-8k": ("sst2", "glue/SST-2", ("accuracy",), dict(limit_train=8000, epochs=3, max_length=64)),
    "sst2": ("sst2", "glue/SST-2", ("accuracy",), dict(epochs=2, max_length=64)),  # all 67,349 sentences
    "mrpc": ("mrpc", "glue/MRPC", ("f1", "accuracy"), dict(epochs=3, max_length=128)),  # all 3,668 training pairs
    "stsb": ("stsb", "glue/STS-B", ("spearman", "pearson"), dict(epochs=5, max_length=128)),  # all 5,749 pairs
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
    parser.add_argument("--pretrain-dir", help="the pretraining run's output_dir: its held-out MLM/SOP curve and "
                        "summary go into the JSON record beside the fine-tuning scores")
    parser.add_argument("--json", help="also write the record here (e.g. docs/results/pretrain-transfer.json)")
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
    # The verdict issue 19 asks for: a model "beats" the baseline on a setting when its mean is higher by more than
    # the seed spread (max - min over seeds) of either model.
    lines = ["| setting | metric | " + " | ".join(f"{n} (per seed; mean)" for n in names) + " | "
             + " | ".join(f"{n} - {base} (spread; beats?)" for n in names[1:]) + " |",
             "|---" * (2 + 2 * len(names) - 1) + "|"]
    verdicts = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for metric in TASKS[task][2]:
            got = {n: [r[metric] for r in rows if r["task"] == task and r["model"] == n] for n in names}
            if not got[base]:
                continue
            mean = {n: statistics.mean(v) for n, v in got.items() if v}
            cells = [f"{' / '.join(f'{v:.4f}' for v in got[n])}; {mean[n]:.4f}" if got[n] else "not run"
                     for n in names]
            diffs = []
            for n in names[1:]:
                if not got[n]:
                    diffs.append("-")
                    continue
                spread = max(max(got[m]) - min(got[m]) for m in (base, n))
                beats = mean[n] - mean[base] > spread and len(got[n]) > 1
                diffs.append(f"{mean[n] - mean[base]:+.4f} ({spread:.4f}; {'yes' if beats else 'no'})")
                verdicts.append({"setting": task, "metric": metric, "model": n, "baseline": base,
                                 "mean": round(mean[n], 4), "baseline_mean": round(mean[base], 4),
                                 "difference": round(mean[n] - mean[base], 4), "spread": round(spread, 4),
                                 "beats_by_more_than_spread": beats, "seeds": len(got[n])})
            lines.append(f"| {task} | {metric} | " + " | ".join(cells + diffs) + " |")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"transfer{suffix}.md").write_text(table + "\n")
    record = {"rows": rows, "verdicts": verdicts,
              "flags": {t: {**COMMON, "lr": args.lr, **TASKS[t][3]} for t in TASKS}, "models": models,
              "machine": machine_description(args.threads), "threads": args.threads,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv)}
    if args.pretrain_dir:
        record["pretraining"] = pretraining_record(Path(args.pretrain_dir))
    write_json(out / f"transfer{suffix}.json", record)
    if args.json:
        write_json(args.json, record)
    return 0


def pretraining_record(directory: Path) -> dict:
    """The pretraining run behind the pretrained model: its summary and its held-out evaluations (the curves)."""
    summary = json.loads((directory / "summary.json").read_text())
    curve = [{k: v for k, v in row.items() if k == "global_step" or k.startswith("eval_")}
             for row in read_history(directory, len(summary["phases"])) if any(k.startswith("eval_") for k in row)]
    return {"output_dir": str(directory), "phases": summary.get("phases"), "config": summary.get("config"),
            "held_out": curve}


if __name__ == "__main__":
    sys.exit(main())
