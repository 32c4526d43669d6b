"""The ``squeezebert`` command: a thin layer over the Python API.

Each subcommand is a pair of functions: ``<name>_args(parser)`` declares its arguments, ``<name>_run(args)`` calls
the API and returns an exit code. ``COMMANDS`` below lists them all; nothing registers itself elsewhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable


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
    save_model(model, args.out, copy_tokenizer_from=args.source)
    print(f"wrote {args.out}")
    return 0


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="checkpoint directory (default: the pip-installed all-MiniLM-L6-v2)")
    p.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")


def demo_run(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.out, args.model)
    return 0


def bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="batch 1 and 32 at 128 tokens only, fewer rounds (~1 min)")
    p.add_argument("--out", default="out/bench", help="directory for results.json, results.md and plots")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2: this machine's cores)")
    p.add_argument("--rounds", type=int, help="timed rounds at 1x128 (default 30, quick 10)")
    p.add_argument("--no-baselines", action="store_true", help="skip the transformers baselines")


def bench_run(args: argparse.Namespace) -> int:
    from .bench import run

    results = run(args.out, quick=args.quick, threads=args.threads, rounds=args.rounds,
                  baselines=not args.no_baselines)
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots ({results['wall_s']} s)")
    return 0


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


# name -> (help, declare arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "info": ("config, parameter counts and GFLOPs of checkpoints or presets", info_args, info_run),
    "convert": ("load a HF SqueezeBERT/BERT checkpoint and save it in our (HF SqueezeBERT) format",
                convert_args, convert_run),
    "train-tokenizer": ("train a new WordPiece vocabulary from text files", train_tokenizer_args,
                        train_tokenizer_run),
    "bench": ("benchmark our inference paths against transformers' SqueezeBERT and BERT-base", bench_args, bench_run),
    "demo": ("the main job: load the real MiniLM, convert, embed, check parity, print the model table",
             demo_args, demo_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezebert", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, declare, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        declare(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, OSError) as e:  # our errors name the file / field; no traceback needed
        print(f"squeezebert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
