"""Checkpoint I/O: round trips, head choice, and every way a checkpoint can be wrong."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import helpers

from squeezebert import HEADS, preset
from squeezebert.checkpoint import CheckpointError, load_model, save_model


def perturbed(head: str, **config_changes):
    return helpers.perturbed(head, scale=0.02, **config_changes)


def forward(model, length=9):
    ids = torch.randint(1, model.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(ids)


@pytest.mark.parametrize("head", list(HEADS))
def test_round_trip_is_exact(head, tmp_path):
    model = perturbed(head)
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    assert type(again) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    if head == "multiple_choice":
        return  # its 3-d inputs are exercised by the parity tests
    a, b = forward(model), forward(again)
    assert torch.equal(a.last_hidden_state if a.head_logits() is None else a.head_logits(),
                       b.last_hidden_state if b.head_logits() is None else b.head_logits())


def test_headless_checkpoint_initialises_and_reports_the_head(tmp_path):
    save_model(perturbed("base"), tmp_path)
    model, report = load_model(tmp_path, head="sequence_classification", num_labels=5, return_report=True)
    assert model.classifier.out_features == 5
    assert report.missing == ["classifier.weight", "classifier.bias"]
    assert "classifier.weight" in report.summary()


def test_head_weights_unused_by_the_bare_encoder_are_reported(tmp_path):
    save_model(perturbed("sequence_classification"), tmp_path)
    model, report = load_model(tmp_path, head="base", return_report=True)
    assert type(model).__name__ == "SqueezeBertModel"
    assert sorted(report.unexpected) == ["classifier.bias", "classifier.weight"] and report.missing == []


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    save_model(perturbed("sequence_classification", num_labels=3), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"classifier\.(weight|bias): checkpoint has \(3(, 32)?,?\).*expects \(2(, 32)?,?\)"):
        load_model(tmp_path)


def test_truncated_safetensors_names_the_file(tmp_path):
    save_model(perturbed("base"), tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        load_model(tmp_path)


def test_missing_weights_and_missing_directory(tmp_path):
    preset("tiny").save(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        load_model(tmp_path / "nope")


def test_pytorch_bin_is_read_weights_only(tmp_path):
    model = perturbed("masked_lm")
    save_model(model, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert torch.equal(load_model(tmp_path).cls.predictions.bias, model.cls.predictions.bias)

    class Evil:  # an arbitrary object: weights_only refuses to unpickle it
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*weights-only"):
        load_model(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_model(tmp_path)


def test_sharded_safetensors(tmp_path):
    model = perturbed("base")
    save_model(model, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    keys = sorted(state)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(tmp_path / name))
    index = {"weight_map": {k: name for name, names in shards.items() for k in names}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert torch.equal(forward(load_model(tmp_path)).last_hidden_state, forward(model).last_hidden_state)


def test_padded_vocabulary_and_tied_decoder(tmp_path):
    """The hub SqueezeBERT configs have 30,528 embedding rows for a 30,522-token vocab: rows past the tokenizer's
    vocabulary are carried, and the MLM decoder is the (tied) embedding matrix."""
    model = perturbed("masked_lm", vocab_size=1008)
    save_model(model, tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "cls.predictions.decoder.weight" not in stored  # tied: stored once, as the embeddings
    state = dict(stored)
    state["cls.predictions.decoder.weight"] = state["transformer.embeddings.word_embeddings.weight"].clone()
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"].clone()
    save_file(state, str(tmp_path / "model.safetensors"))  # as older transformers wrote it
    again, report = load_model(tmp_path, return_report=True)
    assert report.unexpected == [] and report.missing == []
    logits = forward(again).logits
    assert logits.shape[-1] == 1008
    assert torch.equal(logits, forward(model).logits)
    with torch.no_grad():  # a change to the embeddings is a change to the decoder
        again.transformer.embeddings.word_embeddings.weight[5].add_(1.0)
    assert not torch.equal(forward(again).logits, logits)
