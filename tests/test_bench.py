"""``squeezebert bench`` end to end on the tiny config: every output is written and consistent (no timings checked)."""

from __future__ import annotations

import json

import pytest

from squeezebert.bench import GOALS, goals, run


@pytest.mark.parametrize("onnx", [False, True])
def test_quick_bench_on_tiny_writes_json_markdown_and_agreement(tmp_path, onnx):
    if onnx:
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[export]')")
    results = run(tmp_path, quick=True, rounds=2, baselines=False, onnx=onnx, model_preset="tiny")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["model_preset"] == "tiny" and saved["compiled"] is False
    names = [r["path"] for r in saved["headline_1x128"]]
    assert "squeezebert fp32 eager" in names and "squeezebert int8 eager" in names
    assert ("squeezebert onnx int8 (onnxruntime)" in names) == onnx
    for r in saved["headline_1x128"]:
        assert r["batch"] == 1 and r["seq"] == 128 and r["rounds"] == 2
        assert 0 < r["median_ms"] <= r["p90_ms"] and r["sequences_per_s"] > 0
    assert set(saved["gemm_probe_gflops"]) >= {"peak fp32", "peak int8"}
    agreement = saved["agreement_vs_fp32"]
    assert agreement["fp32"]["logits_max_abs_diff"] < 1e-4 and agreement["int8"]["hidden_cosine_min"] > 0.99
    if onnx:
        assert agreement["onnx fp32"]["hidden_max_abs_diff"] < 1e-4
        assert agreement["onnx int8"]["hidden_cosine_min"] > 0.99
    md = (tmp_path / "results.md").read_text()
    assert "| squeezebert fp32 eager |" in md and "## Goals" in md
    assert not (tmp_path / "latency_vs_seq.png").exists()  # one shape measured: no empty plots
    assert all(g["met"] is None for g in results["goals"])  # no baselines: nothing to compare, and it says so


def test_goals_pick_our_best_path_of_the_allowed_precisions():
    def row(path, ms):
        return {"path": path, "median_ms": ms}

    paths = {"a fp32": ("fp32", False), "b int8": ("int8", False), "transformers SqueezeBERT fp32": ("fp32", True),
             "transformers BERT-base int8 (quantize_dynamic)": ("int8", True)}
    results = {"paths": {n: {"precision": p, "baseline": b} for n, (p, b) in paths.items()},
               "headline_1x128": [row("a fp32", 40), row("b int8", 20), row("transformers SqueezeBERT fp32", 80),
                                  row("transformers BERT-base int8 (quantize_dynamic)", 50)],
               "throughput_32x128": []}
    g = {x["goal"]: x for x in goals(results)}
    fp32, reduced, throughput = (g[name] for name, *_ in GOALS)
    assert fp32["best_path"] == "a fp32" and fp32["ratio"] == 2.0 and fp32["met"]
    assert reduced["best_path"] == "b int8" and reduced["ratio"] == 2.5 and reduced["met"] is False
    assert throughput["met"] is None
