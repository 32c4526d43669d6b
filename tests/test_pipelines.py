"""Inference pipelines on tiny saved checkpoints: results match the model, inputs keep their order through length
sorting and batching, long inputs are truncated (and flagged) or read in stride windows, bad inputs are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from squeezebert import preset
from squeezebert.checkpoint import save_model
from squeezebert.model import HEADS
from squeezebert.pipelines import InputTooLong, group_entities, pipeline
from squeezebert.tokenizer import Tokenizer
from test_finetune import one_thread, write_vocab  # noqa: F401  (one_thread: an autouse fixture, used here too)

TEXTS = ["the film was good", "a really very very lovely and nice plot was here", "bad", "the cast was dull ."]


@pytest.fixture
def tokenizer(tmp_path) -> Tokenizer:
    return Tokenizer.from_vocab(write_vocab(tmp_path))


def saved(tmp_path, tokenizer, head: str, **config) -> tuple:
    torch.manual_seed(0)
    model = HEADS[head](preset("tiny", vocab_size=tokenizer.vocab_size, **config))
    directory = save_model(model, tmp_path / head, tokenizer=tokenizer)
    return model.eval(), directory


def test_text_classification_matches_the_model_in_input_order(tmp_path, tokenizer):
    model, directory = saved(tmp_path, tokenizer, "sequence_classification",
                             id2label={0: "negative", 1: "positive", 2: "neutral"})
    pipe = pipeline("text-classification", model=directory, batch_size=2)
    results = pipe(TEXTS)
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results):
        enc = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits[0], -1)
        assert result["scores"] == pytest.approx(dict(zip(["negative", "positive", "neutral"], probs.tolist())),
                                                 abs=1e-5)
        assert result["label"] == ["negative", "positive", "neutral"][int(probs.argmax())]
        assert result["truncated"] is False
    assert pipe(TEXTS[2])["scores"] == pytest.approx(results[2]["scores"])  # one input in, one result out
    pairs = pipe([("the film was good", "the plot was bad"), "good", {"text": "good", "text_pair": "bad"}])
    enc = tokenizer(["good"], ["bad"], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits[0], -1)
    assert list(pairs[2]["scores"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
    assert pairs[1]["scores"] == pytest.approx(pipe("good")["scores"])  # a single between pairs stays a single


def test_text_classification_long_input_is_truncated_and_flagged_or_refused(tmp_path, tokenizer):
    _, directory = saved(tmp_path, tokenizer, "sequence_classification")
    pipe = pipeline("text-classification", model=directory, max_length=16)
    long_text = "the film was " + "very " * 40 + "good"
    short, cut = pipe(["the film was good", long_text])
    assert short["truncated"] is False and cut["truncated"] is True
    with pytest.raises(InputTooLong, match=r"inputs\[1\] is longer than max_length=16"):
        pipe(["fine", long_text], truncation=False)


def test_regression_model_returns_a_score(tmp_path, tokenizer):
    model, directory = saved(tmp_path, tokenizer, "sequence_classification", num_labels=1,
                             problem_type="regression")
    result = pipeline("text-classification", model=directory)(("the film was good", "the film was nice"))
    enc = tokenizer(["the film was good"], ["the film was nice"], return_tensors="pt")
    with torch.no_grad():
        expected = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits.item()
    assert set(result) == {"score", "truncated"} and result["score"] == pytest.approx(expected, abs=1e-5)


def test_token_classification_entities_with_character_offsets(tmp_path, tokenizer):
    model, directory = saved(tmp_path, tokenizer, "token_classification",
                             id2label={0: "O", 1: "B-PER", 2: "I-PER"})
    with torch.no_grad():  # every token scores I-PER highest: one entity over all the words
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 1.0, 5.0]))
    directory = save_model(model, tmp_path / "ner", tokenizer=tokenizer)
    pipe = pipeline("token-classification", model=directory)
    text = "John  Smith visited   Paris"
    result = pipe(text)
    assert result["truncated"] is False
    [entity] = result["entities"]
    assert (entity["entity"], entity["start"], entity["end"], entity["word"]) == ("PER", 0, len(text), text)
    assert entity["score"] == pytest.approx(float(np.exp(5) / (1 + np.exp(1) + np.exp(5))), abs=1e-5)
    cut = pipeline("token-classification", model=directory, max_length=8)("john " * 20)
    assert cut["truncated"] is True and cut["entities"][0]["end"] < len("john " * 20)


def test_group_entities_iob_rules():
    text = "Ann Lee met Bob in Rome"
    words = [("B-PER", 0.9, 0, 3), ("I-PER", 0.7, 4, 7), ("O", 1.0, 8, 11), ("I-PER", 0.8, 12, 15),
             ("O", 1.0, 16, 18), ("B-LOC", 0.6, 19, 23)]
    assert group_entities(text, words) == [
        {"entity": "PER", "start": 0, "end": 7, "word": "Ann Lee", "score": pytest.approx(0.8)},
        {"entity": "PER", "start": 12, "end": 15, "word": "Bob", "score": pytest.approx(0.8)},
        {"entity": "LOC", "start": 19, "end": 23, "word": "Rome", "score": pytest.approx(0.6)},
    ]
    adjacent = [("B-PER", 1.0, 0, 3), ("B-PER", 1.0, 4, 7)]  # B- opens a new entity even after the same type
    assert [e["word"] for e in group_entities(text, adjacent)] == ["Ann", "Lee"]


def test_question_answering_reads_long_contexts_in_windows(tmp_path, tokenizer):
    _, directory = saved(tmp_path, tokenizer, "question_answering")
    pipe = pipeline("question-answering", model=directory, max_length=32, doc_stride=8)
    context = " ".join(["the city of paris is lovely and the film was good"] * 12)
    long, short = pipe([{"question": "where is the city ?", "context": context},
                        ("who ?", "john lives in rome .")])
    assert long["windows"] > 4 and short["windows"] == 1
    for result, text in ((long, context), (short, "john lives in rome .")):
        assert result["answer"] == text[result["start"]:result["end"]] and result["answer"]
        assert 0.0 < result["score"] <= 1.0
    with pytest.raises(InputTooLong, match="question has"):
        pipe({"question": "where " * 40, "context": "paris"})
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected keys 'question' and 'context'"):
        pipe({"question": "where ?"})


def test_feature_extraction_mean_and_cls_pooling(tmp_path, tokenizer):
    model, directory = saved(tmp_path, tokenizer, "base")
    pipe = pipeline("feature-extraction", model=directory, batch_size=3)
    results = pipe(TEXTS)
    enc = tokenizer([TEXTS[1]], return_tensors="pt")
    with torch.no_grad():
        hidden = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).last_hidden_state[0]
    assert results[1]["embedding"] == pytest.approx(hidden.mean(0).tolist(), abs=1e-5)
    cls = pipe(TEXTS[1], pooling="cls")["embedding"]
    assert cls == pytest.approx(hidden[0].tolist(), abs=1e-5)
    unit = pipeline("feature-extraction", model=directory, normalize=True)(TEXTS[0])["embedding"]
    assert np.linalg.norm(unit) == pytest.approx(1.0) and len(unit) == model.config.hidden_size


def test_bad_inputs_and_mismatched_models_are_named(tmp_path, tokenizer):
    _, directory = saved(tmp_path, tokenizer, "sequence_classification")
    pipe = pipeline("text-classification", model=directory)
    with pytest.raises(ValueError, match=r"inputs\[1\] is empty"):
        pipe(["fine", "   "])
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a string, got int"):
        pipe([3])
    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        pipeline("summarization", model=directory)
    with pytest.raises(ValueError, match="needs a token_classification model"):
        pipeline("token-classification", model=HEADS["sequence_classification"](preset("tiny")), tokenizer=tokenizer)
    assert pipe([]) == []
