"""The pretraining configuration: typed dataclasses read from JSON or TOML, with ``key=value`` overrides.

Unknown keys, wrong types and bad values are errors that name the file and the key (``phases[1].stepz``).
Overrides use dotted paths: ``output_dir=out/x``, ``phases.0.steps=100``, ``phases.*.micro_batch=8`` (every phase),
``model.hidden_size=256`` (``model`` holds SqueezeBertConfig overrides, checked by that config).
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.pretraining import DOCUMENT_MODES
from ..precision import TRAINING_PRECISIONS
from ..typed_config import RecipeConfigError, build, coerce, parse_text, read_table, split_override

# A pretraining config that cannot be used (the message names the file and the key): the error every recipe config
# raises, under the name pretraining's callers catch.
PretrainConfigError = RecipeConfigError

# How a fresh model's position embeddings start: "normal" is BERT's N(0, initializer_range); "sinusoidal" starts them
# as the Transformer's sine/cosine table (same scale), whose dot products depend on the distance between positions,
# so attention can learn "look at my neighbours" by a linear map instead of first discovering an order from noise.
POSITION_INITS = ("normal", "sinusoidal")


@dataclass
class PhaseConfig:
    """One phase of the schedule. Phase 2 of the paper continues from phase 1's weights with longer sequences."""

    seq_len: int = 128
    steps: int = 1000                  # optimizer steps
    global_batch: int = 256            # sequences per optimizer step, over all processes and accumulation
    micro_batch: int = 32              # sequences per process per forward/backward
    lr: float = 1e-3
    warmup: float = 0.1                # < 1: fraction of the phase's steps; >= 1: steps
    max_predictions: int | None = None  # masked tokens per sequence at most; None: ceil(seq_len * mask_prob)

    def check(self, where: str) -> list[str]:
        problems = []
        for name in ("seq_len", "steps", "global_batch", "micro_batch"):
            if getattr(self, name) < 1:
                problems.append(f"{where}.{name} must be >= 1, got {getattr(self, name)}")
        if self.global_batch % self.micro_batch:
            problems.append(f"{where}.global_batch ({self.global_batch}) must be a multiple of micro_batch "
                            f"({self.micro_batch})")
        if self.lr <= 0 or self.warmup < 0:
            problems.append(f"{where}: lr must be > 0 and warmup >= 0")
        return problems


@dataclass
class PretrainConfig:
    corpus: list[str] = field(default_factory=list)   # files/globs of text (.tsv: 'text' column), hf: datasets
    vocab: str = ""                                   # vocab.txt or a tokenizer directory
    output_dir: str = "out/pretrain"
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])
    # model
    model_preset: str = "squeezebert-uncased"
    model: dict[str, Any] = field(default_factory=dict)  # SqueezeBertConfig overrides
    init_from: str | None = None                       # start from these weights instead of a fresh model
    position_init: str = "normal"                      # normal | sinusoidal: how a fresh model's positions start
    # optimisation (the one training loop's options)
    optimizer: str = "lamb"
    weight_decay: float = 0.01
    schedule: str = "linear"
    max_grad_norm: float | None = 1.0
    precision: str = "fp32"                            # training autocast: one of TRAINING_PRECISIONS
    device: str = "auto"                               # auto: cuda:LOCAL_RANK when CUDA is there, else cpu
    # data
    mask_prob: float = 0.15
    whole_word_mask: bool = False
    short_seq_prob: float = 0.1
    documents: str = "block"                           # block | paragraph | line
    streams: int = 8                                   # data readers; a multiple of the number of processes
    shuffle_buffer: int = 256                          # examples per stream
    part_bytes: int = 1 << 20                          # corpus files are read in units of this many bytes
    eval_corpus: list[str] = field(default_factory=list)  # held-out text for MLM loss / SOP accuracy
    eval_examples: int = 256
    eval_every: int | None = None                      # steps; None: at the end of each phase
    # bookkeeping
    seed: int = 42
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    threads: int = 0                                   # torch intra-op threads per process; 0 = torch's default
    resume: bool = True                                # continue from the last checkpoint in output_dir
    progress: bool = True

    def check(self, where: str = "config") -> None:
        problems = []
        if not self.corpus:
            problems.append(f"{where}: corpus is empty (give files or globs)")
        if not self.vocab:
            problems.append(f"{where}: vocab is not set (a vocab.txt or tokenizer directory)")
        if not self.phases:
            problems.append(f"{where}: phases is empty")
        for i, phase in enumerate(self.phases):
            problems += phase.check(f"{where}: phases[{i}]")
        if self.documents not in DOCUMENT_MODES:
            problems.append(f"{where}: documents must be one of {DOCUMENT_MODES}, got {self.documents!r}")
        if self.position_init not in POSITION_INITS:
            problems.append(f"{where}: position_init must be one of {POSITION_INITS}, got {self.position_init!r}")
        if self.precision not in TRAINING_PRECISIONS:
            problems.append(f"{where}: precision must be one of {TRAINING_PRECISIONS}, got {self.precision!r}")
        if not 0 < self.mask_prob < 1:
            problems.append(f"{where}: mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.streams < 1 or self.save_every < 1 or self.eval_examples < 1:
            problems.append(f"{where}: streams, save_every and eval_examples must be >= 1")
        if problems:
            raise PretrainConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PretrainConfig:
    """Read a .toml or .json config (or start from the defaults), apply ``key=value`` overrides, check it."""
    where = str(path) if path is not None else "config"
    config = build(PretrainConfig, read_table(path) if path is not None else {}, where)
    for item in overrides:
        apply_override(config, item)
    config.check(where)
    return config


def apply_override(config: PretrainConfig, item: str) -> None:
    """``a.b.c=value`` onto the config, type-checked; ``phases.*.x`` sets every phase."""
    key, text = split_override(item)
    parts = key.split(".")
    where = f"override {key}"
    if parts[0] == "phases" and len(parts) == 3:
        index, name = parts[1], parts[2]
        targets = config.phases if index == "*" else None
        if targets is None:
            if not index.isdigit() or int(index) >= len(config.phases):
                raise PretrainConfigError(f"{where}: no phase {index!r} (the config has {len(config.phases)}; "
                                          "use an index or *)")
            targets = [config.phases[int(index)]]
        hints = typing.get_type_hints(PhaseConfig)
        if name not in hints:
            raise PretrainConfigError(f"{where}: unknown phase key {name!r}; known: {', '.join(sorted(hints))}")
        for phase in targets:
            setattr(phase, name, coerce(parse_text(text, hints[name]), hints[name], where))
        return
    if parts[0] == "model" and len(parts) == 2:
        config.model[parts[1]] = parse_text(text, Any)  # the model config names any bad key or value
        return
    hints = typing.get_type_hints(PretrainConfig)
    if len(parts) != 1 or parts[0] not in hints:
        known = sorted(hints) + ["phases.N.<key>", "phases.*.<key>", "model.<key>"]
        raise PretrainConfigError(f"{where}: unknown key; known: {', '.join(known)}")
    if parts[0] == "phases":
        raise PretrainConfigError(f"{where}: set phase fields one by one (phases.0.steps=...)")
    setattr(config, parts[0], coerce(parse_text(text, hints[parts[0]]), hints[parts[0]], where))


__all__ = ["POSITION_INITS", "PhaseConfig", "PretrainConfig", "PretrainConfigError", "apply_override", "load_config"]
