"""The demo end to end on a tiny dense teacher: every step runs and the report names the served model."""

from __future__ import annotations

import json

import torch

from squeezebert.checkpoint import load_model, save_model
from squeezebert.config import preset
from squeezebert.demo import run
from squeezebert.model import SqueezeBertModel
from squeezebert.tokenizer import Tokenizer
from test_distill import sample_vocab


def test_demo_runs_end_to_end_on_a_tiny_teacher(tmp_path):
    torch.manual_seed(0)
    vocab = sample_vocab(tmp_path)
    teacher = tmp_path / "tiny-teacher"
    save_model(SqueezeBertModel(preset("tiny-dense")), teacher, tokenizer=Tokenizer.from_vocab(vocab))
    out = tmp_path / "demo"
    results = run(out, teacher, limit_train=64, limit_eval=32, teacher_epochs=1, student_epochs=1,
                  bench_rounds=2, reference_shapes=False, export_onnx=False, parity=False, threads=1)
    assert set(results["dev"]) == {"dense teacher fp32", "squeezed student fp32", "squeezed student int8"}
    assert all(0.0 <= v <= 1.0 for v in results["dev"].values())
    assert set(results["latency_ms_1x128"]) == {"dense teacher fp32", "student fp32", "student int8"}
    student_dir = results["exported"]["checkpoint"]
    assert load_model(student_dir).config.q_groups == 4
    report = (out / "report.md").read_text()
    assert f"squeezebert serve {student_dir}" in report and (out / "demo.png").is_file()
    assert json.loads((out / "results.json").read_text())["task"] == "sst2"
