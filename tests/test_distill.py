"""Distillation losses (values, shapes, gradients) and the distill / squeeze flows and CLI on tiny models."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

from squeezebert.checkpoint import load_model, save_model
from squeezebert.cli import main
from squeezebert.config import preset
from squeezebert.distill import DistillLoss, DistillWeights, attention_kl, hidden_mse, layer_map, logit_kd
from squeezebert.distill.losses import head_kd
from squeezebert.model import (ModelOutput, SqueezeBertForQuestionAnswering, SqueezeBertForSequenceClassification,
                               SqueezeBertModel)
from squeezebert.tokenizer import Tokenizer

SAMPLE = Path(__file__).resolve().parents[1] / "squeezebert" / "data" / "sample"
FAST = dict(progress=False, log_every=1)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 1000, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor([0, 1, 1])}


def test_kd_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(4, 3)
    assert logit_kd(logits, logits.clone(), 2.0).abs() < 1e-6
    assert logit_kd(torch.randn(4, 3), logits, 2.0) > 0
    # regression heads: MSE against the teacher's prediction
    assert logit_kd(torch.tensor([[1.0]]), torch.tensor([[3.0]])) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="differ"):
        logit_kd(torch.randn(4, 3), torch.randn(4, 2))


def test_kd_temperature_scaling_matches_the_definition():
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    temp = 3.0
    p_t = torch.softmax(t / temp, -1)
    expected = (p_t * (p_t.log() - torch.log_softmax(s / temp, -1))).sum(-1).mean() * temp ** 2
    assert logit_kd(s, t, temp) == pytest.approx(float(expected), rel=1e-5)


def test_hidden_and_attention_losses_respect_the_mask_and_projection():
    t = torch.randn(2, 5, 8)
    s = t.clone()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    s[0, 3:] += 100.0  # only padding differs
    assert hidden_mse(s, t, mask) == 0
    assert hidden_mse(s, t) > 0
    proj = torch.nn.Linear(4, 8)
    out = hidden_mse(torch.randn(2, 5, 4, requires_grad=True), t, mask, proj)
    out.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projection"):
        hidden_mse(torch.randn(2, 5, 4), t)

    probs = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    assert attention_kl(probs, probs.clone(), mask).abs() < 1e-6
    other = torch.softmax(torch.randn(2, 4, 5, 5, requires_grad=True), -1)
    value = attention_kl(other, probs, mask)
    assert value > 0
    value.backward()
    assert attention_kl(probs[:, :2], probs, mask).shape == ()  # different head counts: head-averaged maps


def test_layer_map_spreads_student_layers_over_the_teacher():
    assert layer_map(6, 6) == [0, 1, 2, 3, 4, 5]
    assert layer_map(4, 12) == [2, 5, 8, 11]
    assert layer_map(2, 3) == [1, 2]


def test_combined_loss_is_zero_when_student_equals_teacher_and_has_gradients_otherwise():
    torch.manual_seed(0)
    teacher = SqueezeBertForSequenceClassification(preset("tiny")).eval()
    student = SqueezeBertForSequenceClassification(preset("tiny"))
    student.load_state_dict(teacher.state_dict())
    student.eval()  # no dropout: the same function
    weights = DistillWeights(ground_truth=0.0, logits=1.0, hidden=1.0, attention=1.0, embedding=1.0)
    loss_fn = DistillLoss(teacher, weights, student.config, teacher.config)
    loss, logs = loss_fn(student, batch())
    assert loss.abs() < 1e-5 and set(logs) == {"kd", "emb", "hid", "att"}

    student = SqueezeBertForSequenceClassification(preset("tiny"))  # different weights
    loss, logs = DistillLoss(teacher, DistillWeights.task(), student.config, teacher.config)(student, batch())
    assert loss > 0 and set(logs) == {"gt", "kd", "hid", "att"}
    loss.backward()
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:-2])
    assert all(p.grad is None for p in teacher.parameters())


def test_a_qa_student_learns_from_gold_spans_and_from_the_teachers_position_distributions():
    torch.manual_seed(0)
    teacher = SqueezeBertForQuestionAnswering(preset("tiny")).eval()
    student = SqueezeBertForQuestionAnswering(preset("tiny"))
    qa_batch = {k: v for k, v in batch().items() if k != "labels"}
    qa_batch |= {"start_positions": torch.tensor([1, 2, 0]), "end_positions": torch.tensor([3, 2, 0])}
    loss, logs = DistillLoss(teacher, DistillWeights.task(), student.config, teacher.config)(student, qa_batch)
    assert set(logs) == {"gt", "kd", "hid", "att"} and logs["gt"] > 0
    loss.backward()
    assert student.qa_outputs.weight.grad.abs().sum() > 0

    # soft labels: where the answer starts and where it ends, each a distribution over the 10 positions
    t_start, t_end, s_start, s_end = torch.randn(4, 3, 10).unbind(0)
    kd = head_kd(ModelOutput(start_logits=s_start, end_logits=s_end),
                 ModelOutput(start_logits=t_start, end_logits=t_end), temperature=2.0)

    def kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # T^2 * KL(p_t || p_s), mean over the batch
        p_t = torch.softmax(t / 2, -1)
        return 4 * (p_t * (p_t.log() - torch.log_softmax(s / 2, -1))).sum(-1).mean()

    assert kd == pytest.approx(float((kl(s_start, t_start) + kl(s_end, t_end)) / 2), rel=1e-5)


def test_width_mismatch_gets_learned_projections():
    torch.manual_seed(0)
    teacher = SqueezeBertModel(preset("tiny")).eval()
    narrow = preset("tiny", hidden_size=16, embedding_size=16, num_hidden_layers=1, intermediate_size=32)
    student = SqueezeBertModel(narrow)
    loss_fn = DistillLoss(teacher, DistillWeights.general(), student.config, teacher.config)
    assert set(loss_fn.projections) == {"embedding", "0"}
    loss, _ = loss_fn(student, {k: v for k, v in batch().items() if k != "labels"})
    loss.backward()
    assert loss_fn.projections["0"].weight.grad.abs().sum() > 0


# ---- flows and CLI on tiny models --------------------------------------------------------------------------------


def sample_vocab(directory: Path) -> Path:
    """A word-level vocabulary covering the shipped sample data (tiny preset: < 1000 tokens)."""
    words = set()
    for name in ("train.tsv", "dev.tsv"):
        for line in (SAMPLE / name).read_text().splitlines()[1:]:
            text = line.split("\t")[0].lower()
            for ch in ",.'-":
                text = text.replace(ch, f" {ch} ")
            words.update(text.split())
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path = directory / "vocab.txt"
    path.write_text("\n".join(specials + sorted(words)) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    """A tiny dense classifier, briefly fine-tuned on the sample data (so it is a real teacher); shared, read-only."""
    from squeezebert.finetune.run import finetune

    tmp_path = tmp_path_factory.mktemp("teacher")
    vocab = sample_vocab(tmp_path)
    results = finetune("tiny-dense", "sst2", SAMPLE, tmp_path / "teacher", tokenizer=vocab, epochs=1,
                       batch_size=32, lr=1e-3, limit_train=128, limit_eval=32, **FAST)
    return Path(results["model_dir"])


def test_distill_flow_squeezes_and_trains_a_grouped_student(tmp_path, tiny_teacher):
    from squeezebert.distill.distill import distill

    results = distill(tiny_teacher, "sst2", SAMPLE, tmp_path / "student", epochs=1, batch_size=32, lr=1e-3,
                      limit_train=96, limit_eval=32, calibrate=32, **FAST)
    best = load_model(results["model_dir"])
    assert best.config.q_groups == 4 and best.config.post_attention_groups == 1
    assert results["teacher_dev"]["accuracy"] is not None and results["student_dev"] is not None
    assert results["steps"] == 3
    assert json.loads((tmp_path / "student" / "results.json").read_text())["task"] == "sst2"
    # stage 2 of the paper's recipe: a student of another label count initialises a new task's student
    stage1 = tmp_path / "stage1"
    model = load_model(results["model_dir"])
    save_model(SqueezeBertForSequenceClassification(model.config.replace(num_labels=3, id2label=None,
                                                                         label2id=None)),
               stage1, copy_tokenizer_from=tiny_teacher)
    again = distill(tiny_teacher, "sst2", SAMPLE, tmp_path / "stage2", student=stage1, epochs=1, batch_size=64,
                    limit_train=64, limit_eval=16, **FAST)
    assert load_model(again["model_dir"]).config.num_labels == 2


def test_a_headless_student_can_start_from_the_teachers_head_and_a_trained_head_is_kept(tmp_path):
    from squeezebert.distill.distill import load_student

    torch.manual_seed(0)
    teacher = SqueezeBertForSequenceClassification(preset("tiny-dense", num_labels=2)).init_weights()
    tokenizer = Tokenizer.from_vocab(sample_vocab(tmp_path))
    save_model(SqueezeBertModel(preset("tiny")).init_weights(), tmp_path / "general", tokenizer=tokenizer)
    fields = {"num_labels": 2}
    fresh = load_student(tmp_path / "general", teacher, "sequence_classification", fields)
    given = load_student(tmp_path / "general", teacher, "sequence_classification", fields, head_from_teacher=True)
    for name in ("classifier.weight", "transformer.pooler.dense.weight"):
        theirs = teacher.state_dict()[name]
        assert torch.equal(given.state_dict()[name], theirs) and not torch.equal(fresh.state_dict()[name], theirs)
    encoder = "transformer.encoder.layers.0.output.conv1d.weight"  # the encoder body stays the student's own
    assert torch.equal(given.state_dict()[encoder], fresh.state_dict()[encoder])
    save_model(fresh, tmp_path / "task-student", tokenizer=tokenizer)  # a student that has its head already
    kept = load_student(tmp_path / "task-student", teacher, "sequence_classification", fields, head_from_teacher=True)
    assert torch.equal(kept.state_dict()["classifier.weight"], fresh.state_dict()["classifier.weight"])


def test_distill_refuses_a_teacher_without_the_task_head(tmp_path):
    from squeezebert.distill.distill import distill

    vocab = sample_vocab(tmp_path)
    base = tmp_path / "base"
    save_model(SqueezeBertModel(preset("tiny-dense")), base, tokenizer=Tokenizer.from_vocab(vocab))
    with pytest.raises(ValueError, match="fine-tune it on the task first"):
        distill(base, "sst2", SAMPLE, tmp_path / "out", limit_train=8, limit_eval=8, **FAST)


def test_cli_squeeze_and_general_and_task_distill(tmp_path, tiny_teacher, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "text.txt").write_text("\n".join(line.split("\t")[0] for line in
                                               (SAMPLE / "train.tsv").read_text().splitlines()[1:40]))
    assert main(["squeeze", "--teacher", str(tiny_teacher), "--out", str(tmp_path / "sq"), "--groups", "2",
                 "--calibration-text", str(corpus / "text.txt")]) == 0
    squeezed = load_model(tmp_path / "sq")
    assert squeezed.config.intermediate_groups == 2 and (tmp_path / "sq" / "tokenizer.json").is_file()
    assert "least-squares" in capsys.readouterr().out

    assert main(["distill", "--teacher", str(tiny_teacher), "--task", "general", "--data-dir", str(corpus),
                 "--out", str(tmp_path / "gen"), "--max-steps", "2", "--batch-size", "8", "--no-progress"]) == 0
    general = json.loads((tmp_path / "gen" / "results.json").read_text())
    assert general["steps"] == 2 and general["model_dir"] == str(tmp_path / "gen" / "best")
    assert general["corpus_windows"] == {str(corpus / "text.txt"): general["texts"]}
    # the documented flow: the general student (its `best`, the last model) starts task distillation
    assert main(["distill", "--teacher", str(tiny_teacher), "--student", str(tmp_path / "gen" / "best"), "--task",
                 "sst2", "--data-dir", str(SAMPLE), "--out", str(tmp_path / "from-gen"), "--max-steps", "1",
                 "--limit-train", "16", "--limit-eval", "16", "--no-progress"]) == 0
    assert json.loads((tmp_path / "from-gen" / "results.json").read_text())["student"] == str(tmp_path / "gen" / "best")

    assert main(["distill", "--teacher", str(tiny_teacher), "--student", str(tmp_path / "sq"), "--task", "sst2",
                 "--data-dir", str(SAMPLE), "--out", str(tmp_path / "task"), "--max-steps", "2",
                 "--limit-train", "32", "--limit-eval", "16", "--hidden-weight", "0", "--no-progress"]) == 0
    results = json.loads((tmp_path / "task" / "results.json").read_text())
    assert results["weights"]["hidden"] == 0 and results["student_config"]["intermediate_groups"] == 2

    assert main(["distill", "--teacher", str(tiny_teacher), "--task", "general", "--out", str(tmp_path / "x")]) == 2


def test_attentions_stay_distributions_in_training_mode():
    """Attention dropout must not reach the returned maps, or attention KL sees dropped (zero) probabilities."""
    torch.manual_seed(0)
    model = SqueezeBertModel(preset("tiny", attention_probs_dropout_prob=0.5)).train()
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    probs = model(**inputs, output_attentions=True).attentions[0]
    assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)
    keys = inputs["attention_mask"].bool()[:, None, None, :].expand_as(probs)
    assert (probs[keys] > 0).all()  # softmax over the real keys: nothing dropped
    teacher = SqueezeBertModel(preset("tiny")).eval()
    teacher.load_state_dict(model.state_dict())
    loss, _ = DistillLoss(teacher, DistillWeights(0, 0, 1, 0, 1, 0), model.config, teacher.config)(model, inputs)
    assert loss < 1e-5  # same weights: dropout changes the context, not the attention distributions


def test_perturbed_copies_are_seeded_never_empty_and_keep_pairs_apart():
    from squeezebert.data.tabular import Example
    from squeezebert.distill.augment import augment_examples, perturb

    rng = random.Random(0)
    assert perturb("one", ["x"], rng, 0.49) in {"one", "x"}  # a lone word may be replaced but never vanishes
    pairs = [Example("a", "the cat sat on the mat today", "a dog ran", "1"),
             Example("c", "birds sing in the morning", "cats sleep all day", "0")]
    copies = augment_examples(pairs, 3, rate=0.3, seed=1)
    assert [c.guid for c in copies] == ["a-aug0", "a-aug1", "a-aug2", "c-aug0", "c-aug1", "c-aug2"]
    assert copies == augment_examples(pairs, 3, rate=0.3, seed=1)  # seeded
    assert copies != augment_examples(pairs, 3, rate=0.3, seed=2)
    assert any(c.text_a != pairs[0].text_a for c in copies[:3]) and all(c.text_b for c in copies)
    words = {w for e in pairs for w in (e.text_a + " " + e.text_b).split()}
    assert all(set((c.text_a + " " + c.text_b).split()) <= words for c in copies)  # replacements from the data
    with pytest.raises(ValueError, match="rate"):
        augment_examples(pairs, 1, rate=0.6)


def test_distill_with_augment_trains_on_teacher_labelled_copies(tmp_path, tiny_teacher):
    from squeezebert.distill.distill import distill
    from squeezebert.finetune.tasks import load_task, model_outputs

    results = distill(tiny_teacher, "sst2", SAMPLE, tmp_path / "student", epochs=1, batch_size=32, lr=1e-3,
                      limit_train=48, limit_eval=16, calibrate=0, augment=2, **FAST)
    assert results["augmented"]["copies"] == 96 and results["train_examples"] == 144
    assert results["steps"] == 5  # 144 examples in batches of 32
    # the copies' labels are the teacher's classes: check them against the teacher directly
    from squeezebert.distill.augment import teacher_label, transfer_set

    teacher = load_model(tiny_teacher)
    data = load_task("sst2", SAMPLE, Tokenizer.from_pretrained(tiny_teacher), limit_train=48, limit_eval=16)
    copies, changed = transfer_set(teacher, data, 2, seed=42)
    predicted = [int(o.argmax()) for o in model_outputs(teacher, copies, data.collate)]
    assert [c["labels"] for c in copies] == predicted and 0 <= changed <= 1
    for c, p in zip(copies, predicted):  # every label wrong: the teacher overwrites all, and says it changed all
        c["labels"] = 1 - p
    assert teacher_label(teacher, copies, data) == 1.0 and [c["labels"] for c in copies] == predicted
    with pytest.raises(ValueError, match="only sentence and sentence-pair"):  # NER tags / QA spans would break
        transfer_set(teacher, dataclasses.replace(data, kind="token"), 1)


def test_augment_is_refused_for_general_distillation(tmp_path, tiny_teacher, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one line of text\n")
    assert main(["distill", "--teacher", str(tiny_teacher), "--task", "general", "--data-dir", str(corpus),
                 "--augment", "1", "--out", str(tmp_path / "g"), "--no-progress"]) == 2
    assert "--augment is for task distillation" in capsys.readouterr().err
    assert not (tmp_path / "g" / "results.json").exists()


def test_general_corpus_reads_text_and_tsv_files_and_names_what_it_skips(tmp_path, caplog):
    from test_pretrain import WORDS, write_vocab

    from squeezebert.distill.corpus import corpus_files, text_features

    tok = Tokenizer.from_vocab(write_vocab(tmp_path / "vocab.txt"))
    rng = random.Random(0)

    def sentence(n: int = 12) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)) + " ."

    corpus = tmp_path / "corpus"
    (corpus / "books").mkdir(parents=True)
    # a hard-wrapped book: 3 paragraphs, the first of two lines (one paragraph, one window); "#" lines separate files
    (corpus / "books" / "book.txt").write_text(
        f"# speech one\n{sentence()}\n{sentence()}\n\n{sentence()}\n\n{sentence()}\n")
    (corpus / "reviews.tsv").write_text("id\ttext\tlabel\n" + "".join(f"r{i}\t{sentence()}\t1\n" for i in range(4)))
    (corpus / "labelled.tsv").write_text("sentence\tlabel\n" + f"{sentence()}\t0\n")  # no text column
    (corpus / "notes.md").write_text(sentence())  # neither .txt nor .tsv
    with caplog.at_level("WARNING"):
        files = corpus_files(corpus)
    assert [Path(f).name for f in files] == ["book.txt", "reviews.tsv"]
    assert "labelled.tsv" in caplog.text and "?column=NAME" in caplog.text
    features, counts = text_features(tok, files, max_length=64)
    assert {Path(f).name: n for f, n in counts.items()} == {"book.txt": 3, "reviews.tsv": 4}
    # the wrapped paragraph is one window of its 2 x 13 tokens; the "#" line (words the vocabulary lacks) is skipped
    assert len(features[0]["input_ids"]) == 2 + 2 * 13 and tok.unk_token_id not in features[0]["input_ids"]
    assert all(f["input_ids"][0] == tok.cls_token_id and f["input_ids"][-1] == tok.sep_token_id for f in features)
    # ids and labels never become text: each review window is its sentence alone
    assert all(len(f["input_ids"]) == 13 + 2 for f in features[3:])
    # an entry names the column of any .tsv file; repeat= upsamples it; limit caps the windows
    assert text_features(tok, corpus_files(f"{corpus}/labelled.tsv?column=sentence"), 64)[1] == {
        str(corpus / "labelled.tsv"): 1}
    assert len(text_features(tok, corpus_files(f"{corpus}/reviews.tsv?repeat=3"), 64)[0]) == 12
    assert len(text_features(tok, files, 64, limit=5)[0]) == 5
    with pytest.raises(FileNotFoundError, match="matches no file"):
        corpus_files(corpus / "missing.txt")
    (corpus / "books" / "book.txt").unlink()
    (corpus / "reviews.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        corpus_files(corpus)


def test_general_distillation_scores_held_out_windows_and_keeps_the_lowest(tmp_path, tiny_teacher):
    from squeezebert.distill.corpus import hold_out
    from squeezebert.distill.distill import distill_general

    corpus = tmp_path / "corpus.txt"  # one sentence a paragraph: a window each if it has 8 words or more
    corpus.write_text("\n\n".join(line.split("\t")[0] for line in
                                  (SAMPLE / "train.tsv").read_text().splitlines()[1:401]))
    # a fresh student (the squeezed tiny teacher starts almost at zero loss): it has something to learn
    results = distill_general(tiny_teacher, corpus, tmp_path / "gen", student="tiny", held_out=20, max_steps=6,
                              eval_every=2, batch_size=16, lr=3e-3, calibrate=0, **FAST)
    held = results["held_out"]
    assert held["windows"] == 20 and results["texts"] == sum(results["corpus_windows"].values()) - 20
    assert [e["step"] for e in held["evals"]] == [2, 4, 6]
    assert set(held["before"]) == {"loss", "emb", "hid", "att"} and held["before"]["loss"] > 0
    lowest = min(held["evals"], key=lambda e: e["loss"])
    assert held["best"] == lowest and results["model_dir"] == str(tmp_path / "gen" / "best")
    # training lowers the held-out loss (the fit generalises beyond its own windows)
    assert lowest["loss"] < held["before"]["loss"]
    # the seeded sample: the same windows every time, none of them trained on, capped at a tenth of the corpus
    windows = [{"input_ids": [i]} for i in range(100)]
    train, out = hold_out(windows, 32, seed=1)
    assert len(out) == 10 and hold_out(windows, 32, seed=1) == (train, out)
    assert sorted(w["input_ids"][0] for w in train + out) == list(range(100))
    assert hold_out(windows, 0, seed=1) == (windows, [])
    with pytest.raises(ValueError, match="held_out must be >= 0"):
        distill_general(tiny_teacher, corpus, tmp_path / "negative", held_out=-1)
    # --held-out 0: every window trains, the last model is kept, and the run's stored settings are those of the
    # general runs from before held-out losses existed (no held_out, no metric, the default greater_is_better), so
    # their checkpoints still resume
    none = distill_general(tiny_teacher, corpus, tmp_path / "none", student="tiny", held_out=0, max_steps=1,
                           batch_size=16, calibrate=0, **FAST)
    assert none["held_out"] is None and none["texts"] == results["texts"] + 20
    state = torch.load(next((tmp_path / "none" / "checkpoints").glob("step-*")) / "training_state.pt",
                       weights_only=True)
    settings = json.loads(state["settings"])
    assert (settings["metric"], settings["greater_is_better"]) == (None, True) and "held_out" not in settings


def test_distill_with_transfer_text_trains_on_teacher_labelled_corpus_sentences(tmp_path, tiny_teacher):
    from squeezebert.distill.augment import corpus_transfer_set
    from squeezebert.distill.corpus import corpus_sentences
    from squeezebert.distill.distill import distill
    from squeezebert.finetune.tasks import load_task, model_outputs

    reviews = tmp_path / "reviews.tsv"  # two reviews of three sentences, one of them too short, one repeated
    reviews.write_text("id\ttext\tlabel\n"
                       "r1\tthe film was a delight from start to end . it drags in the middle a little . wow .\t1\n"
                       "r2\ta dull and lifeless story told badly . it drags in the middle a little .\t0\n")
    assert corpus_sentences([str(reviews)], None, seed=0) == [
        "the film was a delight from start to end .", "it drags in the middle a little .",
        "a dull and lifeless story told badly ."]
    # a seeded sample, in corpus order: the same for a seed, another for another seed
    many = tmp_path / "many.txt"
    many.write_text("\n\n".join(f"sentence number {i} of the corpus ." for i in range(50)))
    every = corpus_sentences([str(many)], None, seed=0)
    sample = corpus_sentences([str(many)], 10, seed=0)
    assert len(every) == 50 and len(sample) == 10 and sample == corpus_sentences([str(many)], 10, seed=0)
    assert sample == [s for s in every if s in sample] and sample != corpus_sentences([str(many)], 10, seed=1)

    results = distill(tiny_teacher, "sst2", SAMPLE, tmp_path / "student", epochs=1, batch_size=16, lr=1e-3,
                      limit_train=16, limit_eval=16, calibrate=0, transfer_text=str(reviews), **FAST)
    moved = results["transferred"]
    assert (moved["sentences"], moved["files"], results["train_examples"]) == (3, 1, 19)
    assert sum(moved["teacher_labels"].values()) == pytest.approx(1.0)
    state = torch.load(next((tmp_path / "student" / "checkpoints").glob("step-*")) / "training_state.pt",
                       weights_only=True)  # kept with the run's settings (a resume with another corpus is refused)
    assert json.loads(state["settings"])["transfer_text"] == str(reviews)
    # their labels are the teacher's classes
    teacher = load_model(tiny_teacher)
    data = load_task("sst2", SAMPLE, Tokenizer.from_pretrained(tiny_teacher), limit_train=16, limit_eval=16)
    features, files = corpus_transfer_set(teacher, data, str(reviews))
    assert [f["labels"] for f in features] == [int(o.argmax()) for o in model_outputs(teacher, features, data.collate)]
    with pytest.raises(ValueError, match="sst2 is a qa task"):  # answer spans have no sentences to tag
        corpus_transfer_set(teacher, dataclasses.replace(data, kind="qa"), str(reviews))
    with pytest.raises(ValueError, match="transfer_count needs transfer_text"):
        distill(tiny_teacher, "sst2", SAMPLE, tmp_path / "bad", transfer_count=5)
    with pytest.raises(ValueError, match="transfer_count must be >= 1"):
        distill(tiny_teacher, "sst2", SAMPLE, tmp_path / "bad", transfer_text=str(reviews), transfer_count=0)
    with pytest.raises(ValueError, match="--transfer-text is for task distillation"):
        distill(tiny_teacher, "general", tmp_path, tmp_path / "gen", transfer_text=str(reviews))


def test_distill_with_transfer_text_on_a_pair_task_reads_a_tables_pairs(tmp_path):
    from squeezebert.distill.augment import table_pairs
    from squeezebert.distill.distill import distill
    from squeezebert.finetune.run import finetune

    # MNLI's layout: a repeated pair and a pair missing its hypothesis are read once and not at all
    table = tmp_path / "mnli.tsv"
    table.write_text("index\tsentence1\tsentence2\tgold_label\n0\ta man plays a guitar .\ta man makes music .\t"
                     "entailment\n1\tthe cat sleeps .\ta dog barks .\tneutral\n2\tthe cat sleeps .\ta dog barks ."
                     "\tneutral\n3\tan empty one .\t\tneutral\n")
    pairs = [("a man plays a guitar .", "a man makes music ."), ("the cat sleeps .", "a dog barks .")]
    assert table_pairs(str(table)) == pairs and table_pairs(str(table), 1, seed=0)[0] in pairs
    assert table_pairs(f"{table}?columns=sentence2,sentence1") == [(b, a) for a, b in pairs]
    # a pair task (MRPC's layout) made of the sample's sentences, and a tiny teacher for it
    mrpc = tmp_path / "mrpc"
    mrpc.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        rows = [line.split("\t") for line in (SAMPLE / name).read_text().splitlines()[1:]]
        mrpc.joinpath(name).write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(
            f"{int(a[1] == b[1])}\t{i}\t{i + 1}\t{a[0]}\t{b[0]}\n" for i, (a, b) in enumerate(zip(rows, rows[1:]))))
    teacher = finetune("tiny-dense", "mrpc", mrpc, tmp_path / "teacher", tokenizer=sample_vocab(tmp_path), epochs=1,
                       batch_size=32, lr=1e-3, limit_train=64, limit_eval=16, **FAST)["model_dir"]
    results = distill(teacher, "mrpc", mrpc, tmp_path / "student", epochs=1, batch_size=16, lr=1e-3,
                      limit_train=16, limit_eval=16, calibrate=0, transfer_text=str(table), **FAST)
    moved = results["transferred"]
    assert (moved["pairs"], moved["files"], results["train_examples"]) == (2, 1, 18)
    assert sum(moved["teacher_labels"].values()) == pytest.approx(1.0)
    # a folder, a table without the columns, a bad option: one-line errors, before any training
    for corpus, message in ((tmp_path, "is not a file"), (f"{table}?columns=premise,hypothesis", "missing column"),
                            (f"{table}?column=sentence1", "one option, \\?columns=A,B")):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            distill(teacher, "mrpc", mrpc, tmp_path / "bad", transfer_text=str(corpus), **FAST)
    assert not (tmp_path / "bad" / "results.json").exists()


def test_distill_with_transfer_text_on_ner_tags_a_corpus_word_by_word(tmp_path):
    from test_finetune import PEOPLE, PLACES, write_conll, write_vocab

    from squeezebert.data.conll import IGNORE_INDEX
    from squeezebert.distill.augment import corpus_transfer_set
    from squeezebert.distill.distill import distill
    from squeezebert.finetune.run import finetune
    from squeezebert.finetune.tasks import load_task, model_outputs

    conll, vocab = write_conll(tmp_path / "conll", n_train=32, n_dev=8), write_vocab(tmp_path)
    teacher = finetune("tiny-dense", "conll", conll, tmp_path / "teacher", tokenizer=vocab, epochs=1, batch_size=16,
                       lr=1e-3, **FAST)["model_dir"]
    corpus = tmp_path / "news.txt"  # four sentences: a word the vocabulary splits in pieces ("revisited")
    corpus.write_text("\n\n".join(f"the city {place} was revisited by {person} ." for person, place in
                                  zip(PEOPLE[:4], PLACES[:4])))
    results = distill(teacher, "conll", conll, tmp_path / "student", epochs=1, batch_size=16, lr=1e-3,
                      limit_train=16, limit_eval=8, calibrate=0, transfer_text=str(corpus), **FAST)
    moved = results["transferred"]
    assert (moved["sentences"], results["train_examples"]) == (4, 20)
    assert set(moved["teacher_labels"]) == {"O", "B-PER", "B-LOC"}
    assert sum(moved["teacher_labels"].values()) == pytest.approx(1.0)
    # each word's first sub-token carries the teacher's tag there, every other position is ignored
    data = load_task("conll", conll, Tokenizer.from_pretrained(teacher), limit_train=16, limit_eval=8)
    model = load_model(teacher)
    features, _ = corpus_transfer_set(model, data, str(corpus))
    for feature, logits in zip(features, model_outputs(model, features, data.collate)):
        tagged = [p for p, label in enumerate(feature["labels"]) if label != IGNORE_INDEX]
        assert tagged == feature["word_starts"] and len(tagged) == 8
        assert [feature["labels"][p] for p in tagged] == logits[tagged].argmax(-1).tolist()
