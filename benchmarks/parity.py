"""Parity figures with transformers (the reference): max abs differences, for the record (issue 2's evidence).

    python benchmarks/parity.py [--out docs/parity.md]

The tests (tests/test_parity.py) assert these stay under 1e-5; this script reuses their builders and prints the
actual figures: every head x two groupings x lengths 1/7/128/512 loaded from transformers, the reverse direction,
dense BERT heads, and the real all-MiniLM-L6-v2 on SST-2 dev sentences.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_parity as tp  # noqa: E402  (the tests' model builders and batches: one definition of the cases)

from squeezebert.assets import minilm_dir, shared_data_dir  # noqa: E402
from squeezebert.checkpoint import load_model, save_model  # noqa: E402
from squeezebert.config import SqueezeBertConfig  # noqa: E402
from squeezebert.model import HEADS  # noqa: E402

transformers = tp.transformers


class _Tmp:
    """tmp_path_factory stand-in for the test builders."""

    def __init__(self, root: str):
        self.root, self.n = Path(root), 0

    def mktemp(self, name: str) -> Path:
        self.n += 1
        path = self.root / f"{name}-{self.n}"
        path.mkdir()
        return path


def _diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, head: str) -> float:
    valid = mask.bool() if a.dim() == 3 and head != "multiple_choice" else None
    d = (a - b).abs() if valid is None else (a - b).abs()[valid]
    return d.max().item()


def _shape(t: tuple, head: str, length: int) -> tuple:
    return tuple(x.view(1, 3, length) for x in t) if head == "multiple_choice" else t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the tables to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lines = [f"# Parity with transformers {transformers.__version__} (max abs difference, fp32)", "",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}; "
             f"{time.strftime('%Y-%m-%d')}; command: `python benchmarks/parity.py`", ""]
    with tempfile.TemporaryDirectory() as tmp:
        factory = _Tmp(tmp)
        lines += ["## transformers SqueezeBERT checkpoints -> ours (padded batches of 3, masks, token types)", "",
                  "| head | grouping | len 1 | len 7 | len 128 | len 512 |", "|---|---|---|---|---|---|"]
        for head in tp.HF_SQUEEZEBERT:
            for grouping in ("paper", "uneven"):
                ref, directory = tp.hf_squeezebert(head, grouping, factory)
                ours = load_model(directory)
                cells = []
                for length in (1, 7, 128, 512):
                    ids, mask, types = _shape(tp.make_batch(length), head, length)
                    a, b = tp.run_both(ref, ours, ids, mask, types)
                    cells.append(f"{_diff(a, b, mask, head):.1e}")
                lines.append(f"| {head} | {grouping} | " + " | ".join(cells) + " |")
        lines += ["", "## ours saved -> transformers loads (paper grouping, length 16)", "", "| head | max abs diff |",
                  "|---|---|"]
        for head in tp.HF_SQUEEZEBERT:
            config = SqueezeBertConfig(**{**tp.TINY, "num_labels": 2 if head == "question_answering" else 3},
                                       **tp.GROUPINGS["paper"])
            torch.manual_seed(1)
            ours = HEADS[head](config).eval()
            with torch.no_grad():
                for p in ours.parameters():
                    p.add_(torch.randn_like(p) * 0.02)
            directory = factory.mktemp(f"ours-{head}")
            save_model(ours, directory)
            ref = getattr(transformers, tp.HF_SQUEEZEBERT[head]).from_pretrained(directory).eval()
            ids, mask, types = _shape(tp.make_batch(16), head, 16)
            a, b = tp.run_both(ref, ours, ids, mask, types)
            lines.append(f"| {head} | {_diff(a, b, mask, head):.1e} |")
        lines += ["", "## real all-MiniLM-L6-v2 (dense BERT) -> ours, vs transformers BertModel", ""]
        minilm, data = minilm_dir(), shared_data_dir()
        if minilm is None or data is None:
            lines.append("skipped: all-MiniLM-L6-v2 or ../shared/data is absent")
        else:
            tok = transformers.BertTokenizerFast.from_pretrained(minilm)
            rows = (data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
            batch = tok([r.split("\t")[0] for r in rows[:128]], padding=True, return_tensors="pt")
            ref = transformers.BertModel.from_pretrained(minilm).eval()
            ours = load_model(minilm)
            with torch.no_grad():
                a = ref(**batch).last_hidden_state
                b = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
            d = _diff(a, b, batch["attention_mask"], "base")
            lines.append(f"128 SST-2 dev sentences (padded to {batch['input_ids'].shape[1]} tokens): last hidden "
                         f"state max abs diff **{d:.1e}** (|values| up to {a.abs().max().item():.1f})")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
