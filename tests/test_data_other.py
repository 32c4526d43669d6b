"""User tables, CoNLL-2003, SQuAD and SWAG readers, the SQuAD split by article: inline fixtures, error paths and the
real files."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from squeezebert.data.conll import align_labels, b_to_i_map, iob1_to_iob2, read_conll
from squeezebert.data.multiple_choice import MultipleChoiceExample, read_swag
from squeezebert.data.squad import (
    Answer,
    article_range,
    postprocess_predictions,
    read_squad,
    split_by_article,
    write_article_split,
)
from squeezebert.data.tabular import DataError, Example, read_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- tabular


def test_csv_with_quoted_commas_and_a_pair_column(tmp_path):
    path = write(tmp_path / "pairs.csv", 'id,q,a,y\n7,"Hello, world",Hi,yes\n8,"He said ""no""","multi\nline",no\n')
    result = read_table(path, text_column="q", text_pair_column="a", label_column="y", id_column="id")
    assert list(result) == [
        Example("pairs-7", "Hello, world", "Hi", "yes"),
        Example("pairs-8", 'He said "no"', "multi\nline", "no"),
    ]
    assert result.labels == ["no", "yes"]


def test_tsv_and_jsonl_and_integer_label_inference(tmp_path):
    tsv = write(tmp_path / "a.tsv", 'text\tlabel\n"quoted" stays\t10\nb\t2\nc\t2\n')
    result = read_table(tsv)
    assert [e.text_a for e in result] == ['"quoted" stays', "b", "c"]  # TSV: QUOTE_NONE by default
    assert result.labels == ["2", "10"]  # numeric order, not "10" < "2"
    jsonl = write(tmp_path / "b.jsonl", '{"text": "x", "label": 1}\n\n{"text": "y", "label": 0}\n')
    assert [(e.guid, e.label) for e in read_table(jsonl)] == [("b-0", "1"), ("b-1", "0")]


