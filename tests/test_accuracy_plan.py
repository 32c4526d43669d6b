"""``benchmarks/accuracy.py``'s run table: every run that starts from another run's output (a general student, a
teacher) names a run of the table that comes before it, so ``accuracy.py run`` in table order never waits on a
missing checkpoint; and ``collect`` files the runs it finds into the summary rows the issue asks for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import accuracy  # noqa: E402


def test_every_run_starts_from_an_earlier_run_of_the_table():
    table = accuracy.runs()
    order = list(table)
    for name, args in table.items():
        for flag in ("--student", "--teacher"):
            if flag not in args:
                continue
            source = args[args.index(flag) + 1]
            if source == accuracy.MINILM:
                continue
            parent = Path(source).relative_to(accuracy.OUT).parts[0]
            assert parent in table, f"{name}: {flag} {source} is not a run of the table"
            assert order.index(parent) < order.index(name), f"{name} comes before {parent}, which it starts from"
        assert args[args.index("--task") + 1] in (*accuracy.TASKS, "general"), name


def test_collect_files_a_teacher_and_its_bf16_chain_student_into_one_row(tmp_path, monkeypatch):
    out, docs = tmp_path / "acc", tmp_path / "docs"
    monkeypatch.setattr(accuracy, "OUT", out)
    monkeypatch.setattr(accuracy, "DOCS", docs)
    finished = {"teacher-squad": {"task": "squad", "metric": "f1", "dev": {"exact_match": 56.0, "f1": 67.5}},
                "teacher-squad-bf16": {"task": "squad", "metric": "f1", "dev": {"exact_match": 55.0, "f1": 66.0}},
                "student-squad-bf16-1k": {"task": "squad", "metric": "f1", "student_dev": {"f1": 60.0}},
                "student-squad-bf16-1k-ep4": {"task": "squad", "metric": "f1", "student_dev": {"f1": 63.0}},
                "student-squad-bf16-5k": {"task": "squad", "metric": "f1", "student_dev": {"f1": 64.0},
                                          "teacher_dev": {"f1": 66.0}},
                "student-squad-bf16-10k": {"task": "squad", "metric": "f1", "student_dev": {"f1": 62.0},
                                           "teacher_dev": {"f1": 63.0}},
                # a task run only in the bf16 chain: its bf16 teacher and student are the row's own
                "teacher-qnli-bf16": {"task": "qnli", "metric": "accuracy", "dev": {"accuracy": 0.83}},
                "student-qnli-bf16": {"task": "qnli", "metric": "accuracy", "student_dev": {"accuracy": 0.69}}}
    for name, result in finished.items():
        (out / name).mkdir(parents=True)
        (out / name / "results.json").write_text(json.dumps(result))
    (out / "student-squad-bf16-1k" / "int8.json").write_text(json.dumps({"metrics": {"f1": 59.5}}))
    (docs).mkdir()
    (docs / "acc-speed-zen4.json").write_text(json.dumps({"student_best_vs_teacher_best": 1.3}))
    accuracy.collect()
    rows = json.loads((docs / "accuracy.json").read_text())
    assert [r["task"] for r in rows] == ["squad", "qnli"]  # no other teacher finished
    row, qnli = rows
    assert (qnli["teacher"], qnli["student"], qnli["precision"]) == (0.83, 0.69, "bf16 autocast")
    assert not any(k.startswith(("teacher_bf16", "student_bf16")) for k in qnli)
    # SQuAD's 0..100 scores are on the summary's 0..1 scale; the student has no fp32-chain run
    assert row["teacher"] == pytest.approx(0.675) and row["teacher_bf16"] == pytest.approx(0.66)
    assert row["student"] is None
    assert row["student_bf16_1k"] == pytest.approx(0.6) and row["student_bf16_1k_int8"] == pytest.approx(0.595)
    assert row["student_bf16_1k_ep4"] == pytest.approx(0.63) and row["student_bf16_1k_ep4_int8"] is None
    assert row["student_bf16_5k"] == pytest.approx(0.64) and "student_bf16_5k_cmd" in row
    assert row["speedup_zen4"] == 1.3 and "speedup_amx" not in row
    # the student nearest its own teacher (as scored in its run), not the highest score: 62 of 63 beats 64 of 66
    assert row["closest"]["run"] == "student-squad-bf16-10k" and row["closest"]["gap"] == pytest.approx(-0.01)
    assert qnli["closest"] is None  # its student's run recorded no teacher score
    assert json.loads((docs / "acc-student-squad-bf16-1k.json").read_text())["int8"] == {"f1": 59.5}


def test_closest_student_scores_a_seed_repeated_recipe_by_its_mean_not_its_luckiest_seed():
    def run(student, int8=None):
        return {"teacher_dev": {"spearman": 0.86}, "student_dev": {"spearman": student},
                **({"int8": {"spearman": int8}} if int8 is not None else {})}

    def score(scores):
        return (scores or {}).get("spearman")

    filed = {"student-stsb-a": run(0.855), "student-stsb-b": run(0.850, 0.849), "student-mrpc-b": run(0.9)}
    assert accuracy.closest_student("stsb", filed, score)["run"] == "student-stsb-a"
    # b's second seed lifts its mean (0.858) over a's one run; the lucky seed alone (0.866) is not what is reported
    filed["student-stsb-b-seed1"] = run(0.866, 0.867)
    best = accuracy.closest_student("stsb", filed, score)
    assert best["run"] == "student-stsb-b" and best["seeds"] == [0.850, 0.866]
    assert (best["student"], best["gap"], best["student_int8"]) == pytest.approx((0.858, -0.002, 0.858))
    filed["student-stsb-b-seed2"] = run(0.80)  # a bad third seed drags the recipe's mean under a's
    assert accuracy.closest_student("stsb", filed, score)["run"] == "student-stsb-a"
    assert "seeds" not in accuracy.closest_student("stsb", filed, score)
