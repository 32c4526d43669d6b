"""A tiny, deterministic training run used by the loop tests (also as a subprocess that gets SIGKILLed).

Usage: python tests/train_job.py OUTPUT_DIR MAX_STEPS SLEEP_SECONDS_PER_STEP
"""

from __future__ import annotations

import sys
import time

import torch

from squeezebert.config import preset
from squeezebert.model import SqueezeBertForSequenceClassification
from squeezebert.train.loop import ShuffledBatches, Trainer, TrainingArgs


def toy_features(n: int = 96, seed: int = 0) -> list[dict]:
    """Label 1 when token 7 occurs in the sequence: learnable by a tiny model in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(4, 12, (1,), generator=g))
        ids = torch.randint(10, 60, (length,), generator=g)
        if i % 2:
            ids[int(torch.randint(1, length, (1,), generator=g))] = 7
        rows.append({"input_ids": [2] + ids.tolist(), "labels": int((ids == 7).any())})
    return rows


def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, :len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


def tiny_model(seed: int = 0) -> SqueezeBertForSequenceClassification:
    torch.manual_seed(seed)
    return SqueezeBertForSequenceClassification(preset("tiny").replace(vocab_size=64, num_labels=2))


def run(output_dir: str, max_steps: int, sleep: float = 0.0, resume: bool = True, **overrides) -> Trainer:
    torch.set_num_threads(1)
    model = tiny_model()
    features = toy_features()
    batches = ShuffledBatches(features, batch_size=8, collate=collate, seed=3)

    def loss_fn(m, batch):
        if sleep:
            time.sleep(sleep)  # gives a killer time to strike mid-run; numerics are unaffected
        out = m(**batch)
        return out.loss, {}

    args = TrainingArgs(output_dir=output_dir, max_steps=max_steps, lr=1e-3, warmup=0.2, save_every=2,
                        keep_checkpoints=2, log_every=1, progress=False, **overrides)
    trainer = Trainer(model, args, batches, loss_fn=loss_fn)
    trainer.train(resume=resume)
    return trainer


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
