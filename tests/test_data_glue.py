"""GLUE readers: each task on an inline fixture in its official layout, error paths, submissions, real files."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from squeezebert.data.glue import TASKS, get_task, glue_file, read_glue, write_glue_predictions
from squeezebert.data.tabular import DataError, Example

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GLUE = DATA / "glue"
MNLI_HEADER_16 = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
)
PAIR_HEADER = "index\tsentence1\tsentence2\tlabel"
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"


def write(root: Path, relative: str, text: str, encoding: str = "utf-8") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def rows(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- each task


def test_cola_train_has_no_header_and_test_has_one(tmp_path):
    write(tmp_path, "CoLA/train.tsv", rows(
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.",
        "gj04\t0\t*\tThey drank the pub.",
    ))
    write(tmp_path, "CoLA/test.tsv", rows("index\tsentence", "0\tBill whistled past the house."))
    train = read_glue("cola", tmp_path, "train")
    assert list(train) == [
        Example("train-0", "Our friends won't buy this analysis, let alone the next one we propose.", None, "1"),
        Example("train-1", "They drank the pub.", None, "0"),
    ]
    assert train.labels == ["0", "1"]
    test = read_glue("cola", tmp_path, "test")
    assert list(test) == [Example("test-0", "Bill whistled past the house.", None, None)]


def test_sst2(tmp_path):
    path = write(tmp_path, "SST-2/dev.tsv", rows("sentence\tlabel", "it 's a charming journey . \t1", "bleak \t0"))
    result = read_glue("sst2", path)
    assert [(e.guid, e.text_a, e.label) for e in result] == [
        ("dev-0", "it 's a charming journey . ", "1"),
        ("dev-1", "bleak ", "0"),
    ]
    write(tmp_path, "SST-2/test.tsv", rows("index\tsentence", "0\tuneasy mishmash of styles and genres ."))
    assert read_glue("sst2", tmp_path / "SST-2" / "test.tsv")[0].label is None


def test_mrpc_with_bom_and_stray_quotes(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(tmp_path, "MRPC/train.tsv", "\ufeff" + rows(
        header,
        '1\t702876\t702977\tAmrozi accused his brother , whom he called " the witness " .\t" The witness , " he said .',
        "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's in 1995 .",
    ))
    result = read_glue("mrpc", tmp_path, "train")
    assert result[0] == Example(
        "train-0", 'Amrozi accused his brother , whom he called " the witness " .', '" The witness , " he said .', "1"
    )
    assert result[1].label == "0"
    test_header = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(tmp_path, "MRPC/test.tsv", "\ufeff" + rows(test_header, "0\t1089874\t1089925\tA .\tB ."))
    assert read_glue("mrpc", tmp_path, "test")[0] == Example("test-0", "A .", "B .", None)


def test_stsb_ten_columns_float_scores(tmp_path):
    write(tmp_path, "STS-B/dev.tsv", rows(
        STSB_HEADER + "\tscore",
        "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\t"
        "A man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000",
        "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA child is riding a horse.\tA dog runs.\t0.250",
    ))
    result = read_glue("stsb", tmp_path, "dev")
    assert result[0].text_b == "A man wearing a hard hat is dancing."
    assert [e.label for e in result] == [5.0, 0.25]
    assert result.labels is None
    write(tmp_path, "STS-B/test.tsv", rows(STSB_HEADER, "0\tmain-news\theadlines\t2016\t0000\tnone\tnone\tA.\tB."))
    assert read_glue("stsb", tmp_path, "test")[0] == Example("test-0", "A.", "B.", None)


def test_qqp_skips_malformed_rows_by_default_and_logs(tmp_path, caplog):
    path = write(tmp_path, "QQP/train.tsv", rows(
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0",
        "402555\t536040\t536041\tHow do I control my horny emotions?",  # a real-file kind of row: fields missing
        "360472\t364011\t490273\tWhat causes stool color to change?\tWhat can cause stool to come out yellow?\t1",
    ))
    with caplog.at_level(logging.WARNING, logger="squeezebert.data.tabular"):
        result = read_glue("qqp", path)
    assert [e.guid for e in result] == ["train-133273", "train-360472"]
    assert [e.label for e in result] == ["0", "1"]
    assert (result.skipped, result.skipped_lines) == (1, [3])
    assert "skipped 1 malformed row" in caplog.text and "train.tsv" in caplog.text
    with pytest.raises(DataError, match=r"train\.tsv:3: wrong column count: 4 fields, the header \(line 1\) has 6"):
        read_glue("qqp", path, skip_bad_rows=False)
    write(tmp_path, "QQP/test.tsv", rows("id\tquestion1\tquestion2", "0\tWhy?\tWhy not?"))
    assert read_glue("qqp", tmp_path, "test")[0] == Example("test-0", "Why?", "Why not?", None)


def test_mnli_dev_16_columns_train_12_and_test(tmp_path):
    parse = "\t".join(["( x )"] * 4)
    write(tmp_path, "MNLI/dev_matched.tsv", rows(
        MNLI_HEADER_16,
        f"0\t63735\t63735n\tslate\t{parse}\tThe new rights are nice enough\tEveryone likes the benefits\t"
        + "\t".join(["neutral", "entailment", "neutral", "neutral", "neutral", "neutral"]),
        f"1\t91383\t91383c\tgovernment\t{parse}\tThis site includes a list\tThe articles are not searchable.\t"
        + "\t".join(["contradiction"] * 6),
    ))
    dev = read_glue("mnli", tmp_path, "dev_matched")
    assert dev[0] == Example(
        "dev_matched-0", "The new rights are nice enough", "Everyone likes the benefits", "neutral"
    )
    assert [e.label for e in dev] == ["neutral", "contradiction"]
    assert dev.labels == ["contradiction", "entailment", "neutral"]
    assert read_glue("mnli", tmp_path, "dev")[1].label == "contradiction"  # "dev" is dev_matched
    train_header = "\t".join(MNLI_HEADER_16.split("\t")[:11] + ["gold_label"])
    train_row = f"0\t31193\t31193n\tgovernment\t{parse}\tA\tB\tneutral\tneutral"
    write(tmp_path, "MNLI/train.tsv", rows(train_header, train_row))
    assert read_glue("mnli", tmp_path, "train")[0] == Example("train-0", "A", "B", "neutral")
    test_header = "\t".join(MNLI_HEADER_16.split("\t")[:10])
    write(tmp_path, "MNLI/test_mismatched.tsv", rows(test_header, f"0\t1\t1\tletters\t{parse}\tC\tD"))
    assert read_glue("mnli-mm", tmp_path, "test")[0] == Example("test-0", "C", "D", None)


def test_mnli_reduced_layout_by_column_name(tmp_path):
    reduced = rows("index\tsentence1\tsentence2\tgold_label", "7\tA\tB\tentailment")
    path = write(tmp_path, "dev_matched_reduced.tsv", reduced)
    assert list(read_glue("mnli", path)) == [Example("dev_matched_reduced-7", "A", "B", "entailment")]


@pytest.mark.parametrize(
    "task, folder, header, label",
    [
        ("qnli", "QNLI", "index\tquestion\tsentence\tlabel", "not_entailment"),
        ("rte", "RTE", "index\tsentence1\tsentence2\tlabel", "entailment"),
        ("wnli", "WNLI", "index\tsentence1\tsentence2\tlabel", "1"),
    ],
)
def test_pair_tasks_with_index_column(tmp_path, task, folder, header, label):
    write(tmp_path, f"{folder}/train.tsv", rows(header, f"4\tFirst text.\tSecond text.\t{label}"))
    assert list(read_glue(task, tmp_path, "train")) == [Example("train-4", "First text.", "Second text.", label)]
    write(tmp_path, f"{folder}/test.tsv", rows("\t".join(header.split("\t")[:3]), "0\tX\tY"))
    assert list(read_glue(task, tmp_path, "test")) == [Example("test-0", "X", "Y", None)]


def test_ax_diagnostic_is_unlabeled(tmp_path):
    diagnostic = rows("index\tsentence1\tsentence2", "0\tThe cat sat.\tThe cat did not sit.")
    write(tmp_path, "diagnostic/diagnostic.tsv", diagnostic)
    assert list(read_glue("ax", tmp_path, "test")) == [Example("test-0", "The cat sat.", "The cat did not sit.", None)]


def test_hugging_face_json_lines_export(tmp_path):
    lines = [
        {"premise": "A", "hypothesis": "B", "label": 0, "idx": 0},
        {"premise": "C", "hypothesis": "D", "label": 2, "idx": 1},
    ]
    path = write(tmp_path, "mnli_validation.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    result = read_glue("mnli", path)
    # datasets orders MNLI as entailment, neutral, contradiction; we map its ids to label strings
    assert list(result) == [
        Example("mnli_validation-0", "A", "B", "entailment"),
        Example("mnli_validation-1", "C", "D", "contradiction"),
    ]
    sst = write(tmp_path, "sst2_test.json", json.dumps({"sentence": "fine .", "label": -1, "idx": 3}) + "\n")
    assert list(read_glue("sst2", sst)) == [Example("sst2_test-3", "fine .", None, None)]
    bad = write(tmp_path, "bad.jsonl", json.dumps({"sentence": "x", "label": 5}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: unknown sst2 label index 5"):
        read_glue("sst2", bad)


# ---------------------------------------------------------------------------------------------- errors


def test_missing_column_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "SST-2/dev.tsv", rows("text\tlabel", "good\t1"))
    with pytest.raises(DataError, match=r"SST-2/dev\.tsv:1: missing column 'sentence'"):
        read_glue("sst2", path)


def test_wrong_column_count(tmp_path):
    path = write(tmp_path, "WNLI/dev.tsv", rows(PAIR_HEADER, "0\ta\tb\t1", "1\ta\tb\textra\t0"))
    with pytest.raises(DataError, match=r"WNLI/dev\.tsv:3: wrong column count: 5 fields"):
        read_glue("wnli", path)


def test_unknown_label_names_label_and_line(tmp_path):
    path = write(tmp_path, "RTE/dev.tsv", rows(PAIR_HEADER, "0\ta\tb\tentailment", "1\ta\tb\tmaybe"))
    with pytest.raises(DataError, match=r"RTE/dev\.tsv:3: unknown rte label 'maybe'") as error:
        read_glue("rte", path)
    assert (error.value.line, error.value.path) == (3, str(path))


def test_non_numeric_and_out_of_range_stsb_score(tmp_path):
    row = "0\tg\tf\ty\t0\tnone\tnone\tA.\tB.\t"
    path = write(tmp_path, "STS-B/dev.tsv", rows(STSB_HEADER + "\tscore", row + "4.2", row + "high"))
    with pytest.raises(DataError, match=r"STS-B/dev\.tsv:3: non-numeric STS-B score 'high'"):
        read_glue("stsb", path)
    write(tmp_path, "STS-B/dev.tsv", rows(STSB_HEADER + "\tscore", row + "5.5"))
    with pytest.raises(DataError, match=r"dev\.tsv:2: STS-B score 5.5 outside 0.0..5.0"):
        read_glue("stsb", path)


def test_empty_and_header_only_files(tmp_path):
    empty = write(tmp_path, "SST-2/train.tsv", "")
    with pytest.raises(DataError, match=r"SST-2/train\.tsv: empty file"):
        read_glue("sst2", empty)
    blank = write(tmp_path, "CoLA/dev.tsv", "\n\n")
    with pytest.raises(DataError, match="empty file"):
        read_glue("cola", blank)
    header_only = write(tmp_path, "SST-2/dev.tsv", rows("sentence\tlabel"))
    with pytest.raises(DataError, match="no examples"):
        read_glue("sst2", header_only)


def test_skip_bad_rows_counts_and_returns_the_rest(tmp_path):
    lines = rows("sentence\tlabel", "good\t1", "bad\t7", "too\tmany\tfields", "fine\t0")
    path = write(tmp_path, "SST-2/dev.tsv", lines)
    result = read_glue("sst2", path, skip_bad_rows=True)
    assert [e.text_a for e in result] == ["good", "fine"]
    assert (result.skipped, result.skipped_lines) == (2, [3, 4])


def test_missing_file_and_unknown_split_or_task(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rte: no file .*RTE/dev\.tsv"):
        read_glue("rte", tmp_path, "dev")
    with pytest.raises(ValueError, match="no split 'dev_matched'"):
        glue_file("rte", tmp_path, "dev_matched")
    with pytest.raises(KeyError, match="unknown GLUE task 'squad'"):
        get_task("squad")
    assert get_task("SST-2") is TASKS["sst2"] and get_task("STS-B") is TASKS["stsb"]


# ---------------------------------------------------------------------------------------------- registry, submissions


def test_registry_matches_the_glue_release():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli", "ax"}
    assert TASKS["mnli"].labels == ("contradiction", "entailment", "neutral")
    assert TASKS["qnli"].labels == TASKS["rte"].labels == ("entailment", "not_entailment")
    assert TASKS["stsb"].labels is None and TASKS["stsb"].num_labels == 1
    assert TASKS["sst2"].labels == ("0", "1")
    assert {spec.submission_file for spec in TASKS.values()} == {
        "CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv",
        "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv",
    }
    mnli = TASKS["mnli"].files
    assert [mnli[s] for s in ("dev_matched", "dev_mismatched", "test_matched", "test_mismatched")] == [
        "dev_matched.tsv", "dev_mismatched.tsv", "test_matched.tsv", "test_mismatched.tsv"
    ]
    assert TASKS["mnli-mm"].files["dev"] == "dev_mismatched.tsv"
    assert all({"train", "dev", "test"} <= set(spec.files) for name, spec in TASKS.items() if name != "ax")


def test_write_predictions_class_ids_to_label_strings(tmp_path):
    path = write_glue_predictions("mnli", [0, 1, 2, "neutral"], tmp_path)
    assert path == tmp_path / "MNLI-m.tsv"
    assert path.read_text() == "index\tprediction\n0\tcontradiction\n1\tentailment\n2\tneutral\n3\tneutral\n"
    assert write_glue_predictions("mnli-mm", [1], tmp_path).name == "MNLI-mm.tsv"
    assert write_glue_predictions("ax", [2], tmp_path).read_text() == "index\tprediction\n0\tneutral\n"
    sst = write_glue_predictions("sst2", {1: 0, 0: 1}, tmp_path / "sub" / "SST-2.tsv")
    assert sst.read_text() == "index\tprediction\n0\t1\n1\t0\n"


def test_write_predictions_stsb_floats_and_bad_values(tmp_path):
    path = write_glue_predictions("stsb", [3.14159, 0, 5], tmp_path)
    assert path.name == "STS-B.tsv"
    assert path.read_text() == "index\tprediction\n0\t3.142\n1\t0.000\n2\t5.000\n"
    with pytest.raises(ValueError, match="not a class id 0..1"):
        write_glue_predictions("cola", [2], tmp_path)
    with pytest.raises(ValueError, match="'maybe' is not one of"):
        write_glue_predictions("rte", ["maybe"], tmp_path)
    with pytest.raises(ValueError, match="must be a number"):
        write_glue_predictions("stsb", ["high"], tmp_path)


# ---------------------------------------------------------------------------------------------- real files

needs_glue = pytest.mark.skipif(not GLUE.is_dir(), reason=f"real GLUE data not present at {GLUE}")


@needs_glue
@pytest.mark.parametrize(
    "task, relative, count",
    [
        ("sst2", "SST-2/dev.tsv", 872),
        ("mrpc", "MRPC/dev.tsv", 408),
        ("mrpc", "MRPC/train.tsv", 3668),
        ("stsb", "STS-B/dev.tsv", 1500),
        ("qnli", "QNLI/dev.tsv", 5463),
        ("mnli", "MNLI/dev_matched_reduced.tsv", 9815),
        ("wnli", "WNLI/dev.tsv", 71),
        ("wnli", "WNLI/train.tsv", 635),
    ],
)
def test_real_glue_counts(task, relative, count):
    result = read_glue(task, GLUE / relative)
    assert (len(result), result.skipped) == (count, 0)
    assert all(e.text_a and (e.text_b is not None) == (TASKS[task].text_b is not None) for e in result)


@needs_glue
def test_real_label_distributions():
    mnli = Counter(e.label for e in read_glue("mnli", GLUE / "MNLI" / "dev_matched_reduced.tsv"))
    assert mnli == {"entailment": 3479, "contradiction": 3213, "neutral": 3123}
    assert Counter(e.label for e in read_glue("sst2", GLUE, "dev")) == {"1": 444, "0": 428}
    scores = [e.label for e in read_glue("stsb", GLUE, "dev")]
    assert min(scores) == 0.0 and max(scores) == 5.0
    mrpc = read_glue("mrpc", GLUE, "dev")
    assert mrpc[0].text_b.startswith('" The foodservice')  # QUOTE_NONE keeps the stray quote as text
