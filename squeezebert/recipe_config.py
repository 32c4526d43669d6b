"""The recipes' settings: typed dataclasses read from TOML or JSON with ``key=value`` overrides, whose fields are
also the command's flags (``squeezebert finetune --lr`` is ``lr`` in the file), so each default is written here once.

:class:`TaskSettings` (which task, how its data is read) is shared with evaluation; :class:`RecipeConfig` adds the
output, the training data and the loop's settings (:class:`~squeezebert.train.settings.LoopSettings`);
:class:`FinetuneConfig` and :class:`DistillConfig` add what their recipe alone needs. Torch-free (see
``typed_config``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .tasks import TASKS
from .train.settings import LoopSettings
from .typed_config import option

TASK_HELP = f"a task of squeezebert.tasks: {', '.join(TASKS)} (aliases such as SST-2, ner accepted)"
GENERAL = "general"  # distillation's "task" that means unlabeled text, no head
SQUEEZE = "squeeze"  # distillation's student that means "the teacher, squeezed"


@dataclass(kw_only=True)
class TaskSettings:
    task: str = option(help=TASK_HELP)
    data_dir: str | None = option(None, "the task's files in the official layout (e.g. glue/SST-2, conll2003)")
    max_length: int = option(128, "tokens per example")
    limit_eval: int | None = option(None, "evaluate on the first N examples of each eval split")
    dev_file: str | None = option(None, "the evaluation file (overrides the layout)")
    text_column: str | None = option(None, "table: the text column (default 'text')")
    text_pair_column: str | None = option(None, "table: the second text column, if any")
    label_column: str | None = option(None, "table: the label column (default 'label')")
    doc_stride: int | None = option(None, "QA: overlap between context windows (default max-length/4)")
    skip_bad_rows: bool = option(False, "skip (count and log) malformed rows, not stop")
    # the reader's other options (id_column, labels, regression, ...; see finetune.tasks.load_task), checked there
    task_options: dict[str, Any] = option(default_factory=dict)

    def load_options(self) -> dict[str, Any]:
        """The reader options that are set, for ``load_task``."""
        names = ("train_file", "dev_file", "text_column", "text_pair_column", "label_column", "doc_stride")
        options = {name: getattr(self, name) for name in names if getattr(self, name, None) is not None}
        if self.skip_bad_rows:
            options["skip_bad_rows"] = True
        return options | self.task_options


@dataclass(kw_only=True)
class RecipeConfig(TaskSettings, LoopSettings):
    """What every training recipe takes: the task's data, the loop's settings, where the run writes."""

    output_dir: str = option(help="output directory (best/, checkpoints/, logs, results.json)", flag="--out")
    train_file: str | None = option(None, "the training file (overrides the layout)")
    limit_train: int | None = option(None, "train on a seeded random sample of N training examples")
    batch_size: int = option(32, "examples per micro-batch")
    eval_batch_size: int = 64
    group_by_length: bool = True  # batches of similar lengths (see ShuffledBatches): 2-3x less padding
    resume: bool = option(True, "start over even if --out holds a checkpoint")


@dataclass(kw_only=True)
class FinetuneConfig(RecipeConfig):
    model: str = option(help="checkpoint directory, or a preset name to train from scratch")
    tokenizer: str | None = option(None, "tokenizer directory or vocab.txt (default: the checkpoint's; BERT's vocab "
                                         "from the shared data for presets)")


@dataclass(kw_only=True)
class DistillConfig(RecipeConfig):
    task: str = option(help=f"{TASK_HELP}; or {GENERAL}: task-agnostic, on the text under --data-dir (.txt files, "
                            "the text column of .tsv files)")
    lr: float = option(1e-4, "peak learning rate")
    limit_train: int | None = option(None, "a seeded random sample of N training examples (general: the first N "
                                           "text windows, --held-out ones included)")
    teacher: str = option(help="teacher checkpoint: fine-tuned on --task (task distillation) or any encoder "
                               f"(--task {GENERAL})")
    student: str = option(SQUEEZE, f"'{SQUEEZE}' (the teacher squeezed), a checkpoint directory (e.g. the "
                                     "MNLI-stage student) or a preset")
    groups: str = option("paper", "groups when squeezing (see squeezebert squeeze --help)")
    calibrate: int = option(256, "training examples for the squeeze fit (0: none)")
    held_out: int = option(256, f"--task {GENERAL}: corpus windows held out of training (at most a tenth); the "
                                "student's distillation loss on them is scored at every evaluation and the lowest "
                                "picks OUT/best (0: none held out, the last model is kept)")
    augment: int = option(0, "perturbed copies of each training example, labelled by the teacher, added to the "
                             "training set (sentence and pair tasks; see squeezebert.distill.augment)")
    augment_rate: float = option(0.1, "with --augment: the chance of each word being dropped, and of it being "
                                      "replaced; the share of positions swapped")
    transfer_text: str | None = option(None, "unlabeled text, labelled by the teacher, that joins the training "
                                             "set: for a single-sentence or NER task a corpus's sentences (a "
                                             f"folder, file or entry as --task {GENERAL} reads it); for a "
                                             "sentence-pair task a table's pairs (TSV/CSV/JSON lines with sentence1 "
                                             "and sentence2 columns, or FILE?columns=A,B)")
    transfer_count: int | None = option(None, "with --transfer-text: a seeded sample of N of its sentences or pairs "
                                              "(default: all)")
    head_init: str = option("fresh", "when --student is a checkpoint without this task's head (e.g. a general "
                                     "student): 'fresh' (random classifier) or 'teacher' (the teacher's pooler and "
                                     "head, where the shapes match)", choices=("fresh", "teacher"))
    # loss weights; None: the mode's default (DistillWeights.task() or .general())
    gt_weight: float | None = option(None, "weight of the gold-label loss (task default 0.5)")
    kd_weight: float | None = option(None, "weight of soft-label KD on logits (task default 0.5)")
    temperature: float | None = option(None, "KD temperature (default 2)")
    hidden_weight: float | None = option(None, "weight of hidden-state MSE (default 1)")
    attention_weight: float | None = option(None, "weight of attention KL (default 1)")
    embedding_weight: float | None = option(None, "weight of embedding MSE (general default 1, task 0)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.held_out < 0:
            raise ValueError(f"bad distillation arguments: held_out must be >= 0 (0: hold none out), got "
                             f"{self.held_out}")
        if self.transfer_count is not None and not self.transfer_text:
            raise ValueError("bad distillation arguments: transfer_count needs transfer_text (the corpus to sample)")
        if self.transfer_count is not None and self.transfer_count < 1:
            raise ValueError(f"bad distillation arguments: transfer_count must be >= 1, got {self.transfer_count}")

    @property
    def general(self) -> bool:
        return self.task == GENERAL

    def weight_overrides(self) -> dict[str, float]:
        """The loss weights given, by ``DistillWeights`` field name."""
        given = {"ground_truth": self.gt_weight, "logits": self.kd_weight, "temperature": self.temperature,
                 "hidden": self.hidden_weight, "attention": self.attention_weight,
                 "embedding": self.embedding_weight}
        return {name: value for name, value in given.items() if value is not None}


def loop_settings(config: LoopSettings) -> dict[str, Any]:
    """The loop's settings of a recipe config, as ``TrainingArgs`` keywords."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(LoopSettings)}


__all__ = ["GENERAL", "SQUEEZE", "DistillConfig", "FinetuneConfig", "RecipeConfig", "TaskSettings", "loop_settings"]
