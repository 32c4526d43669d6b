"""``squeezebert bench`` end to end on the tiny config: every output is written and consistent (no timings checked)."""

from __future__ import annotations

import json

import pytest

from squeezebert.bench import GOALS, ORT_BERT_INT8, ORT_SQUEEZEBERT_FP32, goals, run, slower_than_fp32


@pytest.mark.parametrize("onnx", [False, True])
def test_quick_bench_on_tiny_writes_json_markdown_and_agreement(tmp_path, onnx):
    if onnx:
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[export]')")
    results = run(tmp_path, quick=True, rounds=2, baselines=False, onnx=onnx, model_preset="tiny")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["model_preset"] == "tiny" and saved["compiled"] is False
    assert saved["cpu_class"] and f"CPU class: **{saved['cpu_class']}**" in (tmp_path / "results.md").read_text()
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


def test_goals_pick_our_best_path_of_the_allowed_precisions_and_engines():
    def row(path, ms):
        return {"path": path, "median_ms": ms}

    paths = {"a fp32": ("fp32", False, "pytorch"), "b int8": ("int8", False, "onnxruntime"),
             "c fp32 onnx": ("fp32", False, "onnxruntime"), "d bf16": ("bf16", False, "pytorch"),
             ORT_SQUEEZEBERT_FP32: ("fp32", True, "onnxruntime"), ORT_BERT_INT8: ("int8", True, "onnxruntime")}
    results = {"paths": {n: {"precision": p, "baseline": b, "engine": e} for n, (p, b, e) in paths.items()},
               "headline_1x128": [row("a fp32", 40), row("b int8", 20), row("c fp32 onnx", 30), row("d bf16", 45),
                                  row(ORT_SQUEEZEBERT_FP32, 36), row(ORT_BERT_INT8, 60)],
               "throughput_32x128": []}
    best, fp32, torch_fp32, throughput = (x for x in goals(results))
    assert [g["goal"] for g in (best, fp32, torch_fp32, throughput)] == [name for name, *_ in GOALS]
    assert best["best_path"] == "b int8" and best["ratio"] == 3.0 and best["met"]
    assert fp32["best_path"] == "c fp32 onnx" and fp32["ratio"] == 1.2 and fp32["met"]
    assert torch_fp32["best_path"] == "a fp32" and torch_fp32["ratio"] == 0.9 and torch_fp32["met"] is False
    assert throughput["met"] is None
    # a reduced-precision path slower than our fastest fp32 one is flagged, never the best
    assert slower_than_fp32(results) == {"headline_1x128": ["d bf16"]}
