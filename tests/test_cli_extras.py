"""Small command-line items: ``--version``, GLUE submission folders from ``predict --split test --out DIR``, and
progress bars on ``evaluate`` / ``predict`` / ``export`` (on a terminal; ``--no-progress`` turns them off)."""

from __future__ import annotations

import io
import sys

import pytest

from squeezebert import __version__
from squeezebert.cli import main
from squeezebert.finetune.run import finetune
from test_finetune import FAST, sentiment_rows, write_sst2, write_vocab


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws its bar (it stays silent on pipes and in logs)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    root = tmp_path_factory.mktemp("sst2")
    data = write_sst2(root / "SST-2", n_train=16, n_dev=8)
    lines = ["index\tsentence"] + [f"{i}\t{text}" for i, (text, _) in enumerate(sentiment_rows(6, 2))]
    (data / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = finetune("tiny", "sst2", data, root / "run", tokenizer=write_vocab(root), max_steps=1, **FAST)
    return data, results["model_dir"]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"squeezebert {__version__}"


def test_predict_test_split_writes_the_glue_submission_layout(sst2, tmp_path, capsys):
    data, model = sst2
    out = tmp_path / "submission"  # does not exist yet: a folder is made, with GLUE's file name inside
    assert main(["predict", "--model", model, "--task", "sst2", "--data-dir", str(data), "--split", "test",
                 "--out", str(out)]) == 0
    rows = (out / "SST-2.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 7 and {r.split("\t")[1] for r in rows[1:]} <= {"0", "1"}
    assert str(out / "SST-2.tsv") in capsys.readouterr().out
    assert main(["predict", "--model", model, "--task", "sst2", "--data-dir", str(data), "--split", "test",
                 "--out", str(tmp_path / "mine.tsv")]) == 0
    assert (tmp_path / "mine.tsv").is_file()  # a file name is kept as given


def test_submission_names_per_task():
    from squeezebert.finetune.tasks import submission_name

    assert [submission_name(t, s) for t, s in [("sst2", "test"), ("mnli", "test"), ("mnli", "test_mismatched"),
                                               ("mnli-mm", "test"), ("ax", "test"), ("stsb", "test")]] == \
        ["SST-2.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "MNLI-mm.tsv", "AX.tsv", "STS-B.tsv"]


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_long_commands_show_progress_on_a_terminal(sst2, tmp_path, monkeypatch, capsys, command):
    data, model = sst2
    args = {"evaluate": ["evaluate", "--model", model, "--task", "sst2", "--data-dir", str(data)],
            "predict": ["predict", "--model", model, "the film was good", "bad"],
            "export": ["export", "--model", model, "--out", str(tmp_path / "onnx")]}[command]
    if command == "export":
        pytest.importorskip("onnxruntime")
    for flags, shown in (([], True), (["--no-progress"], False)):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert main(args + flags) == 0
        monkeypatch.undo()
        assert ("it/s" in terminal.getvalue() or "s/it" in terminal.getvalue() or "%|" in terminal.getvalue()) \
            is shown, terminal.getvalue()
    capsys.readouterr()
