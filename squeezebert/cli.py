"""The ``squeezebert`` command: a thin layer over the Python API.

Each subcommand is a pair of functions: ``<name>_args(parser)`` declares its arguments, ``<name>_run(args)`` calls
the API and returns an exit code. ``COMMANDS`` below lists them all; nothing registers itself elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from . import __version__
from .fileio import json_text, read_text, write_text
from .precision import WEIGHT_FORMATS
from .recipe_config import DistillConfig, FinetuneConfig, TaskSettings
from .typed_config import add_config_args, add_flags, from_args

if TYPE_CHECKING:
    from .serve.config import ServeConfig

# the help of every --precision that picks an inference weight format (training's picks an autocast dtype)
WEIGHT_FORMAT_HELP = "the weight format inference runs in (bf16 needs a CPU with native bf16; int8 is quantised)"


def _command(args: argparse.Namespace) -> str:
    """The command line that ran, for results files and model cards."""
    import shlex

    return shlex.join(["squeezebert", *getattr(args, "argv", [])])


def info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="+", help="checkpoint directory or preset name (e.g. squeezebert-uncased)")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length for the GFLOPs figure (default 128)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--config", action="store_true", help="also print each full config")


def info_run(args: argparse.Namespace) -> int:
    from .info import describe, format_table

    rows = [describe(m, args.seq_len) for m in args.model]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, args.seq_len))
    if args.config:
        for row in rows:
            print(f"\n{row['model']}:\n{json.dumps(row['config'], indent=2)}")
    return 0


def convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a Hugging Face SqueezeBERT or BERT checkpoint directory")
    p.add_argument("out", help="directory to write the SqueezeBERT-format checkpoint to")
    p.add_argument("--head", choices=None, help="head to build (default: from the checkpoint's architectures)")


def convert_run(args: argparse.Namespace) -> int:
    from .checkpoint import load_model, save_model

    model, report = load_model(args.source, head=args.head, return_report=True)
    print(report.summary())
    card = {"made_by": f"converted from a {report.source_format} checkpoint", "base_model": args.source,
            "command": _command(args)}
    save_model(model, args.out, copy_tokenizer_from=args.source, sentence_transformers_from=args.source, card=card)
    print(f"wrote {args.out}")
    return 0


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="dense teacher checkpoint (default: the pip-installed all-MiniLM-L6-v2)")
    p.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    p.add_argument("--data-dir", help="real task data (e.g. ../shared/data/glue/SST-2; default: the shipped sample)")
    p.add_argument("--task", default="sst2", help="task of --data-dir (default sst2)")
    p.add_argument("--limit-train", type=int, help="training examples (default: all of the sample; 2000 of real data)")
    p.add_argument("--limit-eval", type=int, help="evaluate on the first N dev examples")
    p.add_argument("--teacher-epochs", type=float, default=3.0, help="teacher fine-tuning epochs (default 3)")
    p.add_argument("--student-epochs", type=float, default=4.0, help="student distillation epochs (default 4)")
    p.add_argument("--compile", action="store_true", help="benchmark the torch.compile'd paths (slow to compile)")
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")


def demo_run(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.out, args.model, data_dir=args.data_dir, task=args.task, limit_train=args.limit_train,
        limit_eval=args.limit_eval, teacher_epochs=args.teacher_epochs, student_epochs=args.student_epochs,
        compile=args.compile, threads=args.threads)
    return 0


def bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="batch 1 x 128 only, fewer rounds")
    p.add_argument("--model", help="a checkpoint directory to benchmark as our paths (default: the paper's "
                   "configuration, random weights); the anchors stay the same")
    p.add_argument("--out", default="out/bench", help="directory for results.json, results.md and plots")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2: this machine's cores)")
    p.add_argument("--rounds", type=int, help="timed rounds at 1x128 (default 30, quick 10)")
    p.add_argument("--no-baselines", action="store_true", help="skip the anchors (transformers / onnxruntime)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX (onnxruntime) paths")
    p.add_argument("--compile", action="store_true",
                   help="also torch.compile our paths (opt-in: minutes of compilation per shape)")


def bench_run(args: argparse.Namespace) -> int:
    from .bench import run

    results = run(args.out, quick=args.quick, threads=args.threads, rounds=args.rounds,
                  baselines=not args.no_baselines, onnx=not args.no_onnx, compile=args.compile, model=args.model)
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots ({results['wall_s']} s)")
    return 0


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory, or a preset name (random weights)")
    p.add_argument("--format", default="onnx", help="onnx (onnxruntime), pt2 (torch.export program) or pte "
                   "(ExecuTorch + XNNPACK; needs the executorch package); default onnx")
    p.add_argument("--int8", action="store_true", help="ONNX only: onnxruntime dynamic int8 quantisation")
    p.add_argument("--out", required=True, help="onnx: a folder to write (model.onnx + config.json + tokenizer + "
                   "model card; runs without torch), or a path ending in .onnx for the model file alone; pt2/pte: "
                   "the file to write")
    p.add_argument("--head", help="head to build (default: from the checkpoint's architectures; 'base' for presets)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def export_run(args: argparse.Namespace) -> int:
    from .export import FORMATS, export, export_onnx_folder, load_for_export

    if args.format not in FORMATS:  # before loading (and warning about) the model
        raise ValueError(f"unknown export format {args.format!r}; choose one of {', '.join(FORMATS)}")
    folder = args.format == "onnx" and Path(args.out).suffix.lower() != ".onnx"
    with _stages(args, ["load", "export + parity check", "done"]) as stage:
        model = load_for_export(args.model, args.head)
        stage()
        if folder:
            report = export_onnx_folder(model, args.out, int8=args.int8, check=not args.no_check,
                                        source=args.model if Path(args.model).is_dir() else None,
                                        command=_command(args))
        else:
            report = export(model, args.out, args.format, int8=args.int8, check=not args.no_check)
        stage()
    print(report.summary())
    return 0


@contextlib.contextmanager
def _stages(args: argparse.Namespace, names: list[str]) -> Iterator[Callable[[], None]]:
    """A progress bar over the named stages of one long call (on stderr; off with --no-progress): yields
    ``next_stage()``."""
    from tqdm import tqdm

    off = getattr(args, "no_progress", False)
    with tqdm(total=len(names) - 1, desc=names[0], unit="stage", disable=True if off else None,  # None: TTY only
              file=sys.stderr) as bar:
        def next_stage() -> None:
            bar.update()
            bar.set_description(names[min(bar.n, len(names) - 1)])

        yield next_stage


def train_tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="plain-text training files")
    p.add_argument("--out", required=True, help="directory for tokenizer.json, vocab.txt and configs")
    p.add_argument("--vocab-size", type=int, default=30522, help="target vocabulary size (default 30522, as BERT)")
    p.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency for a merge (default 2)")
    p.add_argument("--cased", action="store_true", help="keep case and accents (default: uncased, as BERT)")


def train_tokenizer_run(args: argparse.Namespace) -> int:
    from .tokenizer import train_tokenizer

    tok = train_tokenizer(args.files, args.vocab_size, args.min_frequency, not args.cased, args.out)
    print(f"vocabulary of {tok.vocab_size} tokens written to {args.out}")
    return 0


def finetune_args(p: argparse.ArgumentParser) -> None:
    add_flags(p, FinetuneConfig)
    add_config_args(p, "log_every=5 schedule=cosine task_options.id_column=idx")


def finetune_run(args: argparse.Namespace) -> int:
    from .finetune.run import FinetuneRecipe

    config = from_args(FinetuneConfig, args)
    results = FinetuneRecipe(config, command=_command(args)).run()
    print(json_text({k: results[k] for k in ("task", "metric", "best_metric", "dev", "steps", "wall_seconds",
                                              "model_dir")}, indent=2))
    print(f"wrote {Path(config.output_dir) / 'results.json'}")
    return 0


def evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a fine-tuned model directory (e.g. OUT/best)")
    add_flags(p, TaskSettings)
    p.add_argument("--split", default="dev", help="split to score (default dev; MNLI dev = matched + mismatched)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json-out", help="also write the result to this JSON file")
    p.add_argument("--precision", choices=WEIGHT_FORMATS, default="fp32",
                   help=f"{WEIGHT_FORMAT_HELP} (what quantisation costs on the task; default fp32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def evaluate_run(args: argparse.Namespace) -> int:
    from .finetune.run import evaluate

    task = from_args(TaskSettings, args)
    result = evaluate(args.model, task.task, task.data_dir, args.split, max_length=task.max_length,
                      batch_size=args.batch_size, limit_eval=task.limit_eval, task_options=task.load_options(),
                      progress=not args.no_progress, precision=args.precision)
    text = json_text(result)
    print(text)
    if args.json_out:
        write_text(args.json_out, text + "\n")
    return 0


def predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a fine-tuned model directory (its head picks the pipeline)")
    p.add_argument("texts", nargs="*", help="inputs; else one per line from --file or stdin. A line that is a JSON "
                                            "object is read as one ({\"text\", \"text_pair\"} or "
                                            "{\"question\", \"context\"})")
    p.add_argument("--file", help="read inputs from this file, one per line")
    p.add_argument("--out", help="write JSON lines here (default stdout); with --task, the prediction file, or for "
                                 "a GLUE test split a folder: DIR/SST-2.tsv... (GLUE's submission names)")
    p.add_argument("--max-length", type=int, help="tokens per input (default: the model's limit)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=WEIGHT_FORMATS, default="fp32", help=f"{WEIGHT_FORMAT_HELP} (default fp32)")
    p.add_argument("--no-truncation", action="store_true", help="an input longer than max-length is an error")
    p.add_argument("--task", help="predict a whole split of a task's data instead (with --data-dir, --split)")
    p.add_argument("--data-dir", help="with --task: the task's files")
    p.add_argument("--split", default="test", help="with --task: the split (default test; MNLI also "
                                                  "test_mismatched)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _read_inputs(args: argparse.Namespace) -> list:
    if args.texts:
        lines = list(args.texts)
    elif args.file:
        lines = read_text(args.file).splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    inputs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                inputs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{args.file or 'input'} line {number}: not valid JSON ({e})") from None
            except RecursionError:
                raise ValueError(f"{args.file or 'input'} line {number}: JSON nested too deeply") from None
        else:
            inputs.append(line)
    if not inputs:
        raise ValueError(f"no inputs in {args.file or 'the arguments or stdin'}")
    return inputs


def _json_lines(model: str, inputs: list, results: list) -> str:
    """One strict JSON line per input; an output that is NaN or inf (broken weights) is an error, not ``NaN``."""
    lines = []
    for number, (item, result) in enumerate(zip(inputs, results), 1):
        try:
            lines.append(json.dumps({"input": item, **result}, allow_nan=False) + "\n")
        except ValueError:
            raise ValueError(f"{model}: the model's output for input {number} is not finite (NaN or inf): its weights "
                             "are broken or overflow; nothing was written") from None
    return "".join(lines)


def predict_run(args: argparse.Namespace) -> int:
    if args.task:
        from .finetune.run import predict_split

        if not args.out:
            raise ValueError("--task needs --out (a file, or a directory for GLUE test predictions)")
        path = predict_split(args.model, args.task, args.data_dir, args.split, args.out,
                             max_length=args.max_length or 128, batch_size=args.batch_size,
                             progress=not args.no_progress)
        print(f"wrote {path}")
        return 0
    from .checkpoint import load_model
    from .pipelines import pipeline, task_for_model

    model = load_model(args.model)
    pipe = pipeline(task_for_model(model), model=model, tokenizer=args.model, precision=args.precision,
                    batch_size=args.batch_size, max_length=args.max_length)
    inputs = _read_inputs(args)
    results = pipe.run(inputs, truncation=not args.no_truncation, progress=not args.no_progress)
    lines = _json_lines(args.model, inputs, results)
    if args.out:
        write_text(args.out, lines)
    else:
        sys.stdout.write(lines)
    return 0


API_KEY_ENV = "SQUEEZEBERT_API_KEY"


def serve_args(p: argparse.ArgumentParser) -> None:
    from .serve.config import ServeConfig

    d = ServeConfig(model="")
    p.add_argument("model", help="checkpoint directory; its head picks the endpoints (plus /v1/embeddings); or a "
                                 "folder of `squeezebert export --format onnx`")
    p.add_argument("--backend", choices=("torch", "onnxruntime"),
                   help="default: onnxruntime for an exported ONNX folder (no torch needed), else torch")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--precision", choices=WEIGHT_FORMATS, default=d.precision,
                   help=f"{WEIGHT_FORMAT_HELP} (default {d.precision})")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (a pause per new length)")
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    p.add_argument("--max-batch-tokens", type=int, default=d.max_batch_tokens,
                   help=f"padded tokens per model call (default {d.max_batch_tokens})")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                   help=f"rows per model call; 1 turns dynamic batching off (default {d.max_batch_size})")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"how long a row may wait for others to batch with (default {d.max_wait_ms:g})")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"rows waiting before requests are refused with 429 (default {d.max_queue})")
    p.add_argument("--max-length", type=int, help="tokens per row (default: the model's limit, at most 512)")
    p.add_argument("--max-texts", type=int, default=d.max_texts, help=f"inputs per request (default {d.max_texts})")
    p.add_argument("--max-chars", type=int, default=d.max_chars,
                   help=f"characters per text; longer ones are cut and flagged (default {d.max_chars})")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help=f"request body limit, 413 beyond (default {d.max_body_bytes})")
    p.add_argument("--timeout", type=float, default=d.timeout_s,
                   help=f"seconds per request, queueing included; 504 beyond (default {d.timeout_s:g})")
    p.add_argument("--max-requests", type=int, default=d.max_requests,
                   help="requests in progress beyond which new ones get a 503 at once; health probes are not "
                        f"counted (default {d.max_requests}; 0: no limit)")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open connections; beyond, the one idle (or sending its request) the longest is closed "
                        f"to make room (default {d.max_connections})")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s,
                   help=f"seconds a connection may stay open with no request (default {d.idle_timeout_s:g})")
    p.add_argument("--read-timeout", type=float, default=d.read_timeout_s,
                   help=f"seconds for a request's head, then its body, to arrive; 408 beyond "
                        f"(default {d.read_timeout_s:g})")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every route but health, metrics, the playground "
                        f"page and the docs (default: ${API_KEY_ENV}, which keeps the key out of process lists)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin allowed to call the API, e.g. https://app.example.com (repeatable; "
                        "'*' for any; default: none)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                   help="a Host header value to accept, e.g. api.example.com or *.example.com (repeatable; "
                        "default: any)")
    p.add_argument("--no-embeddings", action="store_true", help="do not serve /v1/embeddings beside the head")


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The server's settings from ``squeezebert serve``'s flags (also what benchmarks/load_test.py builds its
    reference pipeline from, so that it runs the model as the server does)."""
    from .serve.config import ServeConfig

    return ServeConfig(model=args.model, backend=args.backend, host=args.host, port=args.port,
                       precision=args.precision, compile=args.compile, threads=args.threads,
                       max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
                       max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                       max_length=args.max_length, max_texts=args.max_texts, max_chars=args.max_chars,
                       max_body_bytes=args.max_body_bytes, timeout_s=args.timeout,
                       max_requests=args.max_requests or None, max_connections=args.max_connections,
                       idle_timeout_s=args.idle_timeout, read_timeout_s=args.read_timeout,
                       api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None,
                       cors_origins=tuple(args.cors_origin), allowed_hosts=tuple(args.allowed_host),
                       embeddings=not args.no_embeddings)


