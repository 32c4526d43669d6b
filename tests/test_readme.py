"""The README's Python examples, run as written: each ```python block in order, in one namespace, in a temporary
directory, with the README's placeholder paths and the paper-size preset replaced by tiny stand-ins. An example
that no longer matches the API fails here."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezebert import HEADS, preset
from squeezebert.checkpoint import copy_sentence_transformers_files, save_model
from squeezebert.tokenizer import Tokenizer
from test_finetune import write_sst2, write_vocab

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture
def stand_ins(tmp_path, minilm) -> dict[str, str]:
    """README placeholder -> a tiny real thing of the same kind."""
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    tok = Tokenizer.from_vocab(write_vocab(tmp_path))
    torch.manual_seed(0)
    made = {"path/to/checkpoint": save_model(HEADS["sequence_classification"](preset(
                "tiny", vocab_size=tok.vocab_size)), tmp_path / "classifier", tokenizer=tok),
            "path/to/bert": save_model(HEADS["base"](preset("tiny-dense", vocab_size=tok.vocab_size)),
                                       tmp_path / "bert", tokenizer=tok),
            "path/to/sentence-model": save_model(HEADS["base"](preset("tiny-dense", vocab_size=tok.vocab_size)),
                                                 tmp_path / "sentence-model", tokenizer=tok),
            "../shared/data/glue/SST-2": write_sst2(tmp_path / "SST-2")}
    copy_sentence_transformers_files(minilm, made["path/to/sentence-model"], hidden_size=32)  # its pooling files
    made["path/to/dense-bert"] = made["path/to/bert"]
    return {key: str(value) for key, value in made.items()} | {'"squeezebert-uncased"': '"tiny"'}


def test_readme_python_examples_run(tmp_path, stand_ins, monkeypatch):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4, "the README's Python examples moved: update this test's reading of them"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        for placeholder, real in stand_ins.items():
            block = block.replace(placeholder, real)
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)  # noqa: S102
    # what the examples claim, checked on what they left behind
    assert namespace["out"][0] is namespace["out"].logits
    assert (work / "out" / "sst2" / "best" / "README.md").is_file() and (work / "my-model" / "config.json").is_file()
    assert namespace["vectors"] == pytest.approx(np.asarray(namespace["same"]), abs=1e-5)
    assert {"model.onnx", "config.json", "tokenizer.json", "README.md"} <= set(os.listdir(work / "out" / "sst2-onnx"))
