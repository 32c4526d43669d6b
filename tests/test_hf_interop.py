"""The tools users already have work with our models unchanged, each tested with the real library: our outputs
behave like transformers' ``ModelOutput``; ``transformers.Trainer`` fine-tunes our classifier; label names round-trip
through config.json into transformers; a squeezed sentence-transformers model loads with ``SentenceTransformer``;
every checkpoint we write carries a model card."""

from __future__ import annotations

import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from squeezebert import SqueezeBertConfig, SqueezeBertForSequenceClassification, preset
from squeezebert.checkpoint import load_model, save_model
from squeezebert.model import HEADS, ModelOutput
from squeezebert.tokenizer import Tokenizer
from helpers import perturbed
from test_finetune import FAST, write_sst2, write_vocab

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here may reach the network: the Hub libraries are told so (and would fail loudly if they tried)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------------------------------------- 1. ModelOutput


def test_outputs_index_like_transformers_model_outputs():
    model = perturbed("sequence_classification", num_labels=3)
    ids = torch.randint(5, 1000, (2, 9))
    ours = model(ids, labels=torch.tensor([0, 2]), output_hidden_states=True)
    assert isinstance(ours, dict) and list(ours.keys()) == ["loss", "logits", "hidden_states"]
    assert ours[0] is ours.loss and ours[1] is ours["logits"] and ours[-1] is ours.hidden_states
    assert ours[1:] == (ours.logits, ours.hidden_states) and ours.to_tuple() == tuple(ours.values())
    assert "loss" in ours and "attentions" not in ours and ours.attentions is None
    with pytest.raises(KeyError):
        ours["attentions"]  # None fields are not keys, as in transformers
    again = pickle.loads(pickle.dumps(ours))
    assert list(again) == list(ours) and torch.equal(again.logits, ours.logits)
    out = ModelOutput(logits=torch.ones(1))
    out.loss = torch.zeros(())  # set after a later field: the tuple stays in field order
    assert list(out) == ["loss", "logits"] and out[0] is out.loss
    out.loss = None
    assert list(out) == ["logits"]
    with pytest.raises(KeyError, match="not a model output field"):
        out["logitz"] = torch.ones(1)
    with pytest.raises(TypeError):
        out.update(loss=torch.ones(1))


@pytest.mark.parametrize("head, hf_class", [
    ("sequence_classification", "SqueezeBertForSequenceClassification"),
    ("token_classification", "SqueezeBertForTokenClassification"),
    ("question_answering", "SqueezeBertForQuestionAnswering"),
    ("masked_lm", "SqueezeBertForMaskedLM"),
    ("base", "SqueezeBertModel"),
])
def test_output_tuples_match_transformers_head_by_head(tmp_path, head, hf_class):
    model = perturbed(head)
    save_model(model, tmp_path)
    theirs_model = getattr(transformers, hf_class).from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 1000, (2, 7))
    with torch.no_grad():
        ours, theirs = model(ids), theirs_model(input_ids=ids)
    assert list(ours.keys()) == list(theirs.keys())
    for a, b in zip(ours.to_tuple(), theirs.to_tuple()):
        assert torch.allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------------------------------- 1. Trainer


