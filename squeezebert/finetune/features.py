"""Examples -> model features (token ids + labels, not padded) and the one collate function that pads them.

A feature is a plain dict of lists of ints (so it pickles, and the Trainer's Batches can hold millions):
``input_ids``, ``token_type_ids``, a label field (``labels``, or ``start_positions``/``end_positions`` for QA), and
bookkeeping that :func:`collate` leaves out: ``example_index`` (which example a feature came from; a SQuAD example
becomes several windows), ``word_starts`` (NER: the position of each word's first sub-token) and
``offset_mapping`` (QA: each token's character span in the context, None outside it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.conll import IGNORE_INDEX, Sentence, align_labels
from ..data.multiple_choice import MultipleChoiceExample
from ..data.squad import SquadExample
from ..data.tabular import Example
from ..tokenizer import Tokenizer

log = logging.getLogger(__name__)

PAD_MULTIPLE = 8  # pad each batch to a multiple of 8 tokens: tensor-core/oneDNN friendly, few distinct shapes
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_FIELDS = ("labels", "start_positions", "end_positions")


def _encode(tokenizer: Tokenizer, texts: list[str], pairs: list[str] | None, **options: Any):
    return tokenizer(texts, pairs, padding=False, return_tensors=None, **options)


def _report_truncation(what: str, truncated: Sequence[bool], max_length: int) -> None:
    count = sum(truncated)
    if count:
        log.info("%s: %d of %d examples truncated to max_length=%d", what, count, len(truncated), max_length)


# ---------------------------------------------------------------------------------------------- sequence


def encode_sequences(
    tokenizer: Tokenizer, examples: Sequence[Example], label_ids: dict[str, int] | None, max_length: int,
    what: str = "examples",
) -> list[dict]:
    """Single sentences or pairs -> features; ``labels`` is the class id (``label_ids[label]``), the float score
    (``label_ids`` None: regression), or absent for unlabeled examples."""
    texts = [example.text_a for example in examples]
    has_pairs = [example.text_b is not None for example in examples]
    if any(has_pairs) and not all(has_pairs):
        raise ValueError(f"{what}: some examples have a text pair and some do not")
    pairs = [example.text_b for example in examples] if any(has_pairs) else None
    encoded = _encode(tokenizer, texts, pairs, truncation="longest_first", max_length=max_length)
    _report_truncation(what, encoded.truncated, max_length)
    features = []
    for index, example in enumerate(examples):
        feature = {"input_ids": encoded["input_ids"][index], "token_type_ids": encoded["token_type_ids"][index],
                   "example_index": index}
        if example.label is not None:
            feature["labels"] = float(example.label) if label_ids is None else label_ids[example.label]
        features.append(feature)
    return features


# ---------------------------------------------------------------------------------------------- tokens (NER)


def encode_words(
    tokenizer: Tokenizer, sentences: Sequence[Sentence], label_ids: dict[str, int], max_length: int,
    label_all_subtokens: bool = False, b_to_i: Sequence[int] | None = None, what: str = "sentences",
) -> list[dict]:
    """Sentences of words -> features with one label per sub-token (``align_labels``: the first sub-token of a
    word carries its tag, the rest -100 unless ``label_all_subtokens``).

    Every word is tokenized on its own (one batched call), so word boundaries are the data's, not the
    pre-tokenizer's (which would split ``U.S.`` in three). A word that tokenizes to nothing becomes ``[UNK]``, so
    every word gets a prediction. Words past ``max_length`` are dropped from the features (and predicted ``O``).
    """
    words = [word for sentence in sentences for word in sentence.tokens]
    pieces = (_encode(tokenizer, words, None, truncation=None, add_special_tokens=False)["input_ids"]
              if words else [])
    budget = max_length - 2  # [CLS] ... [SEP]
    features, cut, position = [], [], 0
    for index, sentence in enumerate(sentences):
        ids, word_ids = [tokenizer.cls_token_id], [None]
        for word_index in range(len(sentence.tokens)):
            word_pieces = pieces[position + word_index] or [tokenizer.unk_token_id]
            if len(ids) - 1 + len(word_pieces) > budget:
                break
            ids.extend(word_pieces)
            word_ids.extend([word_index] * len(word_pieces))
        position += len(sentence.tokens)
        ids.append(tokenizer.sep_token_id)
        word_ids.append(None)
        kept_words = len({w for w in word_ids if w is not None})
        cut.append(kept_words < len(sentence.tokens))
        feature = {"input_ids": ids, "token_type_ids": [0] * len(ids), "example_index": index,
                   "word_starts": [p for p, w in enumerate(word_ids) if w is not None and w != word_ids[p - 1]]}
        if sentence.tags:
            tag_ids = [label_ids[tag] for tag in sentence.tags]
            feature["labels"] = align_labels(word_ids, tag_ids, label_all_subtokens, b_to_i)
        features.append(feature)
    _report_truncation(what, cut, max_length)
    return features


# ---------------------------------------------------------------------------------------------- question answering


def _truncate_questions(tokenizer: Tokenizer, questions: list[str], max_query_length: int) -> list[str]:
    """Questions longer than ``max_query_length`` tokens are cut (as transformers' run_qa does), so that a window
    always has room for context."""
    encoded = _encode(tokenizer, questions, None, truncation=None, add_special_tokens=False, return_offsets=True)
    out = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        out.append(question[: offsets[max_query_length - 1][1]] if len(offsets) > max_query_length else question)
    return out


def encode_squad(
    tokenizer: Tokenizer, examples: Sequence[SquadExample], max_length: int, doc_stride: int,
    max_query_length: int = 64, training: bool = True, what: str = "questions",
) -> list[dict]:
    """Question + context -> one feature per window of the context (windows overlap by ``doc_stride`` tokens).

    ``start_positions``/``end_positions`` are the token positions of the first answer's first and last character
    in the window; when the answer is not wholly inside a window (or the question has no answer, SQuAD v2) both
    are 0, the [CLS] token, as in BERT's and transformers' recipes. Every feature also keeps ``offset_mapping``
    (character spans; None outside the context) for :func:`squeezebert.data.postprocess_predictions`.
    """
    if not examples:
        return []
    max_query_length = min(max_query_length, max_length // 2)
    questions = _truncate_questions(tokenizer, [example.question.lstrip() for example in examples], max_query_length)
    contexts = [example.context for example in examples]
    encoded = _encode(tokenizer, questions, contexts, truncation="only_second", max_length=max_length,
                      stride=doc_stride, return_overflowing=True, return_offsets=True)
    features = []
    for row, index in enumerate(encoded["overflow_to_sample_mapping"]):
        types, word_ids = encoded["token_type_ids"][row], encoded.word_ids(row)
        offsets = [list(span) if types[t] == 1 and word_ids[t] is not None else None
                   for t, span in enumerate(encoded["offset_mapping"][row])]
        feature = {"input_ids": encoded["input_ids"][row], "token_type_ids": types, "example_index": index,
                   "offset_mapping": offsets}
        example = examples[index]
        if training:
            feature["start_positions"], feature["end_positions"] = answer_positions(example, offsets)
        features.append(feature)
    log.info("%s: %d questions -> %d windows (max_length=%d, stride %d)", what, len(examples), len(features),
             max_length, doc_stride)
    return features


def answer_positions(example: SquadExample, offsets: Sequence[Sequence[int] | None]) -> tuple[int, int]:
    """Token (start, end) of the example's first answer inside this window, or (0, 0) when it is not inside."""
    if not example.answers:
        return 0, 0
    answer = example.answers[0]
    first, last = answer.answer_start, answer.answer_start + len(answer.text)
    in_context = [t for t, span in enumerate(offsets) if span is not None]
    if not in_context or offsets[in_context[0]][0] > first or offsets[in_context[-1]][1] < last:
        return 0, 0
    start = next(t for t in in_context if offsets[t][1] > first)
    end = next(t for t in reversed(in_context) if offsets[t][0] < last)
    return start, end


# ---------------------------------------------------------------------------------------------- multiple choice


def encode_choices(
    tokenizer: Tokenizer, examples: Sequence[MultipleChoiceExample], max_length: int, what: str = "examples"
) -> list[dict]:
    """Each (context, choice) pair encoded; a feature's ``input_ids`` is a list of one id list per choice."""
    contexts = [example.context for example in examples for _ in example.choices]
    choices = [choice for example in examples for choice in example.choices]
    encoded = _encode(tokenizer, contexts, choices, truncation="longest_first", max_length=max_length)
    features, row = [], 0
    for index, example in enumerate(examples):
        k = len(example.choices)
        feature = {"input_ids": encoded["input_ids"][row:row + k],
                   "token_type_ids": encoded["token_type_ids"][row:row + k], "example_index": index}
        if example.label is not None:
            feature["labels"] = example.label
        features.append(feature)
        row += k
    _report_truncation(what, encoded.truncated, max_length)
    return features


# ---------------------------------------------------------------------------------------------- padding


def padded_length(length: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-length // multiple) * multiple


def collate(features: Sequence[dict], pad_token_id: int = 0, multiple: int = PAD_MULTIPLE) -> dict[str, Tensor]:
    """Pad a batch to its longest row (rounded up to ``multiple``): model inputs plus any label fields.

    ``input_ids`` per feature is a list of ids, or (multiple choice) a list of such lists, giving (B, K, S).
    Token labels are padded with -100; a class label becomes a long tensor, a float label (regression) a float one.
    """
    if not features:
        raise ValueError("cannot collate an empty batch")
    choices = isinstance(features[0]["input_ids"][0], list)
    rows = [row for f in features for row in f["input_ids"]] if choices else [f["input_ids"] for f in features]
    types = ([row for f in features for row in f["token_type_ids"]] if choices
             else [f["token_type_ids"] for f in features])
    width = padded_length(max(len(row) for row in rows), multiple)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    token_types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, row_types) in enumerate(zip(rows, types)):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        token_types[i, : len(row)] = torch.tensor(row_types, dtype=torch.long)
        mask[i, : len(row)] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}
    if choices:  # (B*K, S) -> (B, K, S)
        k = len(features[0]["input_ids"])
        if any(len(f["input_ids"]) != k for f in features):
            raise ValueError("multiple-choice features in one batch have different numbers of choices")
        batch = {name: tensor.view(len(features), k, width) for name, tensor in batch.items()}
    for name in LABEL_FIELDS:
        if name in features[0]:
            batch[name] = _labels(features, name, width)
    return batch


def _labels(features: Sequence[dict], name: str, width: int) -> Tensor:
    values = [f[name] for f in features]
    if isinstance(values[0], list):  # one label per token
        labels = torch.full((len(values), width), IGNORE_INDEX, dtype=torch.long)
        for i, row in enumerate(values):
            labels[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return labels
    if isinstance(values[0], float):
        return torch.tensor(values, dtype=torch.float32)
    return torch.tensor(values, dtype=torch.long)
