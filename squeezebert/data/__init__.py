"""Data readers: GLUE, user tables, CoNLL-2003 NER, SQuAD and SWAG. Pure Python; no tokenizer or model here."""

from .conll import Sentence, align_labels, iob1_to_iob2, read_conll
from .glue import TASKS, TaskSpec, get_task, glue_file, read_glue, write_glue_predictions
from .multiple_choice import MultipleChoiceExample, read_swag
from .squad import Answer, SquadExample, postprocess_predictions, read_squad, squad_scores
from .tabular import DataError, Example, ReadResult, read_table

__all__ = [
    "TASKS",
    "Answer",
    "DataError",
    "Example",
    "MultipleChoiceExample",
    "ReadResult",
    "Sentence",
    "SquadExample",
    "TaskSpec",
    "align_labels",
    "get_task",
    "glue_file",
    "iob1_to_iob2",
    "postprocess_predictions",
    "read_conll",
    "read_glue",
    "read_squad",
    "read_swag",
    "read_table",
    "squad_scores",
    "write_glue_predictions",
]
