"""Fine-tuning flow, evaluation and prediction (API and CLI) on tiny synthetic data written per test.

Each task gets a learnable toy version (sentiment words decide the label, capitalised names are entities, the
answer follows a fixed cue) so that "the loss goes down" and "the score is high" are claims a broken loop fails.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
import torch

from squeezebert.checkpoint import load_model
from squeezebert.cli import main
from squeezebert.data import DataError
from squeezebert.finetune import load_task
from squeezebert.finetune.run import evaluate, finetune, predict_split
from squeezebert.tokenizer import Tokenizer
from squeezebert.train.loop import TrainingError

POSITIVE = ["good", "great", "fine", "nice", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
NOUNS = ["movie", "film", "plot", "story", "cast", "show"]
PEOPLE = ["john", "mary", "peter", "anna"]
PLACES = ["paris", "london", "berlin", "rome"]
FILLER = ["the", "was", "is", "a", "really", "lives", "in", "visited", "and", "where", "does", "who", "what",
          "capital", "of", "city", "called", "answer", "here", "went", "to", "very", "happy", "then", "home", "it"]


def write_vocab(directory: Path) -> Path:
    """A small WordPiece vocabulary: specials, letters (so any word tokenizes), and the toy words."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,?!'-")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *[f"##{c}" for c in letters],
              *POSITIVE, *NEGATIVE, *NOUNS, *PEOPLE, *PLACES, *FILLER]
    path = directory / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return path


