"""The ONNX folder export and its torch-free runtime: ``squeezebert export --format onnx --out DIR`` writes model.onnx +
config.json + tokenizer + model card, and ``pipeline(..., backend="onnxruntime")`` runs it in a process where
importing torch fails, with the PyTorch pipeline's results (within the tolerance below)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from squeezebert.checkpoint import save_model  # noqa: E402
from squeezebert.cli import main  # noqa: E402
from squeezebert.pipelines import pipeline  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402
from helpers import perturbed  # noqa: E402
from test_finetune import write_vocab  # noqa: E402

TEXTS = ["the film was good", "a really very lovely and nice plot", "bad", "the cast was dull ."]
# The export's own check bounds logits by 1e-4 (onnxruntime reorders float sums); probabilities and pooled vectors
# move less than the logits do.
TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A classifier and an encoder checkpoint (perturbed weights, real tokenizer), each exported to a folder."""
    root = tmp_path_factory.mktemp("onnx")
    tok = Tokenizer.from_vocab(write_vocab(root))
    made = {}
    for head, extra in (("sequence_classification", {"id2label": {0: "neg", 1: "pos", 2: "mixed"}}), ("base", {})):
        checkpoint = save_model(perturbed(head, scale=0.3, vocab_size=tok.vocab_size, **extra), root / head,
                                tokenizer=tok)
        assert main(["export", "--model", str(checkpoint), "--out", str(root / f"{head}-onnx"), "--no-progress"]) == 0
        made[head] = (checkpoint, root / f"{head}-onnx")
    return made


def run_without_torch(code: str) -> object:
    """Run ``code`` in a fresh interpreter in which ``import torch`` fails; it prints JSON, which is returned."""
    blocker = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # any `import torch` (or torch.x) now raises ImportError
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_export_writes_a_folder_with_config_tokenizer_and_card(folders, tmp_path, capsys):
    checkpoint, folder = folders["sequence_classification"]
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "vocab.txt", "README.md"} <= names
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos", "2": "mixed"}
    card = (folder / "README.md").read_text()
    assert "squeezebert export --model" in card and "max abs diff vs PyTorch" in card and str(checkpoint) in card
    # a path ending in .onnx keeps the single-file form
    assert main(["export", "--model", str(checkpoint), "--out", str(tmp_path / "alone.onnx"), "--no-progress"]) == 0
    assert (tmp_path / "alone.onnx").is_file() and not (tmp_path / "config.json").exists()
    (tmp_path / "notes").write_text("not a folder")
    assert main(["export", "--model", str(checkpoint), "--out", str(tmp_path / "notes"), "--no-progress"]) == 2
    assert "notes is a file; the ONNX folder export writes a directory" in capsys.readouterr().err


def test_onnx_pipelines_run_without_torch_and_match_pytorch(folders):
    (cls_ckpt, cls_onnx), (enc_ckpt, enc_onnx) = folders["sequence_classification"], folders["base"]
    got = run_without_torch(f"""
        import json
        from squeezebert.pipelines import pipeline
        from squeezebert.onnx_backend import OnnxModel
        texts = {TEXTS!r}
        classify = pipeline("sentiment-analysis", model={str(cls_onnx)!r})  # backend picked from the folder
        embed = pipeline("feature-extraction", model={str(enc_onnx)!r}, backend="onnxruntime", pooling="mean")
        model = OnnxModel({str(cls_onnx)!r})
        enc = model.tokenizer(texts[:2], return_tensors=None)
        logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])["logits"]
        print(json.dumps({{"classify": classify(texts, top_k=None), "rich": classify.run(texts),
                          "embed": embed(texts),
                          "tokens": pipeline("feature-extraction", model={str(enc_onnx)!r})(texts[0]),
                          "logits": logits.tolist(), "runner": type(classify.runner).__name__,
                          "torch": [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m]]}}))
    """)
    assert got["runner"] == "OnnxModel" and got["torch"] == []
    torch_classify = pipeline("sentiment-analysis", model=cls_ckpt, backend="torch")
    want = torch_classify(TEXTS, top_k=None)
    for ours, theirs in zip(got["classify"], want):
        assert [r["label"] for r in ours] == [r["label"] for r in theirs]
        assert [r["score"] for r in ours] == pytest.approx([r["score"] for r in theirs], abs=TOLERANCE)
    assert [r["label"] for r in got["rich"]] == [r["label"] for r in torch_classify.run(TEXTS)]
    embed = pipeline("feature-extraction", model=enc_ckpt, pooling="mean")
    assert np.asarray(got["embed"]) == pytest.approx(np.asarray(embed(TEXTS)), abs=TOLERANCE)
    tokens = pipeline("feature-extraction", model=enc_ckpt)(TEXTS[0])  # transformers' shape: (1, tokens, hidden)
    assert np.asarray(got["tokens"]) == pytest.approx(np.asarray(tokens), abs=TOLERANCE)
    tok = Tokenizer.from_pretrained(cls_ckpt)
    enc = tok(TEXTS[:2], return_tensors="pt")
    from squeezebert.checkpoint import load_model

    reference = load_model(cls_ckpt)(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits
    assert np.asarray(got["logits"]) == pytest.approx(reference.detach().numpy(), abs=TOLERANCE)


def test_onnx_errors_are_clear(folders, tmp_path):
    _, cls_onnx = folders["sequence_classification"]
    with pytest.raises(ValueError, match="feature-extraction.*needs a base model with output.*last_hidden_state.*"
                                         "--head base"):
        pipeline("feature-extraction", model=cls_onnx)
    with pytest.raises(ValueError, match="precision='int8' applies to the torch backend"):
        pipeline("text-classification", model=cls_onnx, precision="int8")
    with pytest.raises(FileNotFoundError, match="no model.onnx"):
        pipeline("text-classification", model=tmp_path, backend="onnxruntime")
    from squeezebert.onnx_backend import OnnxModel

    model = OnnxModel(cls_onnx)
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, \d+\)"):
        model(np.array([[1, 5000]]))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(np.array([[1, 2, 3]]), np.array([[1, 1]]))