def test_given_label_list_rejects_unknown_label_with_line(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nok,pos\nhm,neutral\n")
    with pytest.raises(DataError, match=r"d\.csv:3: unknown label 'neutral' \(expected one of \['neg', 'pos'\]\)"):
        read_table(path, labels=["neg", "pos"])


def test_table_errors_name_file_line_and_column(tmp_path):
    path = write(tmp_path / "d.csv", "sentence,label\nok,1\n")
    with pytest.raises(DataError, match=r"d\.csv:1: missing column 'text'"):
        read_table(path)
    jsonl = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"txt": "b", "label": "y"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: missing column 'text'"):
        read_table(jsonl)
    broken = write(tmp_path / "e.jsonl", '{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(DataError, match=r"e\.jsonl:2: invalid JSON"):
        read_table(broken)
    scores = write(tmp_path / "s.tsv", "text\tlabel\na\t0.5\nb\tlots\n")
    with pytest.raises(DataError, match=r"s\.tsv:3: non-numeric label 'lots'"):
        read_table(scores, regression=True)
    assert [e.label for e in read_table(scores, regression=True, skip_bad_rows=True)] == [0.5]
    with pytest.raises(DataError, match="empty file"):
        read_table(write(tmp_path / "empty.csv", ""))
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_table(write(tmp_path / "x.dat", "text\n"))


def test_headerless_unlabeled_and_skip(tmp_path):
    path = write(tmp_path / "raw.tsv", "a\tpos\nb\nc\tneg\n")
    with pytest.raises(DataError, match=r"raw\.tsv:2: wrong column count: 1 fields, the expected layout has 2"):
        read_table(path, column_names=["text", "label"])
    result = read_table(path, column_names=["text", "label"], skip_bad_rows=True)
    assert [(e.text_a, e.label) for e in result] == [("a", "pos"), ("c", "neg")]
    assert (result.skipped, result.skipped_lines) == (1, [2])
    unlabeled = read_table(write(tmp_path / "u.csv", "text\nhello\n"), label_column=None)
    assert list(unlabeled) == [Example("u-0", "hello", None, None)] and unlabeled.labels is None


# ---------------------------------------------------------------------------------------------- CoNLL

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""

CONLL_IOB1 = """-DOCSTART- -X- -X- O

U.N. NNP I-NP I-ORG
official NN I-NP O
Ekeus NNP I-NP I-PER
heads VBZ I-VP O
for IN I-PP O
Baghdad NNP I-NP I-LOC
Bonn NNP I-NP B-LOC
"""


def test_conll_reads_sentences_and_label_list(tmp_path):
    result = read_conll(write(tmp_path / "eng.train", CONLL))
    assert [tuple(s) for s in result] == [
        (["EU", "rejects", "German", "call", "."], ["B-ORG", "O", "B-MISC", "O", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["BRUSSELS"], ["B-LOC"]),
    ]
    assert result.labels == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]


def test_conll_iob1_detected_and_converted(tmp_path):
    path = write(tmp_path / "iob1.txt", CONLL_IOB1)
    expected = ["B-ORG", "O", "B-PER", "O", "O", "B-LOC", "B-LOC"]
    assert read_conll(path)[0].tags == expected
    assert read_conll(path, scheme="IOB1")[0].tags == expected
    with pytest.raises(DataError, match=r"iob1\.txt:3: 'I-ORG' opens an entity"):
        read_conll(path, scheme="IOB2")
    assert iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]


def test_conll_errors_and_skip(tmp_path):
    path = write(tmp_path / "bad.txt", "EU NNP B-NP B-ORG\n\nPeter NNP B-NP\nBlack NNP I-NP I-PER\n\nOK NN B-NP O\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: wrong column count: 3 fields, earlier lines have 4"):
        read_conll(path)
    result = read_conll(path, skip_bad_rows=True)
    assert [s.tokens for s in result] == [["EU"], ["OK"]] and result.skipped == 1
    with pytest.raises(DataError, match=r"tags\.txt:1: tag 'E-PER' is not O"):
        read_conll(write(tmp_path / "tags.txt", "Ann NNP B-NP E-PER\n"))
    with pytest.raises(DataError, match="empty file"):
        read_conll(write(tmp_path / "docs.txt", "-DOCSTART- -X- -X- O\n\n"))


def test_align_labels():
    #          [CLS] Peter Black ##burn  .  [SEP]
    word_ids = [None, 0, 1, 1, 2, None]
    assert align_labels(word_ids, [1, 1, 0]) == [-100, 1, 1, -100, 0, -100]
    assert align_labels(word_ids, [1, 1, 0], label_all_subtokens=True) == [-100, 1, 1, 1, 0, -100]
    labels = ["O", "B-PER", "I-PER"]
    assert b_to_i_map(labels) == [0, 2, 2]
    assert align_labels([None, 0, 0, 0], [1], label_all_subtokens=True, b_to_i=b_to_i_map(labels)) == [-100, 1, 2, 2]


@pytest.mark.skipif(not (DATA / "conll2003").is_dir(), reason=f"real CoNLL-2003 not present at {DATA / 'conll2003'}")
def test_real_conll_valid():
    result = read_conll(DATA / "conll2003" / "valid.txt")
    assert len(result) == 3250 and result.skipped == 0
    assert result.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert result[0].tokens[:3] == ["CRICKET", "-", "LEICESTERSHIRE"]


# ---------------------------------------------------------------------------------------------- SQuAD


def squad_file(tmp_path: Path, qas: list[dict], version: str = "1.1") -> Path:
    context = "Denver Broncos won Super Bowl 50."
    document = {"version": version, "data": [{"title": "SB", "paragraphs": [{"context": context, "qas": qas}]}]}
    return write(tmp_path / "squad.json", json.dumps(document, indent=1))


def test_squad_v1_and_v2(tmp_path):
    qas = [
        {
            "id": "q1",
            "question": "Who won?",
            "answers": [{"text": "Denver Broncos", "answer_start": 0}, {"text": "Broncos", "answer_start": 7}],
        },
        {
            "id": "q2",
            "question": "Who lost?",
            "answers": [],
            "is_impossible": True,
            "plausible_answers": [{"text": "Denver", "answer_start": 0}],
        },
    ]
    result = read_squad(squad_file(tmp_path, qas, "v2.0"))
    first, second = result
    assert (first.id, first.title, first.question, first.is_impossible) == ("q1", "SB", "Who won?", False)
    assert first.answers == [Answer("Denver Broncos", 0), Answer("Broncos", 7)]
    assert (second.answers, second.is_impossible) == ([], True)


def test_squad_errors(tmp_path):
    shifted = [{"id": "q9", "question": "?", "answers": [{"text": "Broncos", "answer_start": 3}]}]
    where = r"squad\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\] \(id q9\): "
    with pytest.raises(DataError, match=where + "answer 'Broncos' is not at answer_start 3"):
        read_squad(squad_file(tmp_path, shifted))
    ok = {"id": "q1", "question": "?", "answers": [{"text": "Denver", "answer_start": 0}]}
    result = read_squad(squad_file(tmp_path, [ok] + shifted), skip_bad_rows=True)
    assert [e.id for e in result] == ["q1"] and result.skipped == 1
    with pytest.raises(DataError, match=r"broken\.json:3: invalid JSON"):
        read_squad(write(tmp_path / "broken.json", '{"data": [\n  1,\n  ]\n}'))
    with pytest.raises(DataError, match="no top-level 'data' list"):
        read_squad(write(tmp_path / "other.json", "{}"))


@pytest.mark.skipif(not (DATA / "squad").is_dir(), reason=f"real SQuAD not present at {DATA / 'squad'}")
def test_real_squad_dev():
    result = read_squad(DATA / "squad" / "dev-v1.1.json")
    assert len(result) == 10570 and result.skipped == 0
    assert result[0].id == "56be4db0acb8001400a502ec" and result[0].answers[0] == Answer("Denver Broncos", 177)
    assert not any(e.is_impossible for e in result)


# ---------------------------------------------------------------------------------------------- SQuAD split by article


def squad_articles(path: Path, count: int = 48, change: Callable[[list[dict]], None] | None = None) -> Path:
    """A SQuAD v1.1 file of ``count`` articles ``T0``...: article a has a % 3 + 1 paragraphs of 2 questions."""
    data = []
    for a in range(count):
        paragraphs = []
        for p in range(a % 3 + 1):
            context = f"Article {a}, paragraph {p}: the answer is topic {a}."
            answer = {"text": f"topic {a}", "answer_start": context.index(f"topic {a}")}
            qas = [{"id": f"q{a}-{p}-{q}", "question": f"Which topic ({q})?", "answers": [dict(answer)]} for q in range(2)]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"T{a}", "paragraphs": paragraphs})
    if change is not None:
        change(data)
    return write(path, json.dumps({"version": "1.1", "data": data}))


