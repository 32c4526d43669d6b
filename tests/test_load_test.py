"""The pure helpers of ``benchmarks/load_test.py``: several ``--model LABEL=DIR``, per-model flags, the answer check
and the summary over rounds (no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="the load test needs httpx")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from load_test import correct, parse_model_args, parse_models, summarize  # noqa: E402


def test_models_are_labelled_and_a_plain_dir_by_its_folder_name():
    assert parse_models(["out/serve/minilm-cls"]) == {"minilm-cls": "out/serve/minilm-cls"}
    assert parse_models(["teacher=out/acc/teacher-sst2/best", "student=out/serve/student-sst2"]) == {
        "teacher": "out/acc/teacher-sst2/best", "student": "out/serve/student-sst2"}
    assert list(parse_models(["b=x", "a=y"])) == ["b", "a"]  # the order given: the first is the baseline
    assert parse_models(["out/k=v/model"]) == {"model": "out/k=v/model"}  # an '=' inside a path is no label
    with pytest.raises(ValueError, match="twice"):
        parse_models(["a/best", "b/best"])


def test_model_args_add_up_per_label_and_name_a_known_label():
    flags = parse_model_args(["s=--precision int8", "s=--max-queue 64"], ["t", "s"])
    assert flags == {"t": [], "s": ["--precision", "int8", "--max-queue", "64"]}
    for bad in ("x=--precision int8", "--precision int8"):
        with pytest.raises(ValueError, match="LABEL=FLAGS"):
            parse_model_args([bad], ["t", "s"])


def test_correct_allows_a_label_swap_only_at_a_near_tie():
    want = {"label": "1", "scores": {"0": 0.3, "1": 0.7}}
    assert correct({"label": "1", "scores": {"0": 0.30005, "1": 0.69995}}, want)
    assert not correct({"label": "1", "scores": {"0": 0.32, "1": 0.68}}, want)  # fp32: 1e-4
    assert correct({"label": "1", "scores": {"0": 0.32, "1": 0.68}}, want, tol=0.05)
    tie = {"label": "1", "scores": {"0": 0.48, "1": 0.52}}
    assert correct({"label": "0", "scores": {"0": 0.51, "1": 0.49}}, tie, tol=0.05)  # margin 0.04 < 2 tol
    assert not correct({"label": "0", "scores": {"0": 0.51, "1": 0.49}}, want, tol=0.05)


def level(model: str, rnd: int, c: int, rps: float, p50: float) -> dict:
    return {"model": model, "round": rnd, "concurrency": c, "throughput_rps": rps, "p50_ms": p50}


def test_summary_takes_medians_over_rounds_and_ratios_to_the_first_model():
    levels = {"batched": [level("teacher", 1, 8, 10.0, 800), level("student", 1, 8, 30.0, 250),
                          level("teacher", 2, 8, 12.0, 700), level("student", 2, 8, 20.0, 400),
                          level("teacher", 3, 8, 11.0, 750), level("student", 3, 8, 25.0, 300)]}
    summary = summarize(levels, ["teacher", "student"])
    assert summary["baseline"] == "teacher"
    assert summary["median"]["batched"]["teacher"]["8"] == {"throughput_rps": 11.0, "p50_ms": 750, "rounds": 3}
    assert summary["median"]["batched"]["student"]["8"] == {"throughput_rps": 25.0, "p50_ms": 300, "rounds": 3}
    assert summary["throughput_ratio"] == {"batched": {"student": {"8": round(25.0 / 11.0, 2)}}}


def test_one_model_has_medians_and_no_ratio():
    summary = summarize({"batched": [level("m", 1, 1, 5.0, 200), level("m", 1, 8, 9.0, 900)]}, ["m"])
    assert set(summary["median"]["batched"]["m"]) == {"1", "8"} and "throughput_ratio" not in summary
