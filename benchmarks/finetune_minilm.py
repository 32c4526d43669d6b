"""Real-data fine-tuning evidence: all-MiniLM-L6-v2 (and a tiny SqueezeBERT from scratch) on SST-2, MRPC, STS-B,
CoNLL-2003 and SQuAD v1.1, on CPU, with stated subsets (the machine is small and shared).

    .venv/bin/python benchmarks/finetune_minilm.py [--only sst2,conll] [--out out/finetune] [--threads 1]

Each run writes ``OUT/<run>/`` (``best/`` = the fine-tuned model with its tokenizer, ``results.json``, ``log.csv``,
``curve.png``); the table of all finished runs goes to ``OUT/summary.md`` and ``OUT/summary.json``.

SQuAD: the shared data has no SQuAD train file, so QA is fine-tuned on questions of SQuAD v1.1 *dev* articles that
are disjoint from the evaluated ones: the first articles (>= 500 questions) are evaluated, later articles train.
Both slices are written to ``OUT/data/`` (derived files, git-ignored) and named in the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from squeezebert.assets import minilm_dir, shared_data_dir
from squeezebert.finetune.run import finetune

COMMON = dict(batch_size=32, warmup=0.1, seed=42, progress=False)

# run name -> (model ("minilm" or a preset), task, data folder under shared data, options). Subsets are stated here.
RUNS: dict[str, tuple[str, str, str, dict]] = {
    "minilm-sst2": ("minilm", "sst2", "glue/SST-2", dict(limit_train=2000, epochs=1, max_length=64, lr=1e-4)),
    "minilm-conll": ("minilm", "conll", "conll2003", dict(limit_train=2000, epochs=1, max_length=128, lr=1e-4)),
    "minilm-stsb": ("minilm", "stsb", "glue/STS-B", dict(limit_train=1500, epochs=1, max_length=128, lr=1e-4)),
    # the 1-epoch STS-B run leaves a fresh regression head barely trained; the same subset for 3 epochs
    "minilm-stsb-3ep": ("minilm", "stsb", "glue/STS-B", dict(limit_train=1500, epochs=3, max_length=128, lr=1e-4)),
    "minilm-mrpc": ("minilm", "mrpc", "glue/MRPC", dict(limit_train=1600, epochs=1, max_length=128, lr=1e-4)),
    "tiny-sst2": ("tiny", "sst2", "glue/SST-2", dict(limit_train=2000, epochs=3, max_length=64, lr=1e-3)),
    "minilm-squad": ("minilm", "squad", "squad", dict(limit_train=600, epochs=1, max_length=192, lr=1e-4,
                                                       batch_size=16)),
}
SQUAD_EVAL_MIN_QUESTIONS = 500


def squad_slices(source: Path, out: Path) -> tuple[Path, Path, dict]:
    """Split SQuAD dev by article: the first articles with >= 500 questions are evaluated, the rest train."""
    document = json.loads(source.read_text(encoding="utf-8"))
    articles, evaluated, count = document["data"], [], 0
    while count < SQUAD_EVAL_MIN_QUESTIONS:
        article = articles[len(evaluated)]
        evaluated.append(article)
        count += sum(len(p["qas"]) for p in article["paragraphs"])
    train = articles[len(evaluated):]
    out.mkdir(parents=True, exist_ok=True)
    dev_path, train_path = out / "squad-dev-eval-slice.json", out / "squad-dev-train-slice.json"
    dev_path.write_text(json.dumps({"version": "1.1", "data": evaluated}), encoding="utf-8")
    train_path.write_text(json.dumps({"version": "1.1", "data": train}), encoding="utf-8")
    info = {"eval_articles": len(evaluated), "eval_questions": count, "train_articles": len(train),
            "train_questions_available": sum(len(p["qas"]) for a in train for p in a["paragraphs"])}
    return train_path, dev_path, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/finetune")
    parser.add_argument("--only", help="comma-separated run names (default: all, in order)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on the shared 2-core machine 2 threads were slower)")
    args = parser.parse_args()
    data_root, minilm = shared_data_dir(), minilm_dir()
    if data_root is None or minilm is None:
        sys.exit("needs ../shared/data and the pip-installed all-MiniLM-L6-v2")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    names = args.only.split(",") if args.only else list(RUNS)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in names:
        model, task, folder, options = RUNS[name]
        options = {**COMMON, **options}
        task_options, data_dir = {}, data_root / folder
        extra = {}
        if task == "squad":
            train_file, dev_file, extra = squad_slices(data_dir / "dev-v1.1.json", out / "data")
            task_options, data_dir = {"train_file": str(train_file), "dev_file": str(dev_file)}, None
        command = f"{sys.executable} benchmarks/finetune_minilm.py --only {name} --threads {args.threads}"
        print(f"== {name}: {model} on {task} {options}", flush=True)
        started = time.perf_counter()
        results = finetune(str(minilm) if model == "minilm" else model, task, data_dir, out / name,
                           task_options=task_options, resume=False, command=command, **options)
        results["squad_slices"] = extra or None
        summary[name] = {k: results[k] for k in ("task", "model", "metric", "best_metric", "dev", "steps",
                                                 "train_examples", "eval_examples", "train_wall_seconds",
                                                 "wall_seconds", "model_dir", "date")}
        summary[name].update(options=options, threads=args.threads, squad_slices=extra or None,
                             total_seconds=round(time.perf_counter() - started, 1))
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary[name], indent=2), flush=True)
    lines = ["| run | task | subset (train / eval) | steps | dev metrics | train s | total s |", "|---|" * 1 + "---|" * 6]
    for name, row in summary.items():
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in (row["dev"] or {}).items())
        lines.append(f"| {name} | {row['task']} | {row['train_examples']} / {row['eval_examples']} | {row['steps']} "
                     f"| {metrics} | {row['train_wall_seconds']} | {row['wall_seconds']} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
