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
    results = pipe.run(TEXTS)
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results):
        enc = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits[0], -1)
        assert result["scores"] == pytest.approx(dict(zip(["negative", "positive", "neutral"], probs.tolist())),
                                                 abs=1e-5)
        assert result["label"] == ["negative", "positive", "neutral"][int(probs.argmax())]
        assert result["truncated"] is False
    assert pipe.run(TEXTS[2])["scores"] == pytest.approx(results[2]["scores"])  # one input in, one result out
    pairs = pipe.run([("the film was good", "the plot was bad"), "good", {"text": "good", "text_pair": "bad"}])
    enc = tokenizer(["good"], ["bad"], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits[0], -1)
    assert list(pairs[2]["scores"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
    assert pairs[1]["scores"] == pytest.approx(pipe.run("good")["scores"])  # a single between pairs stays a single


def test_text_classification_long_input_is_truncated_and_flagged_or_refused(tmp_path, tokenizer):
    _, directory = saved(tmp_path, tokenizer, "sequence_classification")
    pipe = pipeline("text-classification", model=directory, max_length=16)
    long_text = "the film was " + "very " * 40 + "good"
    short, cut = pipe.run(["the film was good", long_text])
    assert short["truncated"] is False and cut["truncated"] is True
    with pytest.raises(InputTooLong, match=r"inputs\[1\] is longer than max_length=16"):
        pipe.run(["fine", long_text], truncation=False)


def test_regression_model_returns_a_score(tmp_path, tokenizer):
    model, directory = saved(tmp_path, tokenizer, "sequence_classification", num_labels=1,
                             problem_type="regression")
    result = pipeline("text-classification", model=directory).run(("the film was good", "the film was nice"))
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
    result = pipe.run(text)
    assert result["truncated"] is False
    [entity] = result["entities"]
    assert (entity["entity"], entity["start"], entity["end"], entity["word"]) == ("PER", 0, len(text), text)
    assert entity["score"] == pytest.approx(float(np.exp(5) / (1 + np.exp(1) + np.exp(5))), abs=1e-5)
    cut = pipeline("token-classification", model=directory, max_length=8).run("john " * 20)
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
    long, short = pipe.run([{"question": "where is the city ?", "context": context},
                        ("who ?", "john lives in rome .")])
    assert long["windows"] > 4 and short["windows"] == 1
    for result, text in ((long, context), (short, "john lives in rome .")):
        assert result["answer"] == text[result["start"]:result["end"]] and result["answer"]
        assert 0.0 < result["score"] <= 1.0
    with pytest.raises(InputTooLong, match="question has"):
        pipe.run({"question": "where " * 40, "context": "paris"})
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected keys 'question' and 'context'"):
        pipe.run({"question": "where ?"})


def test_feature_extraction_mean_and_cls_pooling(tmp_path, tokenizer):
    model, directory = saved(tmp_path, tokenizer, "base")
    pipe = pipeline("feature-extraction", model=directory, batch_size=3)
    results = pipe.run(TEXTS)
    enc = tokenizer([TEXTS[1]], return_tensors="pt")
    with torch.no_grad():
        hidden = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).last_hidden_state[0]
    assert results[1]["embedding"] == pytest.approx(hidden.mean(0).tolist(), abs=1e-5)
    cls = pipe.run(TEXTS[1], pooling="cls")["embedding"]
    assert cls == pytest.approx(hidden[0].tolist(), abs=1e-5)
    unit = pipeline("feature-extraction", model=directory, normalize=True).run(TEXTS[0])["embedding"]
    assert np.linalg.norm(unit) == pytest.approx(1.0) and len(unit) == model.config.hidden_size


def test_bad_inputs_and_mismatched_models_are_named(tmp_path, tokenizer):
    _, directory = saved(tmp_path, tokenizer, "sequence_classification")
    pipe = pipeline("text-classification", model=directory)
    with pytest.raises(ValueError, match=r"inputs\[1\] is empty"):
        pipe.run(["fine", "   "])
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a string, got int"):
        pipe.run([3])
    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        pipeline("summarization", model=directory)
    with pytest.raises(ValueError, match="needs a token_classification model"):
        pipeline("token-classification", model=HEADS["sequence_classification"](preset("tiny")), tokenizer=tokenizer)
    assert pipe([]) == []


# ---------------------------------------------------------------------------------------------- transformers' shapes
# pipe(...) answers as transformers' own pipeline does on the same checkpoint (transformers loads ours as its
# SqueezeBERT); pipe.run(...) keeps our richer results (tested above).

transformers = pytest.importorskip("transformers")


def hf_pipeline(task: str, directory, **kwargs):
    transformers.logging.set_verbosity_error()
    return transformers.pipeline(task, model=str(directory), device="cpu", **kwargs)


def assert_same(ours, theirs, where="result"):
    """Same structure, keys, labels, words and offsets; scores and vectors within 1e-5 (float sums reordered)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{where}: {ours} vs {theirs}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours} vs {theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, str) or isinstance(theirs, (int, np.integer)) and not isinstance(theirs, bool):
        assert ours == theirs, f"{where}: {ours!r} vs {theirs!r}"
    else:
        assert ours == pytest.approx(float(theirs), abs=1e-5), f"{where}: {ours!r} vs {theirs!r}"


def varied_tagger(tmp_path, tokenizer):
    """A token classifier whose labels change from token to token: the encoder's projections are zeroed, so each
    hidden state is the (normalised) embedding of its own token, and a large random classifier reads it."""
    from squeezebert.model import GroupedProjection

    torch.manual_seed(0)
    model = HEADS["token_classification"](preset("tiny", vocab_size=tokenizer.vocab_size, id2label={
        0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GroupedProjection):
                module.weight.zero_()
        model.classifier.weight.normal_(0, 1.0)
    return save_model(model, tmp_path / "tagger", tokenizer=tokenizer)


def test_text_classification_call_matches_transformers(tmp_path, tokenizer):
    from helpers import perturbed

    model = perturbed("sequence_classification", scale=0.5, vocab_size=tokenizer.vocab_size,
                      id2label={0: "negative", 1: "positive", 2: "neutral"})
    directory = save_model(model, tmp_path / "cls", tokenizer=tokenizer)
    ours, theirs = pipeline("sentiment-analysis", model=directory), hf_pipeline("sentiment-analysis", directory)
    pair = {"text": "the film was good", "text_pair": "the plot was bad"}
    calls = [(TEXTS[0], {}), (TEXTS, {}), (TEXTS[0], {"top_k": 2}), (TEXTS, {"top_k": None}), (pair, {}),
             ([pair], {}), (TEXTS[1], {"function_to_apply": "sigmoid"}), (TEXTS[:2], {"top_k": 1})]
    for inputs, options in calls:
        assert_same(ours(inputs, **options), theirs(inputs, **options), f"{inputs!r} {options}")
    assert isinstance(ours(TEXTS[0]), list) and isinstance(ours(pair), dict)  # transformers' odd single shapes
    assert len({round(r["score"], 3) for r in ours(TEXTS)}) == len(TEXTS)  # distinct scores: a mix-up would show
    assert_same(pipeline("text-classification", model=directory, top_k=None)(TEXTS[0]), theirs(TEXTS[0], top_k=None))
    with pytest.raises(TypeError, match="unknown option.*topk.*it takes truncation, top_k, function_to_apply"):
        ours(TEXTS[0], topk=2)
    with pytest.raises(TypeError, match="unknown option"):
        pipeline("text-classification", model=directory, aggregation_strategy="simple")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        ours(TEXTS[0], top_k=0)


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_call_matches_transformers(tmp_path, tokenizer, strategy):
    directory = varied_tagger(tmp_path, tokenizer)
    texts = ["Johnny Smith visited Paris and Berlin in rome", "anna went home to London, then to ROME!"]
    ours = pipeline("ner", model=directory, aggregation_strategy=strategy)
    expected = hf_pipeline("ner", directory, aggregation_strategy=strategy)(texts)
    got = ours(texts)
    assert_same(got, expected, strategy)
    assert_same(ours(texts[0]), expected[0], strategy)  # one text -> its list of entities
    key = "entity" if strategy == "none" else "entity_group"
    assert all(key in e for e in got[0]) and len({e[key] for e in got[0] + got[1]}) > 1
    if strategy != "none":
        assert any(" " in e["word"] or len(e["word"]) > 4 for e in got[0])  # groups span several tokens


def test_question_answering_takes_question_and_context_keywords(tmp_path, tokenizer):
    _, directory = saved(tmp_path, tokenizer, "question_answering")
    qa = pipeline("question-answering", model=directory)
    context = "john lives in paris and mary lives in rome ."
    rich = qa.run({"question": "where does john live ?", "context": context})
    one = qa(question="where does john live ?", context=context)
    assert one == {"score": rich["score"], "start": rich["start"], "end": rich["end"], "answer": rich["answer"]}
    assert qa({"question": "where does john live ?", "context": context}) == one
    both = qa(question=["where does john live ?", "who lives in rome ?"], context=context)
    assert isinstance(both, list) and both[0] == one and context[both[1]["start"]:both[1]["end"]] == both[1]["answer"]
    with pytest.raises(TypeError, match="not a mix"):
        qa({"question": "a", "context": "b"}, question="a", context="b")
    with pytest.raises(ValueError, match="2 questions for 3 contexts"):
        qa(question=["a ?", "b ?"], context=["x", "y", "z"])
    with pytest.raises(TypeError, match="unknown option.*top_k"):
        qa(question="a ?", context="b", top_k=2)


def test_feature_extraction_call_matches_transformers(tmp_path, tokenizer):
    from helpers import perturbed

    directory = save_model(perturbed("base", vocab_size=tokenizer.vocab_size), tmp_path / "enc", tokenizer=tokenizer)
    ours, theirs = pipeline("feature-extraction", model=directory), hf_pipeline("feature-extraction", directory)
    assert_same(ours(TEXTS[1]), theirs(TEXTS[1]))  # (1, tokens, hidden) as nested lists
    assert_same(ours(TEXTS), theirs(TEXTS))
    tokens = np.asarray(theirs(TEXTS[1])[0])
    assert ours(TEXTS[1], pooling="mean") == pytest.approx(tokens.mean(0).tolist(), abs=1e-5)  # one vector
    pooled = pipeline("feature-extraction", model=directory, pooling="cls", normalize=True)(TEXTS)
    assert np.asarray(pooled).shape == (len(TEXTS), 32) and np.linalg.norm(pooled[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalize=True needs a pooling"):
        ours(TEXTS[0], normalize=True)


def test_task_aliases_and_inferred_task(tmp_path, tokenizer):
    directory = varied_tagger(tmp_path, tokenizer)
    assert pipeline(model=directory).task == "token-classification"  # from the checkpoint's head
    assert pipeline("ner", model=directory).task == "token-classification"
    with pytest.raises(ValueError, match="unknown task 'summarization'.*sentiment-analysis, ner"):
        pipeline("summarization", model=directory)
    with pytest.raises(TypeError, match="needs model="):
        pipeline("ner")
