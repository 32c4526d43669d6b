"""The one table of tasks: every task under the names each layer knows it by.

A data task (``sst2``, ``conll``, ``squad_v2``...) is read by a *reader*, turned into features by a *featurizer*,
trained with a model *head*, scored with a *metric*; a model with that head is served as a transformers *pipeline
task* (``text-classification``...) behind a server *endpoint*. :data:`TASKS` names all of these for each data task;
:data:`HEAD_TASKS` holds what depends on the head alone (pipeline task, its transformers aliases, endpoint), shared
by every task trained with that head and by heads no data task trains (the bare encoder, masked LM).

This module is plain data and imports nothing: every layer may read it (the torch-free ONNX server too). The code
behind each name stays with the layer that owns it, in one lookup keyed by these names: readers and featurizers in
``finetune/tasks.py`` (``READERS``, ``FEATURIZERS``), metric functions in ``metrics.METRICS``, heads in
``model.HEADS``, pipeline classes in ``pipelines.TASKS``, request schemas in ``serve/service.py`` (``ROUTES``).

Adding a GLUE-like task is one :data:`TASKS` entry plus its reader's layout (a ``TaskSpec`` in ``data/glue.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadTask:
    """What a model with one head serves."""

    pipeline: str  # transformers' pipeline task name (the Hub's ``pipeline_tag``)
    aliases: tuple[str, ...] = ()  # transformers' other names for that pipeline task
    endpoint: str | None = None  # the server's POST route; set exactly where squeezebert.pipelines has a pipeline


# model head (a key of squeezebert.model.HEADS) -> what it serves
HEAD_TASKS: dict[str, HeadTask] = {
    "sequence_classification": HeadTask("text-classification", ("sentiment-analysis",), "/v1/classify"),
    "token_classification": HeadTask("token-classification", ("ner",), "/v1/entities"),
    "question_answering": HeadTask("question-answering", endpoint="/v1/answer"),
    "base": HeadTask("feature-extraction", endpoint="/v1/embeddings"),
    "multiple_choice": HeadTask("multiple-choice"),
    "masked_lm": HeadTask("fill-mask"),
    "pretraining": HeadTask("fill-mask"),
}


@dataclass(frozen=True)
class Task:
    """One data task, in every layer's words."""

    name: str
    reader: str  # finds and reads its files: a key of finetune.tasks.READERS ("glue": data/glue.py TASKS[name])
    featurizer: str  # examples -> features -> predictions: a key of finetune.tasks.FEATURIZERS
    head: str  # a key of HEAD_TASKS and squeezebert.model.HEADS
    # a key of squeezebert.metrics.METRICS (a new task may name one it is scored like: "rte" for accuracy); None:
    # chosen by the labels (your own table: accuracy, or Pearson/Spearman for regression)
    metric: str | None
    aliases: tuple[str, ...] = ()  # other spellings accepted wherever a task name is (lower case)
    # the label set comes from the data (NER tags, your own table's classes), so a saved model's labels fix it
    labels_from_data: bool = False

    @property
    def pipeline(self) -> str:
        return HEAD_TASKS[self.head].pipeline

    @property
    def endpoint(self) -> str | None:
        return HEAD_TASKS[self.head].endpoint


def _glue(name: str, *aliases: str) -> Task:
    return Task(name, "glue", "sequence", "sequence_classification", name, aliases)


TASKS: dict[str, Task] = {
    "cola": _glue("cola"),
    "sst2": _glue("sst2", "sst-2"),
    "mrpc": _glue("mrpc"),
    "stsb": _glue("stsb", "sts-b"),
    "qqp": _glue("qqp"),
    "mnli": _glue("mnli"),
    "mnli-mm": _glue("mnli-mm"),
    "qnli": _glue("qnli"),
    "rte": _glue("rte"),
    "wnli": _glue("wnli"),
    "ax": _glue("ax"),
    "table": Task("table", "table", "sequence", "sequence_classification", None, labels_from_data=True),
    "conll": Task("conll", "conll", "token", "token_classification", "conll2003", ("conll2003", "ner"),
                  labels_from_data=True),
    "squad": Task("squad", "squad", "qa", "question_answering", "squad"),
    "squad_v2": Task("squad_v2", "squad_v2", "qa", "question_answering", "squad_v2", ("squad-v2", "squad2")),
    "swag": Task("swag", "swag", "multiple_choice", "multiple_choice", "swag"),
}

_SPELLINGS = {alias: task.name for task in TASKS.values() for alias in task.aliases}
# transformers' alias -> pipeline task ("sentiment-analysis" -> "text-classification", "ner" -> "token-classification")
PIPELINE_ALIASES = {alias: head.pipeline for head in HEAD_TASKS.values() for alias in head.aliases}


def spelled(task: str) -> str:
    """``task`` in lower case with an alias (``SST-2``, ``ner``, ``squad2``) replaced by the table's name; an
    unknown name comes back lower-cased, for the caller to refuse in its own words."""
    key = task.lower()
    return _SPELLINGS.get(key, key)


def canonical_task(task: str) -> str:
    """The :data:`TASKS` name of ``task`` (any case, any alias); ValueError naming the known tasks if none."""
    key = spelled(task)
    if key not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")  # a user error: one line
    return key


def pipeline_tasks() -> list[str]:
    """The pipeline tasks squeezebert serves (those with an endpoint), head order."""
    return [head.pipeline for head in HEAD_TASKS.values() if head.endpoint is not None]


def pipeline_head(pipeline: str) -> str:
    """The head a pipeline task runs (the first listed, for a task two heads serve)."""
    return next(name for name, head in HEAD_TASKS.items() if head.pipeline == pipeline)


def endpoint(pipeline: str) -> str | None:
    """The server route of a pipeline task (None: not served)."""
    return HEAD_TASKS[pipeline_head(pipeline)].endpoint