def serve_run(args: argparse.Namespace) -> int:
    from .serve.server import serve

    serve(serve_config(args), log_level="debug" if args.verbose else "info")
    return 0


def pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a .toml or .json pretraining config (see configs/pretrain-*.toml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. output_dir=out/x phases.0.steps=100 phases.*.micro_batch=8 "
                        "model.num_hidden_layers=4")
    p.add_argument("--save-initial", metavar="DIR", help="only write the initial weights (the config's seed, no step "
                                                        "taken) to DIR: the from-scratch baseline for fine-tuning")


def pretrain_run(args: argparse.Namespace) -> int:
    from .pretrain import load_config, pretrain, save_initial

    if args.save_initial:
        print(f"wrote {save_initial(load_config(args.config, args.overrides), args.save_initial)}")
        return 0
    result = pretrain(load_config(args.config, args.overrides))
    for phase in result["phases"]:
        print(json.dumps(phase))
    print(f"final model: {result['final_model']}")
    return 0


def squeeze_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="a dense BERT (or SqueezeBERT) checkpoint directory")
    p.add_argument("--out", required=True, help="directory for the squeezed SqueezeBERT checkpoint")
    p.add_argument("--groups", default="paper", help="'paper' (Q/K/V/FFN 4, attention output 1), a number G, or "
                                                     "q=4,k=4,v=4,post_attention=1,intermediate=4,output=4")
    p.add_argument("--no-permute", action="store_true", help="plain diagonal blocks, no folded permutations")
    p.add_argument("--calibration-text", help="a text file, one sentence a line: fit each group's block by least "
                                              "squares on the teacher's activations (recommended)")
    p.add_argument("--calibration-lines", type=int, default=256, help="lines of --calibration-text to use")


