"""Fine-tuning and evaluation: the task layer (``tasks.py``: features, collate, official scoring) and the flow that
wires a checkpoint, its tokenizer, a task and the one training loop (``run.py``)."""

from .run import evaluate, finetune, predict_split
from .tasks import KIND_HEADS, TASK_KINDS, TaskData, load_task

__all__ = ["KIND_HEADS", "TASK_KINDS", "TaskData", "evaluate", "finetune", "load_task", "predict_split"]
