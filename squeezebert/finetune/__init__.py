"""Fine-tuning and evaluation: the task layer (``tasks.py``: features, collate, official scoring) and the flow that
wires a checkpoint, its tokenizer, a task and the one training loop (``run.py``)."""

from .run import evaluate, finetune, predict_split
from .tasks import TaskData, load_task

__all__ = ["TaskData", "evaluate", "finetune", "load_task", "predict_split"]
