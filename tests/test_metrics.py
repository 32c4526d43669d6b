"""Metrics against hand-computed values; SQuAD normalisation and EM/F1 on crafted answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from squeezebert.data.glue import TASKS
from squeezebert.data.squad import exact_match, normalize_answer, token_f1
from squeezebert.metrics import METRICS, PRIMARY_METRIC, compute, ner_scores, primary_metric

# 7 examples: TP=3, FN=1, TN=2, FP=1
LABELS = [1, 1, 1, 1, 0, 0, 0]
PREDS = [1, 1, 1, 0, 0, 0, 1]


def test_matthews_by_hand():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 1) / sqrt(4*4*3*3) = 5/12
    assert compute("cola", PREDS, LABELS) == {"mcc": pytest.approx(5 / 12)}
    assert compute("cola", ["1", "0", "1"], [1, 0, 0]) == {"mcc": pytest.approx(0.5)}  # ids and strings agree
    assert compute("cola", [1, 1, 1], [1, 0, 1]) == {"mcc": 0.0}  # one predicted class


def test_f1_positive_class_and_accuracy():
    # precision 3/4, recall 3/4 -> F1 3/4; accuracy 5/7
    assert compute("mrpc", PREDS, LABELS) == {"f1": pytest.approx(0.75), "accuracy": pytest.approx(5 / 7)}
    # class 1 is positive: swapping the classes changes F1 (precision 2/3, recall 2/3)
    flipped = compute("qqp", [1 - p for p in PREDS], [1 - y for y in LABELS])
    assert flipped["f1"] == pytest.approx(2 / 3)
    assert compute("mrpc", ["0", "0"], ["0", "0"]) == {"f1": 0.0, "accuracy": 1.0}
    with pytest.raises(ValueError, match="binary F1 needs classes 0 and 1"):
        compute("mrpc", [2, 0], [1, 0])


def test_accuracy_tasks_and_label_strings():
    for task in ("sst2", "mnli", "mnli-mm", "qnli", "rte", "wnli", "swag"):
        assert compute(task, PREDS, LABELS) == {"accuracy": pytest.approx(5 / 7)}
    mnli = compute("mnli", ["neutral", "entailment", "neutral"], ["neutral", "contradiction", "neutral"])
    assert mnli == {"accuracy": pytest.approx(2 / 3)}
    assert compute("SST-2", np.array([1.0, 0.0]), ["1", "1"]) == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute("rte", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="not class ids"):
        compute("sst2", [0.4, 0.6], [0, 1])


def test_pearson_spearman_by_hand():
    # x = 1,2,3; y = 1,2,4: cov sum 3, var sums 2 and 42/9 -> r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    scores = compute("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert scores == {"pearson": pytest.approx(9 / math.sqrt(84)), "spearman": pytest.approx(1.0)}
    # ranks 1,2,3,4 vs 1,3,2,4: sum d^2 = 2 -> rho = 1 - 6*2 / (4*15) = 0.8
    assert compute("stsb", np.array([[1.0], [2.0], [3.0], [4.0]]), [1, 3, 2, 4])["spearman"] == pytest.approx(0.8)
    constant = compute("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(constant["pearson"]) and math.isnan(constant["spearman"])


def test_seqeval_entity_scores():
    gold = [["B-ORG", "I-ORG", "O", "B-PER"], ["B-LOC", "O"]]
    pred = [["B-ORG", "O", "O", "B-PER"], ["B-LOC", "O"]]
    # gold entities ORG(0-1) PER(3) LOC(0); predicted ORG(0) PER(3) LOC(0): 2 of 3 right either way
    scores = ner_scores(pred, gold)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3) and scores["accuracy"] == pytest.approx(5 / 6)
    # an entity opened by I-LOC: conlleval (default) counts it, strict IOB2 does not
    gold, pred = [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "I-LOC"]]
    assert compute("conll2003", pred, gold)["f1"] == pytest.approx(1.0)
    strict = ner_scores(pred, gold, strict=True)
    assert (strict["precision"], strict["recall"], strict["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    with pytest.raises(ValueError, match="sentence 0: 1 predicted tags for 2 gold tags"):
        ner_scores([["O"]], [["O", "O"]])


def test_squad_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear & the theory") == "apple pear theory"  # 'theory' keeps its 'the'
    assert normalize_answer("  A.B.C.  ") == "abc"
    assert exact_match("the Broncos.", "Broncos") == 1.0
    assert token_f1("Denver", "Denver Broncos") == pytest.approx(2 / 3)  # P=1, R=1/2
    assert token_f1("apple pie", "the apple tart") == pytest.approx(0.5)  # P=R=1/2
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0 and token_f1("y", "x") == 0.0


def test_squad_em_f1_max_over_golds_and_missing():
    references = {
        "q1": ["Denver Broncos"],
        "q2": ["Denver Broncos", "Broncos"],
        "q3": ["apple tart", "the apple pie"],
        "q4": ["x"],
    }
    predictions = {"q1": "The Denver Broncos!", "q2": "Denver", "q3": "an apple pie"}  # q4 unanswered: 0
    # EM: 1, 0, 1, 0 ; F1: 1, max(2/3, 0) , 1, 0
    scores = compute("squad", predictions, references)
    assert scores == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(100 * (2 + 2 / 3) / 4)}


def test_squad_v2_no_answer():
    references = {"a": ["Broncos"], "n1": [], "n2": []}
    scores = compute("squad_v2", {"a": "broncos", "n1": "", "n2": "Panthers"}, references)
    assert scores["exact_match"] == pytest.approx(200 / 3) and scores["f1"] == pytest.approx(200 / 3)
    assert scores["has_answer_exact_match"] == 100.0 and scores["no_answer_exact_match"] == 50.0
    assert scores["no_answer_f1"] == 50.0
    # a gold that normalises to nothing ("The") is not a no-answer gold when a real one exists
    assert compute("squad_v2", {"q": ""}, {"q": ["The", "Broncos"]}) == {"exact_match": 0.0, "f1": 0.0}


def test_registry_and_primary_metric():
    assert set(TASKS) <= set(METRICS) and set(METRICS) == set(PRIMARY_METRIC)
    for task, spec in TASKS.items():
        assert primary_metric(task) in spec.metrics, task
    assert [primary_metric(t) for t in ("cola", "mrpc", "stsb", "qqp", "mnli", "conll2003", "squad")] == [
        "mcc", "f1", "spearman", "f1", "accuracy", "f1", "f1"
    ]
    assert primary_metric("STS-B") == "spearman"
    with pytest.raises(KeyError, match="no metric for task 'imagenet'"):
        primary_metric("imagenet")
    # each GLUE metric function returns exactly the names its TaskSpec declares
    examples = {"stsb": ([0.5, 1.5, 1.0], [1.0, 2.0, 1.0])}
    for task, spec in TASKS.items():
        predictions, labels = examples.get(task, (PREDS, LABELS))
        assert set(compute(task, predictions, labels)) == set(spec.metrics), task
