from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from squeezebert import HEADS, preset
from squeezebert.checkpoint import load_model, save_model
from squeezebert.cli import COMMANDS, main


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as e:
        main(([command] if command else []) + ["--help"])
    assert e.value.code == 0
    assert "usage: squeezebert" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "squeezebert.cli", "info", "tiny"], capture_output=True, text=True)
    assert out.returncode == 0 and "| tiny |" in out.stdout


def test_info_table_and_json(capsys):
    assert main(["info", "squeezebert-uncased", "bert-base-uncased"]) == 0
    table = capsys.readouterr().out
    assert "| squeezebert-uncased | 12 | 768 | 4/4/4/1/4/4 | 51.09M |" in table
    assert "| bert-base-uncased | 12 | 768 | 1/1/1/1/1/1 | 109.48M |" in table
    assert main(["info", "tiny", "--json", "--seq-len", "64"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["seq_len"] == 64 and row["config"]["hidden_size"] == 32


def test_convert_bert_directory(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    bert.save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    assert main(["convert", str(tmp_path / "bert"), str(tmp_path / "out")]) == 0
    assert "bert checkpoint" in capsys.readouterr().out
    model = load_model(tmp_path / "out")
    assert type(model) is HEADS["sequence_classification"] and model.config.is_dense
    assert (tmp_path / "out" / "vocab.txt").exists()


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "squeezebert", "hidden_sise": 3}')
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "hidden_sise" in err and "Traceback" not in err
    save_model(HEADS["base"](preset("tiny")), tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"\x00" * 10)
    assert main(["convert", str(tmp_path / "ok"), str(tmp_path / "x")]) == 2
    assert "model.safetensors" in capsys.readouterr().err