def keys(examples) -> tuple[set, set, set]:
    return {e.id for e in examples}, {e.context for e in examples}, {e.title for e in examples}


def test_squad_split_default_is_8_eval_then_40_train_found_by_the_squad_task(tmp_path):
    from squeezebert.finetune.tasks import READERS
    from squeezebert.tasks import TASKS

    source = squad_articles(tmp_path / "dev-v1.1.json")
    record = write_article_split(source, tmp_path / "split")
    train, dev = (read_squad(tmp_path / "split" / name) for name in ("train-v1.1.json", "dev-v1.1.json"))
    assert [e.title for e in dev][:1] == ["T0"] and sorted({e.title for e in dev}) == [f"T{a}" for a in range(8)]
    assert (len(train), len(dev)) == (162, 30)  # 2 questions x (1 + 2 + 3 + ...) paragraphs
    assert all(not (mine & theirs) for mine, theirs in zip(keys(train), keys(dev)))  # ids, contexts, titles
    assert record == json.loads((tmp_path / "split" / "split.json").read_text())
    assert {k: record["eval"][k] for k in ("file", "articles", "article_count", "paragraphs", "questions")} == {
        "file": "dev-v1.1.json", "articles": "0:8", "article_count": 8, "paragraphs": 15, "questions": 30}
    assert (record["train"]["articles"], record["train"]["article_count"], record["train"]["questions"]) == (
        "8:48", 40, 162)
    assert record["train"]["titles"] == [f"T{a}" for a in range(8, 48)]
    found = READERS["squad"](TASKS["squad"], tmp_path / "split")  # what `finetune --task squad --data-dir` reads
    assert found.train_path == tmp_path / "split" / "train-v1.1.json"
    assert found.eval_paths == {"dev": tmp_path / "split" / "dev-v1.1.json"}
    write_article_split(source, tmp_path / "again")  # deterministic: the same bytes
    for name in ("train-v1.1.json", "dev-v1.1.json", "split.json"):
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_squad_split_explicit_ranges_and_bad_ones(tmp_path):
    source = squad_articles(tmp_path / "dev-v1.1.json")
    split = split_by_article(source, article_range("0:40"), article_range("40:48"))
    assert [a["title"] for a in split.eval["data"]] == [f"T{a}" for a in range(40, 48)]
    assert split.train["version"] == "1.1" and len(split.train["data"]) == 40
    assert (split.record["train"]["questions"], split.record["eval"]["questions"]) == (158, 34)
    bad = [
        (lambda: article_range("8-48"), r"article range '8-48' is not START:STOP"),
        (lambda: split_by_article(source, range(8, 60)), r"train articles 8:60: .*dev-v1\.1\.json has only 48 "
                                                         r"articles \(0:48\)"),
        (lambda: split_by_article(source, range(0, 40)), r"train articles 0:40 and eval articles 0:8 overlap "
                                                         r"\(articles 0:8\)"),
        (lambda: split_by_article(source, range(8, 48), range(5, 5)), r"eval articles 5:5: need 0 <= START < STOP"),
        (lambda: split_by_article(source, range(-1, 8), range(8, 9)), r"train articles -1:8: need 0 <= START"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_squad_split_refuses_a_shared_passage_title_or_id_and_malformed_files(tmp_path):
    def same_title(data: list[dict]) -> None:  # each puts something of eval article 2 into train article 10
        data[10]["title"] = "T2"

    def same_passage(data: list[dict]) -> None:
        paragraph = json.loads(json.dumps(data[2]["paragraphs"][0]))
        for qa in paragraph["qas"]:
            qa["id"] += "-copy"
        data[10]["paragraphs"].append(paragraph)

    def same_question_id(data: list[dict]) -> None:
        data[10]["paragraphs"][0]["qas"][0]["id"] = "q2-0-0"

    cases = [
        (same_title, r"article title 'T2' is in train article 10 and eval article 2"),
        (same_passage, r"paragraph context 'Article 2, paragraph 0.* is in train article 10 and eval article 2"),
        (same_question_id, r"question id 'q2-0-0' is in train article 10 and eval article 2"),
    ]
    for change, message in cases:
        with pytest.raises(DataError, match=message):
            split_by_article(squad_articles(tmp_path / "leak.json", change=change))

    def shift(data: list[dict]) -> None:
        data[30]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 1

    with pytest.raises(DataError, match=r"data\[30\]\.paragraphs\[0\]\.qas\[1\] \(id q30-0-1\): answer 'topic 30' "
                                        r"is not at answer_start"):
        split_by_article(squad_articles(tmp_path / "shifted.json", change=shift))
    split_by_article(squad_articles(tmp_path / "shifted.json", change=shift), range(8, 30))  # not chosen: not read

    def no_questions(data: list[dict]) -> None:
        for paragraph in data[0]["paragraphs"]:
            paragraph["qas"] = []

    with pytest.raises(DataError, match=r"eval articles 0:1 have no questions"):
        split_by_article(squad_articles(tmp_path / "empty.json", change=no_questions), range(1, 48), range(0, 1))
    with pytest.raises(DataError, match=r"broken\.json:1: invalid JSON"):
        split_by_article(write(tmp_path / "broken.json", '{"data": [1,'))
    with pytest.raises(DataError, match=r"no top-level 'data' list"):
        split_by_article(write(tmp_path / "other.json", '{"version": "1.1"}'))


def load_squad_split_script():
    spec = importlib.util.spec_from_file_location("squad_split", ROOT / "benchmarks" / "squad_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_squad_split_script_states_the_split_and_fails_in_one_line(tmp_path, capsys):
    script = load_squad_split_script()
    source = squad_articles(tmp_path / "dev-v1.1.json")
    assert script.main(["--source", str(source), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "train train-v1.1.json  articles 8:48   (40 articles, 81 paragraphs, 162 questions): T8, T9," in printed
    assert "eval  dev-v1.1.json    articles 0:8    (8 articles, 15 paragraphs, 30 questions): T0, T1," in printed
    assert (tmp_path / "out" / "split.json").is_file()
    assert script.main(["--source", str(source), "--out", str(tmp_path / "no"), "--eval-articles", "0:60"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("squad_split: error: eval articles 0:60: ") and error.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_real_squad_dev_split(data_dir, tmp_path):
    source = data_dir / "squad" / "dev-v1.1.json"
    if not source.is_file():
        pytest.skip(f"real SQuAD v1.1 dev not present at {source}")
    record = write_article_split(source, tmp_path)
    assert {name: (record[name]["articles"], record[name]["paragraphs"], record[name]["questions"])
            for name in ("train", "eval")} == {"train": ("8:48", 1584, 7766), "eval": ("0:8", 483, 2804)}
    assert record["eval"]["titles"][:2] == ["Super_Bowl_50", "Warsaw"] and record["train"]["titles"][-1] == "Force"
    train, dev = read_squad(tmp_path / "train-v1.1.json"), read_squad(tmp_path / "dev-v1.1.json")
    assert len(train) + len(dev) == 10570
    assert all(not (mine & theirs) for mine, theirs in zip(keys(train), keys(dev)))


CONTEXT = "Denver Broncos won the game"
#         [CLS]  q    Denver   Broncos  won       the       game      [SEP]
OFFSETS = [None, None, (0, 6), (7, 14), (15, 18), (19, 22), (23, 27), None]


def logits(*pairs: tuple[int, float]) -> np.ndarray:
    values = np.zeros(len(OFFSETS))
    for index, value in pairs:
        values[index] = value
    return values


def pick(starts: np.ndarray, ends: np.ndarray, **options) -> dict[str, str]:
    """One example, one feature."""
    return postprocess_predictions({"e": CONTEXT}, ["e"], [starts], [ends], [OFFSETS], **options)


def test_postprocess_picks_best_valid_span():
    starts = logits((1, 9.0), (2, 5.0), (4, 1.0))  # index 1 is the question: not a valid start
    ends = logits((3, 6.0), (7, 9.0), (2, 2.0))  # index 7 is [SEP]: not a valid end
    assert pick(starts, ends) == {"e": "Denver Broncos"}
    # the 2-token span is too long for max_answer_length=1: best single token wins
    assert pick(starts, ends, max_answer_length=1) == {"e": "Denver"}
    # an end before the start is never chosen
    assert pick(logits((4, 9.0)), logits((2, 9.0), (6, 1.0))) == {"e": "won the game"}


def test_postprocess_across_features_and_null_answer():
    weak, strong = (logits((2, 1.0)), logits((2, 1.0))), (logits((5, 4.0)), logits((6, 4.0)))
    features = ["e", "e", "f"]
    result = postprocess_predictions(
        {"e": CONTEXT, "f": CONTEXT, "g": CONTEXT},
        features,
        [weak[0], strong[0], strong[0]],
        [weak[1], strong[1], strong[1]],
        [OFFSETS] * 3,
    )
    assert result == {"e": "the game", "f": "the game", "g": ""}  # g has no features
    null_high = (logits((0, 10.0), (5, 4.0)), logits((0, 10.0), (6, 4.0)))  # null 20 vs span 8
    assert pick(*null_high, null_score_threshold=0.0) == {"e": ""}
    assert pick(*null_high, null_score_threshold=12.5) == {"e": "the game"}
    assert pick(*null_high) == {"e": "the game"}  # v1.1: no null answer


# ---------------------------------------------------------------------------------------------- SWAG

SWAG = (
    "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"
    'anetv_jkn6uvmqwh4,3416,"Members of the procession walk down the street, holding instruments.",'
    '"Members of the procession walk down the street, holding instruments.",A drum line,gold,'
    "passes by walking down the street playing their instruments.,has heard approaching them.,"
    "arrives and they're outside dancing and asleep.,turns the lead singer watches the performance.,0\n"
)


def test_swag_reader(tmp_path):
    result = read_swag(write(tmp_path / "train.csv", SWAG))
    assert result[0] == MultipleChoiceExample(
        "3416",
        "Members of the procession walk down the street, holding instruments.",
        [
            "A drum line passes by walking down the street playing their instruments.",
            "A drum line has heard approaching them.",
            "A drum line arrives and they're outside dancing and asleep.",
            "A drum line turns the lead singer watches the performance.",
        ],
        0,
    )
    assert result.labels == ["0", "1", "2", "3"]
    unlabeled = read_swag(write(tmp_path / "test.csv", SWAG.replace("performance.,0\n", "performance.,\n")))
    assert unlabeled[0].label is None


def test_swag_errors(tmp_path):
    with pytest.raises(DataError, match=r"bad\.csv:2: label 4 outside 0\.\.3"):
        read_swag(write(tmp_path / "bad.csv", SWAG.replace("performance.,0\n", "performance.,4\n")))
    with pytest.raises(DataError, match=r"cols\.csv:1: missing column 'ending1'"):
        read_swag(write(tmp_path / "cols.csv", "sent1,sent2,ending0,label\na,b,c,0\n"))