def sentiment_rows(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        adjective = rng.choice(POSITIVE if label else NEGATIVE)
        rows.append((f"the {rng.choice(NOUNS)} was {rng.choice(['', 'really ', 'very '])}{adjective}", label))
    return rows


def write_sst2(directory: Path, n_train: int = 64, n_dev: int = 24) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("dev", n_dev, 1)):
        lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in sentiment_rows(n, seed)]
        (directory / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def ner_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        person, place = rng.choice(PEOPLE).capitalize(), rng.choice(PLACES).capitalize()
        if rng.random() < 0.5:
            sentences.append([(person, "B-PER"), ("lives", "O"), ("in", "O"), (place, "B-LOC"), (".", "O")])
        else:
            sentences.append([("the", "O"), ("city", "O"), (place, "B-LOC"), ("was", "O"), ("visited", "O"),
                              ("by", "O"), (person, "B-PER"), (".", "O")])
    return sentences


def write_conll(directory: Path, n_train: int = 64, n_dev: int = 24) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.txt", n_train, 0), ("valid.txt", n_dev, 1)):
        blocks = ["-DOCSTART- -X- -X- O"]
        for sentence in ner_sentences(n, seed):
            blocks.append("\n".join(f"{word} NN I-NP {tag}" for word, tag in sentence))
        (directory / name).write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return directory


def write_squad(directory: Path, n_train: int = 64, n_dev: int = 16, filler: int = 0) -> Path:
    """Contexts "... john went to paris ..." with the question "where does john live ?"; the answer is the place.
    ``filler`` words before the sentence make long contexts (several windows)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train-v1.1.json", n_train, 0), ("dev-v1.1.json", n_dev, 1)):
        rng = random.Random(seed)
        paragraphs = []
        for i in range(n):
            person, place, other = rng.choice(PEOPLE), *rng.sample(PLACES, 2)
            prefix = " ".join(rng.choice(FILLER[:12]) for _ in range(filler))
            context = (f"{prefix} " if prefix else "") + f"{person} lives in {place} and visited {other} ."
            start = context.index(f"lives in {place}") + len("lives in ")
            qas = [{"id": f"{name[:3]}{i}", "question": f"where does {person} live ?",
                    "answers": [{"text": place, "answer_start": start}]}]
            paragraphs.append({"context": context, "qas": qas})
        document = {"version": "1.1", "data": [{"title": "toy", "paragraphs": paragraphs}]}
        (directory / name).write_text(json.dumps(document), encoding="utf-8")
    return directory


def write_swag(directory: Path, n_train: int = 64, n_dev: int = 16) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    header = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label"
    for name, n, seed in (("train.csv", n_train, 0), ("val.csv", n_dev, 1)):
        rng = random.Random(seed)
        lines = [header]
        for i in range(n):
            label = rng.randrange(4)
            endings = [f"was {rng.choice(NEGATIVE)} ." for _ in range(4)]
            endings[label] = f"was {rng.choice(POSITIVE)} ."  # the right ending is the positive one
            lines.append(f"v{i},{i},the film,the film is here,the cast,gold,{','.join(endings)},{label}")
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP threads that spin-wait for each
    other make every step ~100x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def vocab(tmp_path) -> Path:
    return write_vocab(tmp_path)


FAST = dict(max_length=32, batch_size=8, lr=1e-2, warmup=0.0, progress=False, seed=0)


def losses(out: Path) -> list[float]:
    with open(out / "log.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f) if row.get("loss")]


# ---------------------------------------------------------------------------------------------- end to end


def test_sst2_from_a_preset_learns_saves_best_with_tokenizer_and_writes_results(tmp_path, vocab):
    data = write_sst2(tmp_path / "SST-2", n_train=96)
    out = tmp_path / "run"
    results = finetune("tiny", "sst2", data, out, tokenizer=vocab, epochs=8, eval_every=24, log_every=4,
                       command="squeezebert finetune ...", **FAST)
    curve = losses(out)
    assert curve[-1] < 0.5 * curve[0], curve
    assert results["metric"] == "accuracy" and results["best_metric"] >= 0.9
    assert results["dev"]["accuracy"] == results["best_metric"] and results["best_step"] % 24 == 0
    assert results["steps"] == 96 and results["train_examples"] == 96 and results["eval_examples"] == {"dev": 24}
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["command"] == "squeezebert finetune ..." and on_disk["best_metric"] == results["best_metric"]
    best = Path(results["model_dir"])
    assert best == out / "best" and (best / "tokenizer.json").is_file() and (best / "vocab.txt").is_file()
    model = load_model(best)
    assert model.config.id2label == {0: "0", 1: "1"} and type(model).__name__.endswith("SequenceClassification")
    assert (out / "curve.png").is_file()
    # evaluating the saved best model reproduces the score the run recorded for it
    again = evaluate(best, "sst2", data, max_length=32)
    assert again["metrics"]["accuracy"] == pytest.approx(results["best_metric"])


def test_stsb_regression_from_a_checkpoint_directory(tmp_path, vocab):
    from squeezebert import preset
    from squeezebert.checkpoint import save_model
    from squeezebert.model import SqueezeBertModel

    base = tmp_path / "base"
    save_model(SqueezeBertModel(preset("tiny", vocab_size=Tokenizer.from_vocab(vocab).vocab_size)), base,
               tokenizer=Tokenizer.from_vocab(vocab))
    data = tmp_path / "STS-B"
    data.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    for name, seed in (("train", 0), ("dev", 1)):
        rng = random.Random(seed)
        lines = [header]
        for i in range(48):
            a, b = rng.choice(POSITIVE + NEGATIVE), rng.choice(POSITIVE + NEGATIVE)
            score = 5.0 if (a in POSITIVE) == (b in POSITIVE) else 0.0
            lines.append(f"{i}\tx\tx\tx\tx\tx\tx\tthe film was {a}\tthe film was {b}\t{score}")
        (data / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = finetune(base, "stsb", data, tmp_path / "run", epochs=1, **FAST)
    assert results["metric"] == "spearman"
    assert set(results["dev"]) >= {"pearson", "spearman"}
    model = load_model(results["model_dir"])
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


def test_ner_learns_entities_and_evaluates_by_label_names(tmp_path, vocab):
    data = write_conll(tmp_path / "conll")
    out = tmp_path / "ner"
    results = finetune("tiny", "conll", data, out, tokenizer=vocab, epochs=6, eval_every=24, log_every=4, **FAST)
    curve = losses(out)
    assert curve[-1] < 0.5 * curve[0]
    assert results["metric"] == "f1" and results["best_metric"] > 0.5
    labels = load_model(results["model_dir"]).config.id2label
    assert set(labels.values()) == {"O", "B-PER", "B-LOC"}
    scored = evaluate(results["model_dir"], "conll", data, max_length=32)
    assert scored["metrics"]["f1"] == pytest.approx(results["best_metric"])


def test_qa_trains_and_scores_em_f1(tmp_path, vocab):
    data = write_squad(tmp_path / "squad")
    out = tmp_path / "qa"
    results = finetune("tiny", "squad", data, out, tokenizer=vocab, epochs=4, log_every=4, **FAST)
    curve = losses(out)
    assert curve[-1] < curve[0]
    assert results["metric"] == "f1" and set(results["dev"]) >= {"exact_match", "f1"}
    assert 0.0 <= results["dev"]["exact_match"] <= results["dev"]["f1"] <= 100.0


def test_a_qa_teacher_distils_into_a_squeezed_qa_student(tmp_path, vocab):
    from squeezebert.distill.distill import distill

    data = write_squad(tmp_path / "squad")
    teacher = finetune("tiny-dense", "squad", data, tmp_path / "teacher", tokenizer=vocab, epochs=2, **FAST)
    results = distill(teacher["model_dir"], "squad", data, tmp_path / "student", epochs=1, calibrate=16, **FAST)
    assert load_model(results["model_dir"]).config.q_groups == 4
    assert set(results["student_dev"]) >= {"exact_match", "f1"}
    with open(tmp_path / "student" / "log.csv", newline="") as f:  # gold spans and the teacher's soft spans both
        rows = [row for row in csv.DictReader(f) if row.get("loss")]
    assert rows and all(float(row["gt"]) > 0 and float(row["kd"]) >= 0 for row in rows)


def test_qa_long_contexts_become_several_windows(tmp_path, vocab):
    data = write_squad(tmp_path / "long", n_train=4, n_dev=4, filler=40)
    task = load_task("squad", data, Tokenizer.from_vocab(vocab), max_length=32)
    assert len(task.train) > 4 * 2  # every context needs at least three 32-token windows
    assert len({f["example_index"] for f in task.evals["dev"]}) == 4


def test_multiple_choice_trains_and_scores_accuracy(tmp_path, vocab):
    data = write_swag(tmp_path / "swag")
    out = tmp_path / "mc"
    results = finetune("tiny", "swag", data, out, tokenizer=vocab, epochs=3, log_every=4, **FAST)
    assert losses(out)[-1] < losses(out)[0]
    assert results["metric"] == "accuracy" and 0.0 <= results["best_metric"] <= 1.0
    assert type(load_model(results["model_dir"])).__name__ == "SqueezeBertForMultipleChoice"


def test_early_stopping_and_resume_of_a_finished_run(tmp_path, vocab):
    data = write_sst2(tmp_path / "SST-2", n_train=32, n_dev=8)
    out = tmp_path / "run"
    results = finetune("tiny", "sst2", data, out, tokenizer=vocab, epochs=30, eval_every=1, patience=2,
                       **{**FAST, "lr": 1e-9})  # nothing improves at lr 1e-9: stops after 1 + 2 evaluations
    assert results["stopped_early"] and results["steps"] == 3
    again = finetune("tiny", "sst2", data, out, tokenizer=vocab, epochs=30, eval_every=1, patience=2,
                     **{**FAST, "lr": 1e-9})
    assert again["steps"] == 3  # resumed from the step-3 checkpoint: nothing left to do
    assert again["stopped_early"]  # its patience was used up: it stays stopped rather than training on
    with pytest.raises(TrainingError, match="max_steps"):  # other settings are not that run resumed
        finetune("tiny", "sst2", data, out, tokenizer=vocab, max_steps=3, eval_every=1, **FAST)


def test_bf16_precision_runs(tmp_path, vocab):
    data = write_sst2(tmp_path / "SST-2", n_train=32, n_dev=8)
    results = finetune("tiny", "sst2", data, tmp_path / "bf16", tokenizer=vocab, max_steps=4, precision="bf16",
                       **FAST)
    assert results["training_args"]["precision"] == "bf16" and results["steps"] == 4


# ---------------------------------------------------------------------------------------------- error paths


def test_errors_name_what_is_wrong(tmp_path, vocab):
    with pytest.raises(FileNotFoundError, match="neither a checkpoint directory nor a preset"):
        finetune("no-such-model", "sst2", write_sst2(tmp_path / "a"), tmp_path / "o", tokenizer=vocab)
    dev_only = tmp_path / "dev-only"
    write_sst2(dev_only)
    (dev_only / "train.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"sst2: no training examples .*train\.tsv"):
        finetune("tiny", "sst2", dev_only, tmp_path / "o", tokenizer=vocab)
    bad = write_sst2(tmp_path / "bad")
    (bad / "train.tsv").write_text("sentence\tlabel\nthe film was good\t1\nthe film was bad\tmaybe\n")
    with pytest.raises(DataError, match=r"train\.tsv:3.*maybe"):
        finetune("tiny", "sst2", bad, tmp_path / "o", tokenizer=vocab)
    (bad / "train.tsv").write_text("text\tlabel\nthe film was good\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv:1.*sentence"):
        finetune("tiny", "sst2", bad, tmp_path / "o", tokenizer=vocab)
    (bad / "train.tsv").write_text("")
    with pytest.raises(DataError, match=r"train\.tsv.*empty"):
        finetune("tiny", "sst2", bad, tmp_path / "o", tokenizer=vocab)
    conll = write_conll(tmp_path / "conll")
    (conll / "valid.txt").write_text("Paris NN I-NP B-CITY\n")
    with pytest.raises(DataError, match=r"valid\.txt.*B-CITY"):
        finetune("tiny", "conll", conll, tmp_path / "o", tokenizer=vocab)


def test_evaluate_refuses_a_model_without_the_task_head(tmp_path, vocab):
    from squeezebert import preset
    from squeezebert.checkpoint import save_model
    from squeezebert.model import SqueezeBertForTokenClassification

    tok = Tokenizer.from_vocab(vocab)
    model_dir = save_model(SqueezeBertForTokenClassification(preset("tiny", vocab_size=tok.vocab_size)),
                           tmp_path / "ner-model", tokenizer=tok)
    with pytest.raises(ValueError, match="cannot be evaluated on sst2"):
        evaluate(model_dir, "sst2", write_sst2(tmp_path / "SST-2"))


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_finetune_evaluate_predict(tmp_path, vocab, capsys, monkeypatch):
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "cli"
    code = main(["finetune", "--task", "sst-2", "--data-dir", str(data), "--model", "tiny", "--out", str(out),
                 "--tokenizer", str(vocab), "--epochs", "6", "--lr", "1e-2", "--batch-size", "8",
                 "--max-length", "32", "--warmup", "0", "--seed", "0", "--no-progress", "--limit-train", "48", "--eval-every", "18"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith("squeezebert finetune --task sst-2") and results["train_examples"] == 48
    capsys.readouterr()

    assert main(["evaluate", "--model", str(out / "best"), "--task", "sst2", "--data-dir", str(data),
                 "--max-length", "32"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["metrics"]["accuracy"] == pytest.approx(results["best_metric"]) and scored["examples"] == {"dev": 24}
    # the same evaluation through the int8 inference path (what `accuracy.py int8` records)
    assert main(["evaluate", "--model", str(out / "best"), "--task", "sst2", "--data-dir", str(data),
                 "--max-length", "32", "--precision", "int8"]) == 0
    scored8 = json.loads(capsys.readouterr().out)
    assert scored8["precision"] == "int8" and scored8["examples"] == {"dev": 24}
    assert abs(scored8["metrics"]["accuracy"] - scored["metrics"]["accuracy"]) <= 0.25
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", str(out / "best"), "--task", "sst2", "--data-dir", str(data), "--precision", "fp8"])
    capsys.readouterr()

    # texts from arguments, one JSON line each, in order
    assert main(["predict", "--model", str(out / "best"), "the film was great", "the plot was awful"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == ["the film was great", "the plot was awful"]
    if results["best_metric"] == 1.0:
        assert [line["label"] for line in lines] == ["1", "0"]
    assert all(set(line) >= {"label", "score", "scores", "truncated"} for line in lines)

    # from stdin (a JSON object line is a pair input) and from a file, to an output file
    monkeypatch.setattr("sys.stdin", io.StringIO("the cast was nice\n\n{\"text\": \"a\", \"text_pair\": \"b\"}\n"))
    assert main(["predict", "--model", str(out / "best")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("the show was dull\n" + "very " * 100 + "good\n")
    assert main(["predict", "--model", str(out / "best"), "--file", str(inputs), "--out", str(tmp_path / "p.jsonl"),
                 "--max-length", "16"]) == 0
    written = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [w["truncated"] for w in written] == [False, True]

    # a whole split to a prediction file
    assert main(["predict", "--model", str(out / "best"), "--task", "sst2", "--data-dir", str(data), "--split",
                 "dev", "--out", str(tmp_path / "dev.jsonl")]) == 0
    predictions = [json.loads(line) for line in (tmp_path / "dev.jsonl").read_text().splitlines()]
    assert len(predictions) == 24 and {p["prediction"] for p in predictions} <= {"0", "1"}

    # errors: exit code 2 and a message naming the problem
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--task", "sst2", "--data-dir", str(data)]) == 2
    assert "no such model directory" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("fine\n{not json\n")
    assert main(["predict", "--model", str(out / "best"), "--file", str(bad)]) == 2
    assert "bad.txt line 2: not valid JSON" in capsys.readouterr().err


def test_evaluate_conll_test_split_read_on_demand(tmp_path, vocab):
    data = write_conll(tmp_path / "conll", n_train=16, n_dev=8)
    (data / "test.txt").write_text((data / "valid.txt").read_text())
    results = finetune("tiny", "conll", data, tmp_path / "ner", tokenizer=vocab, max_steps=2, **FAST)
    dev = evaluate(results["model_dir"], "conll", data, "dev", max_length=32)
    test = evaluate(results["model_dir"], "conll", data, "test", max_length=32)
    assert test["metrics"] == dev["metrics"] and test["examples"] == {"test": 8}
    with pytest.raises(FileNotFoundError, match="no data for split 'train2'"):
        evaluate(results["model_dir"], "conll", data, "train2")
    path = predict_split(results["model_dir"], "conll", data, "test", tmp_path / "ner.jsonl", max_length=32)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 8 and all(set(r["prediction"]) <= {"O", "B-PER", "B-LOC"} for r in rows)


def test_mnli_scores_both_dev_sets_and_writes_the_glue_test_file(tmp_path, vocab):
    data = tmp_path / "MNLI"
    data.mkdir()
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train", 24), ("dev_matched", 6), ("dev_mismatched", 9)):
        lines = ["index\tsentence1\tsentence2\tgold_label"]
        lines += [f"{i}\tthe film was good\tthe film was {NOUNS[i % 6]}\t{labels[i % 3]}" for i in range(n)]
        (data / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    test = ["index\tsentence1\tsentence2"] + [f"{i}\tthe cast was nice\tit was bad" for i in range(5)]
    (data / "test_matched.tsv").write_text("\n".join(test) + "\n")
    results = finetune("tiny", "mnli", data, tmp_path / "run", tokenizer=vocab, max_steps=2, **FAST)
    assert set(results["dev"]) == {"accuracy", "dev_matched_accuracy", "dev_mismatched_accuracy"}
    assert results["dev"]["accuracy"] == results["dev"]["dev_matched_accuracy"]
    assert results["eval_examples"] == {"dev_matched": 6, "dev_mismatched": 9}
    (tmp_path / "glue").mkdir()  # a directory: the official file name is used inside it
    path = predict_split(results["model_dir"], "mnli", data, "test_matched", tmp_path / "glue", max_length=32)
    rows = path.read_text().splitlines()
    assert path.name == "MNLI-m.tsv" and rows[0] == "index\tprediction" and len(rows) == 6
    assert {row.split("\t")[1] for row in rows[1:]} <= set(labels)


def test_own_table_with_named_columns_via_cli(tmp_path, vocab, capsys):
    data = tmp_path / "reviews"
    data.mkdir()
    for name, seed in (("train", 0), ("dev", 1)):
        lines = ["review,stars"] + [f"\"{text}\",{'pos' if label else 'neg'}"
                                    for text, label in sentiment_rows(32, seed)]
        (data / f"{name}.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "table"
    assert main(["finetune", "--task", "table", "--data-dir", str(data), "--model", "tiny", "--out", str(out),
                 "--tokenizer", str(vocab), "--text-column", "review", "--label-column", "stars", "--max-steps",
                 "3", "--no-progress", "--max-length", "32"]) == 0
    assert set(load_model(out / "best").config.id2label.values()) == {"neg", "pos"}
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "best"), "--task", "table", "--data-dir", str(data),
                 "--text-column", "review", "--label-column", "stars"]) == 0
    assert set(json.loads(capsys.readouterr().out)["metrics"]) == {"accuracy"}
    assert main(["evaluate", "--model", str(out / "best"), "--task", "table", "--data-dir", str(data)]) == 2
    assert "missing column 'text'" in capsys.readouterr().err