def squeeze_run(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .distill.squeeze import save_squeezed, squeeze, text_batches
    from .tokenizer import Tokenizer

    teacher = load_model(args.teacher)
    calibration = None
    if args.calibration_text:
        lines = [line.strip() for line in read_text(args.calibration_text).splitlines()
                 if line.strip()][: args.calibration_lines]
        if not lines:
            raise ValueError(f"{args.calibration_text}: no text lines")
        calibration = text_batches(Tokenizer.from_pretrained(args.teacher), lines)
    student, report = squeeze(teacher, args.groups, permute=not args.no_permute, calibration=calibration,
                              return_report=True)
    save_squeezed(student, args.out, tokenizer_from=args.teacher, command=_command(args))
    print(report.summary())
    print(f"parameters: teacher {teacher.num_parameters() / 1e6:.2f}M -> student {student.num_parameters() / 1e6:.2f}M")
    print(f"wrote {args.out}")
    return 0


def distill_args(p: argparse.ArgumentParser) -> None:
    add_flags(p, DistillConfig)
    add_config_args(p, "log_every=5 hidden_weight=0 task_options.id_column=idx")


def distill_run(args: argparse.Namespace) -> int:
    from .distill.distill import DistillRecipe

    config = from_args(DistillConfig, args)
    results = DistillRecipe(config, command=_command(args)).run()
    shown = ("texts", "steps", "final_losses", "wall_seconds", "model_dir") if config.general else (
        "task", "metric", "teacher_dev", "student_dev_before", "student_dev", "steps", "wall_seconds", "model_dir")
    print(json_text({k: results[k] for k in shown}))
    print(f"wrote {Path(config.output_dir) / 'results.json'}")
    return 0


# name -> (help, declare arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "info": ("config, parameter counts and GFLOPs of checkpoints or presets", info_args, info_run),
    "convert": ("load a HF SqueezeBERT/BERT checkpoint and save it in our (HF SqueezeBERT) format",
                convert_args, convert_run),
    "train-tokenizer": ("train a new WordPiece vocabulary from text files", train_tokenizer_args,
                        train_tokenizer_run),
    "bench": ("benchmark our inference paths against transformers' SqueezeBERT and BERT-base", bench_args, bench_run),
    "finetune": ("fine-tune a checkpoint or preset on a task (GLUE, table, conll, squad, swag)", finetune_args,
                 finetune_run),
    "evaluate": ("official metrics of a fine-tuned model on a task's split", evaluate_args, evaluate_run),
    "predict": ("predictions of a fine-tuned model as JSON lines (texts, a file, stdin, or a task split)",
                predict_args, predict_run),
    "serve": ("an HTTP inference server with dynamic batching, metrics and a web playground", serve_args,
              serve_run),
    "pretrain": ("pretrain from scratch: MLM + sentence order, LAMB, phases; one process or torchrun",
                 pretrain_args, pretrain_run),
    "squeeze": ("turn a dense BERT checkpoint into a SqueezeBERT (grouped projections) initialised from it",
                squeeze_args, squeeze_run),
    "distill": ("distil a teacher into a student: task-specific (--task) or general (--task general)",
                distill_args, distill_run),
    "export": ("export a model to ONNX (fp32 or int8) or a torch.export program, checked against PyTorch",
               export_args, export_run),
    "demo": ("the main job: the real MiniLM -> fine-tuned teacher -> squeezed, distilled, int8, benchmarked student",
             demo_args, demo_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezebert", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"squeezebert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, declare, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        declare(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        from .train.loop import TrainingError  # a non-finite loss, an unusable or mismatched checkpoint
    except ImportError:  # no torch (serve --backend onnxruntime on an edge box): nothing can train here
        TrainingError = ValueError  # noqa: N806

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by runs that write results
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, OSError, TrainingError) as e:  # our errors name the file / field
        print(f"squeezebert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
