"""Model cards: the ``README.md`` every checkpoint directory we write carries (what it is, what it came from, how
well it does, the command that made it), with the Hugging Face Hub's YAML header (``base_model``, ``pipeline_tag``)
so the Hub and ``huggingface_hub.ModelCard`` read it. Torch-free (the ONNX folder export writes one too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ARCHITECTURE_TO_HEAD, GROUP_FIELDS, SqueezeBertConfig
from .fileio import write_text
from .tasks import HEAD_TASKS, pipeline_tasks

CARD_NAME = "README.md"


def write_model_card(directory: str | os.PathLike, config: SqueezeBertConfig, *, made_by: str | None = None,
                     base_model: str | None = None, task: str | None = None,
                     metrics: Mapping[str, Any] | None = None, command: str | None = None,
                     files: str | None = None) -> Path:
    """Write ``directory/README.md`` for a checkpoint of ``config``.

    ``made_by`` says how in a phrase ("fine-tuned on sst2", "squeezed from a dense BERT"), ``base_model`` the
    checkpoint it came from, ``task`` the data task, ``metrics`` the scores known (e.g. dev accuracy), ``command``
    the command line that made it, ``files`` a note on the files when they are not a plain checkpoint (ONNX).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    architecture = (config.architectures or ["SqueezeBertModel"])[0]
    pipeline_tag = HEAD_TASKS[ARCHITECTURE_TO_HEAD.get(architecture, "base")].pipeline
    header = {"library_name": "squeezebert", "pipeline_tag": pipeline_tag, "tags": ["squeezebert"]}
    if base_model and not Path(base_model).is_absolute():  # the Hub's field names a model id, never a local path
        header["base_model"] = base_model
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in header.items()), "---", "",
             f"# {directory.resolve().name}", "",
             f"A {'dense BERT' if config.is_dense else 'SqueezeBERT'} checkpoint ({architecture})"
             + (f", {made_by}" if made_by else "") + ".", "",
             "| | |", "|---|---|", *_facts(config, base_model, task, files), ""]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|",
                  *(f"| {name} | {_number(value)} |" for name, value in metrics.items() if _scalar(value)), ""]
    lines += ["## How it was made", "", "```bash", command or "(through the Python API; no command recorded)", "```",
              ""]
    if pipeline_tag in pipeline_tasks():
        lines += ["## Use", "", "```python", "from squeezebert.pipelines import pipeline", "",
                  f'pipe = pipeline("{pipeline_tag}", model="{directory.resolve().name}")', "```", ""]
    path = directory / CARD_NAME
    write_text(path, "\n".join(lines))
    return path


def _facts(config: SqueezeBertConfig, base_model: str | None, task: str | None, files: str | None) -> list[str]:
    groups = ", ".join(f"{name.removesuffix('_groups')} {getattr(config, name)}" for name in GROUP_FIELDS)
    rows = [("base model", base_model), ("task", task),
            ("shape", f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, "
                      f"{config.num_attention_heads} heads, vocabulary {config.vocab_size}"),
            ("groups", groups)]
    if (config.architectures or [""])[0] in ("SqueezeBertForSequenceClassification",
                                              "SqueezeBertForTokenClassification"):
        rows.append(("labels", ", ".join(config.id2label[i] for i in sorted(config.id2label))))
    rows.append(("files", files))
    return [f"| {name} | {value} |" for name, value in rows if value]


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