def cue_dataset(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Label 1 for texts of tokens 10..499, label 0 for tokens 500..999: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(10, 500, (12,), generator=g) + (0 if i % 2 else 490)
        ids[0] = 2
        rows.append({"input_ids": ids, "attention_mask": torch.ones(12, dtype=torch.long),
                     "token_type_ids": torch.zeros(12, dtype=torch.long), "labels": torch.tensor(i % 2)})
    return rows


def test_transformers_trainer_fine_tunes_our_classifier_and_its_checkpoint_loads_back(tmp_path):
    torch.manual_seed(0)
    model = SqueezeBertForSequenceClassification(preset("tiny", id2label={0: "neg", 1: "pos"}))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=40, per_device_train_batch_size=8, learning_rate=5e-3,
        lr_scheduler_type="constant", logging_steps=5, save_strategy="steps", save_steps=40, report_to=[], use_cpu=True,
        dataloader_num_workers=0, seed=0, disable_tqdm=True)

    def accuracy(prediction) -> dict[str, float]:
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    trainer = transformers.Trainer(model=model, args=args, train_dataset=cue_dataset(64, 0),
                                   eval_dataset=cue_dataset(32, 1), compute_metrics=accuracy)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) == 8 and losses[-1] < 0.5 * losses[0], losses
    metrics = trainer.evaluate()
    assert metrics["eval_accuracy"] == 1.0 and metrics["eval_loss"] < losses[0]
    predictions = trainer.predict(cue_dataset(8, 2)).predictions
    assert predictions.shape == (8, 2)  # the logits alone: nothing but loss and logits in the output tuple

    # Trainer's checkpoint holds the weights (a non-transformers model gets no config.json from it): with the
    # config written beside them, our loader reads it as it is
    checkpoint = tmp_path / "run" / "checkpoint-40"
    assert (checkpoint / "model.safetensors").is_file()
    model.config.replace(architectures=[model.architecture]).save(checkpoint)
    loaded = load_model(checkpoint)
    batch = cue_dataset(4, 3)
    ids = torch.stack([row["input_ids"] for row in batch])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    # and save_pretrained gives a checkpoint both we and transformers load, with the labels
    model.save_pretrained(tmp_path / "final")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "final").eval()
    with torch.no_grad():
        assert torch.allclose(theirs(input_ids=ids).logits, model(ids).logits, atol=1e-5)
    assert theirs.config.id2label == {0: "neg", 1: "pos"} and theirs.config.label2id == {"neg": 0, "pos": 1}


# ---------------------------------------------------------------------------------------------- 2. labels


def test_fine_tuned_labels_are_consistent_and_named_from_the_data(tmp_path):
    from squeezebert.finetune.run import finetune

    vocab = write_vocab(tmp_path)
    data = tmp_path / "MNLI"
    data.mkdir()
    gold = ["entailment", "neutral", "contradiction"]
    lines = ["index\tsentence1\tsentence2\tgold_label"] + [
        f"{i}\tthe film was good\tthe plot was {'good' if i % 3 == 0 else 'bad'}\t{gold[i % 3]}" for i in range(24)]
    for name in ("train.tsv", "dev_matched.tsv"):
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = finetune("tiny", "mnli", data, tmp_path / "run", tokenizer=vocab, max_steps=2, **FAST)
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["id2label"] == {"0": "contradiction", "1": "entailment", "2": "neutral"}
    assert saved["label2id"] == {"contradiction": 0, "entailment": 1, "neutral": 2}
    theirs = transformers.AutoConfig.from_pretrained(results["model_dir"])
    assert theirs.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}
    assert theirs.label2id == {"contradiction": 0, "entailment": 1, "neutral": 2}
    # the binary GLUE tasks keep their data's label values, now with a matching label2id
    run = finetune("tiny", "sst2", write_sst2(tmp_path / "SST-2", 16, 8), tmp_path / "sst", tokenizer=vocab,
                   max_steps=1, **FAST)
    assert json.loads((tmp_path / "sst" / "best" / "config.json").read_text())["label2id"] == {"0": 0, "1": 1}
    assert load_model(run["model_dir"]).config.label2id == {"0": 0, "1": 1}


