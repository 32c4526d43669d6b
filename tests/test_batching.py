from __future__ import annotations

import pytest
import torch

from squeezebert.infer.batching import bucket_length, collate, plan_batches


def test_bucket_length():
    assert [bucket_length(n) for n in (1, 16, 17, 500, 512)] == [16, 16, 32, 512, 512]
    assert bucket_length(700) == 512 and bucket_length(5, multiple=8) == 8
    with pytest.raises(ValueError):
        bucket_length(0)


def test_plan_batches_covers_everything_once_within_budget():
    lengths = [3, 500, 40, 41, 7, 128, 128, 9, 300, 16] * 7
    batches = plan_batches(lengths, max_tokens=1024, max_batch=8)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 8
        assert bucket_length(max(lengths[i] for i in b)) * len(b) <= 1024
    # sorting by length pads far less than batching in arrival order with the same batch sizes
    def padded_tokens(groups):
        return sum(bucket_length(max(lengths[i] for i in g)) * len(g) for g in groups)

    arrival, start = [], 0
    for b in batches:
        arrival.append(list(range(start, start + len(b))))
        start += len(b)
    assert padded_tokens(batches) < 0.6 * padded_tokens(arrival)


def test_plan_batches_rejects_a_budget_below_one_row():
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches([10], max_tokens=100)


def test_collate_pads_to_the_bucket():
    batch = collate([{"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0]},
                     {"input_ids": [101] + [5] * 18 + [102], "token_type_ids": [0] * 10 + [1] * 10}])
    assert batch["input_ids"].shape == (2, 32)
    assert batch["attention_mask"].sum(1).tolist() == [3, 20]
    assert batch["token_type_ids"][1, 10:20].tolist() == [1] * 10 and batch["token_type_ids"][1, 20:].sum() == 0
    assert torch.equal(batch["input_ids"][0, 3:], torch.zeros(29, dtype=torch.long))
    with pytest.raises(ValueError, match="max_length"):
        collate([{"input_ids": [1] * 600}])
    with pytest.raises(ValueError, match="empty"):
        collate([])
