"""The task table: every name an entry gives resolves in the layer that owns it, and aliases resolve to entries."""

import pytest

from squeezebert import metrics
from squeezebert.data.glue import TASKS as GLUE_LAYOUTS
from squeezebert.finetune.tasks import FEATURIZERS, READERS
from squeezebert.model import HEADS
from squeezebert.pipelines import TASKS as PIPELINES
from squeezebert.pipelines import resolve_task
from squeezebert.serve.service import ROUTES
from squeezebert.tasks import HEAD_TASKS, TASKS, canonical_task, endpoint, pipeline_head, pipeline_tasks


def test_every_name_resolves():
    assert set(HEAD_TASKS) == set(HEADS)
    for task in TASKS.values():
        assert task.reader in READERS and task.featurizer in FEATURIZERS and task.head in HEADS, task.name
        assert task.metric is None or task.metric in metrics.METRICS, task.name
    # a GLUE-reader task is exactly a GLUE layout
    assert {name for name, task in TASKS.items() if task.reader == "glue"} == set(GLUE_LAYOUTS)


def test_pipelines_and_routes_follow_the_heads():
    assert list(PIPELINES) == pipeline_tasks() == list(ROUTES)
    assert {task: endpoint(task) for task in pipeline_tasks()} == {
        "text-classification": "/v1/classify", "token-classification": "/v1/entities",
        "question-answering": "/v1/answer", "feature-extraction": "/v1/embeddings",
    }
    assert pipeline_head("text-classification") == "sequence_classification"
    assert pipeline_head("fill-mask") == "masked_lm"  # the first of the heads that serve it
    assert TASKS["sst2"].pipeline == "text-classification" and TASKS["conll"].endpoint == "/v1/entities"
    assert resolve_task("sentiment-analysis") == "text-classification" and resolve_task("ner") == "token-classification"


def test_aliases():
    spellings = {"SST-2": "sst2", "sts-b": "stsb", "NER": "conll", "conll2003": "conll", "squad2": "squad_v2",
                 "squad-v2": "squad_v2", "MNLI-MM": "mnli-mm"}
    assert {name: canonical_task(name) for name in spellings} == spellings
    with pytest.raises(ValueError, match="unknown task 'imagenet'; known: cola, sst2"):
        canonical_task("imagenet")