def test_stale_label2id_of_older_checkpoints_is_rederived(tmp_path, caplog):
    config = preset("tiny").to_dict() | {"id2label": {"0": "0", "1": "1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1}}
    with caplog.at_level(logging.WARNING):
        loaded = SqueezeBertConfig.from_dict(config)
    assert loaded.label2id == {"0": 0, "1": 1} and "does not match id2label" in caplog.text
    assert preset("tiny").replace(id2label={0: "a", 1: "b", 2: "c"}).label2id == {"a": 0, "b": 1, "c": 2}
    assert preset("tiny", id2label={0: "x", 1: "y"}).replace(num_labels=3).label2id == {
        "LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}


# ------------------------------------------------------------------------------------------ 4. sentence-transformers


@pytest.fixture(scope="module")
def squeezed_minilm(minilm, tmp_path_factory):
    """The pip-installed all-MiniLM-L6-v2 squeezed with our squeeze() and saved as our CLI saves it."""
    from squeezebert.distill.squeeze import save_squeezed, squeeze

    out = tmp_path_factory.mktemp("st") / "squeezed"
    save_squeezed(squeeze(load_model(minilm)), out, tokenizer_from=minilm, command="squeezebert squeeze ...")
    return out


def test_a_squeezed_sentence_transformer_loads_with_sentence_transformers(squeezed_minilm, minilm):
    st = pytest.importorskip("sentence_transformers")
    from squeezebert.pipelines import pipeline

    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json", "README.md"):
        assert (squeezed_minilm / name).is_file(), name
    assert json.loads((squeezed_minilm / "config.json").read_text())["model_type"] == "squeezebert"
    model = st.SentenceTransformer(str(squeezed_minilm), device="cpu", local_files_only=True)
    assert type(model[0].auto_model).__name__ == "SqueezeBertModel"  # transformers' own SqueezeBERT runs it
    texts = ["a lovely film", "the cat sat on the mat", "shares fell sharply on friday"]
    theirs = model.encode(texts)
    ours = pipeline("feature-extraction", model=squeezed_minilm, pooling="mean", normalize=True)(texts)
    assert np.linalg.norm(theirs, axis=1) == pytest.approx(1.0, abs=1e-5)  # MiniLM's Normalize module came along
    assert np.asarray(ours) == pytest.approx(theirs, abs=1e-5)


def test_convert_and_distill_keep_the_sentence_transformers_files(tmp_path, minilm):
    st = pytest.importorskip("sentence_transformers")
    from squeezebert.cli import main
    from squeezebert.distill.distill import distill_general

    assert main(["convert", str(minilm), str(tmp_path / "converted")]) == 0
    assert st.SentenceTransformer(str(tmp_path / "converted"), device="cpu", local_files_only=True).encode(
        ["a test"]).shape == (1, 384)
    # general distillation into a tiny student, from a small sentence-transformers-style teacher
    teacher = tmp_path / "teacher"
    save_model(perturbed("base", vocab_size=Tokenizer.from_pretrained(minilm).vocab_size, **{
        "hidden_size": 32}), teacher, copy_tokenizer_from=minilm, sentence_transformers_from=minilm)
    assert json.loads((teacher / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 32
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus with enough words in it" for i in range(16)) + "\n")
    results = distill_general(teacher, corpus, tmp_path / "student", student="tiny", max_steps=1, calibrate=0,
                              **FAST)
    student = results["model_dir"]
    assert st.SentenceTransformer(student, device="cpu", local_files_only=True).encode(["a test"]).shape == (1, 32)
    assert "distilled from" in open(os.path.join(student, "README.md")).read()


# ---------------------------------------------------------------------------------------------- 6. model cards


def test_every_checkpoint_we_write_has_a_model_card(tmp_path):
    from squeezebert.finetune.run import finetune

    vocab = write_vocab(tmp_path)
    results = finetune("tiny", "sst2", write_sst2(tmp_path / "SST-2", 32, 8), tmp_path / "run", tokenizer=vocab,
                       max_steps=2, command="squeezebert finetune --task sst2 ...", **FAST)
    card = open(os.path.join(results["model_dir"], "README.md")).read()
    assert card.startswith("---\n") and 'pipeline_tag: "text-classification"' in card
    assert "fine-tuned on sst2" in card and "| base model | tiny |" in card and "| labels | 0, 1 |" in card
    assert "dev accuracy" in card and "squeezebert finetune --task sst2 ..." in card
    plain = save_model(HEADS["base"](preset("tiny")), tmp_path / "plain")
    assert "feature-extraction" in (plain / "README.md").read_text()
