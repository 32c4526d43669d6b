"""One training step (forward, backward, optimizer, zero_grad): ours against transformers' SqueezeBERT, one run.

    python benchmarks/train_step.py [--rounds 10] [--warmup 3] [--threads 2] [--only a,b,c] [--json out/train_step.json]
    python benchmarks/train_step.py --layers 1 --hidden 64 --batch 2 --seq 16 --rounds 2   # smoke run

Issue 19, goal 3: at batch 32 x 128 on the paper configuration our step should be >= 1.5x faster than transformers'
(its grouped nn.Conv1d runs NCW per sequence; ours folds batch into one channels-first GEMM layout). Paths:
  (a) ours fp32: squeezebert.model.SqueezeBertForMaskedLM, loss = its masked-LM cross-entropy.
  (b) transformers' SqueezeBertForMaskedLM from the same config (its HF JSON), the same inputs and labels.
  (c) ours under bf16 autocast, only where the CPU computes bf16 natively (emulated it is slower than fp32);
  (e) transformers' under the same autocast, the like-for-like pair of (c).
  (d) the small model of configs/pretrain-tapt-cpu.toml, built and stepped as squeezebert pretrain does
      (masked-only decoding, MLM + SOP, its optimizer and clipping) at its own batch: tokens/s.
Same work for (a)-(c): both heads decode every position (the HF MaskedLM API) and the loss reads the ~15% masked ones
(labels -100 elsewhere); (a2)/(b2) are the same pair decoding only the masked positions, as squeezebert pretrain
and BERT's own pretraining code do (the vocabulary head is ~45% of a full-decode step and identical in both models); dropout 0.1 as the paper (``--dropout`` changes it for both); our LAMB with the same
settings for both, so only the model differs. Each path runs in its own process (two thread pools in one process
fight over the cores); rounds alternate between them so machine drift hits all alike; warm-up steps are not timed.
Tokens/s counts batch x seq: the inputs are dense random ids without padding, so every token is a real one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch

HF = "(b) transformers fp32"
HF_MASKED = "(b2) transformers fp32, masked-only decode"
HF_BF16 = "(e) transformers bf16 autocast"
GOAL = 1.5
MASK_ID = 103  # [MASK] in bert-base-uncased's vocabulary


def make_batch(batch: int, seq: int, mask_prob: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Identical in every process (seeded): random ids, round(mask_prob * seq) masked positions per sequence (set to
    [MASK], labelled with the original id; -100 elsewhere), no padding; token types and SOP labels for (d)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30522, (batch, seq), generator=g)  # past the special and unused ids
    picked = torch.rand(batch, seq, generator=g).argsort(dim=1)[:, :max(1, round(mask_prob * seq))]  # (B, M)
    labels = torch.full_like(ids, -100).scatter_(1, picked, ids.gather(1, picked))
    token_types = (torch.arange(seq) >= seq // 2).long().expand(batch, seq)  # two "segments", as SOP pairs
    return {"input_ids": ids.scatter(1, picked, MASK_ID), "attention_mask": torch.ones_like(ids),
            "token_type_ids": token_types, "labels": labels,
            "sop_labels": torch.randint(0, 2, (batch,), generator=g)}


def paper_config(spec: dict[str, Any]):
    from squeezebert.config import preset

    sizes = {"num_hidden_layers": spec["layers"], "num_attention_heads": spec["heads"]}
    if spec["hidden"]:  # the paper's proportions: head size 64, FFN 4x hidden, embeddings = hidden (required)
        sizes.update(hidden_size=spec["hidden"], embedding_size=spec["hidden"], intermediate_size=4 * spec["hidden"])
        sizes["num_attention_heads"] = spec["heads"] or max(1, spec["hidden"] // 64)
    sizes = {k: v for k, v in sizes.items() if v}
    return preset("squeezebert-uncased", hidden_dropout_prob=spec["dropout"],
                  attention_probs_dropout_prob=spec["dropout"], **sizes)


def build_step(spec: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A worker's training step as a closure returning the loss, and what the report should say about it."""
    from squeezebert.train.loop import parameter_groups
    from squeezebert.train.optim import Lamb, build_optimizer

    torch.manual_seed(0)
    if spec["kind"] == "small":  # (d): the pretraining flow's own pieces, as run.py wires them (the LR schedule's
        # per-step update, a few scalar multiplications, is left out)
        from squeezebert.pretrain.config import load_config
        from squeezebert.pretrain.run import PretrainingObjective, TokenMeter, build_model, load_tokenizer, \
            pretraining_loss

        config = load_config(spec["config"])
        phase = config.phases[0]
        model = PretrainingObjective(build_model(config, load_tokenizer(config.vocab)).train())
        model_config = model.model.config
        opt = build_optimizer(config.optimizer, parameter_groups([model], config.weight_decay), lr=phase.lr)
        loss_fn, clip = pretraining_loss(TokenMeter()), config.max_grad_norm
        batch = make_batch(spec["batch"] or phase.micro_batch, spec["seq"] or phase.seq_len, config.mask_prob)
        bf16 = config.precision == "bf16"
        forward = lambda: loss_fn(model, batch)[0]  # noqa: E731
        info = {"optimizer": config.optimizer, "max_grad_norm": clip, "precision": config.precision}
    else:  # (a)-(c): the same config, inputs, labels and optimizer; only the model's code differs
        model_config = paper_config(spec)
        if spec["kind"] == "ours":  # the MLM decoder is the word-embedding matrix by construction
            from squeezebert.model import SqueezeBertForMaskedLM

            model, tied = SqueezeBertForMaskedLM(model_config).train(), True
        else:  # the same config through its Hugging Face JSON
            import transformers

            hf_config = transformers.SqueezeBertConfig(**model_config.to_dict())
            model = transformers.SqueezeBertForMaskedLM(hf_config).train()
            tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        opt = Lamb(parameter_groups([model], 0.01), lr=1e-4)
        clip, bf16 = None, spec.get("bf16", False)
        batch = make_batch(spec["batch"] or 32, spec["seq"] or 128, 0.15)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        if spec.get("masked_only"):
            # what squeezebert pretrain does (and BERT's own pretraining code): encoder, then the vocabulary head on
            # the masked positions' states only; both models' heads are called the same way
            selected = batch["labels"] != -100
            targets = batch["labels"][selected]

            def forward() -> torch.Tensor:
                states = model.transformer(input_ids=inputs["input_ids"],
                                           attention_mask=inputs["attention_mask"]).last_hidden_state[selected]
                if spec["kind"] == "ours":
                    logits = model.cls.predictions(states, model.transformer.embeddings.word_embeddings.weight)
                else:
                    logits = model.cls(states)
                return torch.nn.functional.cross_entropy(logits, targets)
        else:
            forward = lambda: model(**inputs).loss  # noqa: E731
        info = {"optimizer": "lamb (squeezebert.train.optim)", "dropout": spec["dropout"], "tied_decoder": tied,
                "decode": "masked positions" if spec.get("masked_only") else "every position"}
    params = [p for g in opt.param_groups for p in g["params"]]

    def step() -> torch.Tensor:
        # as the training loop: forward (and loss) under autocast, backward and the update outside it
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = forward()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    b, s = batch["input_ids"].shape
    info.update(batch=b, seq=s, masked_per_seq=int((batch["labels"][0] != -100).sum()),
                params=sum(p.numel() for p in params), model_config=model_config.to_dict())
    return step, info


def worker_main(spec: dict[str, Any]) -> None:
    """Build one path, say so with its info, then answer each ``{"n": k}`` line with k step timings (ms)."""
    from squeezebert.infer.fast import set_threads
    from squeezebert.train.memory import keep_freed_memory

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    set_threads(spec["threads"])
    kept = not spec.get("system_malloc") and keep_freed_memory()  # as squeezebert's Trainer does, for every path
    step, info = build_step(spec)
    info["malloc"] = "freed memory kept (keep_freed_memory)" if kept else "as it is"
    protocol.write(json.dumps(info) + "\n")
    serve_steps(protocol, step)


class Worker:
    """A path in its own process: ``script --worker SPEC`` (this file's, or another benchmark's worker_main)."""

    def __init__(self, name: str, spec: dict[str, Any], script: str = __file__):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, script, "--worker", json.dumps(spec)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name!r} exited (code {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def steps(self, n: int) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"n": n}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def interleaved(workers: list[Worker], warmup: int, rounds: int) -> tuple[dict, dict, dict]:
    """``warmup`` untimed steps per worker, then ``rounds`` rounds of one step each in turn, the order reversed every
    other round: (warm-up replies, step ms and losses of the rounds, each by worker name)."""
    warm = {w.name: w.steps(warmup) for w in workers} if warmup else {}
    samples: dict[str, list[float]] = {w.name: [] for w in workers}
    losses: dict[str, list[float]] = {w.name: [] for w in workers}
    for r in range(rounds):
        for w in workers if r % 2 == 0 else workers[::-1]:
            time.sleep(0.02)  # lets the previous worker's OpenMP threads stop spinning
            reply = w.steps(1)
            samples[w.name] += reply["ms"]
            losses[w.name].append(reply["loss"])
    return warm, samples, losses


def serve_steps(protocol: Any, step: Any) -> None:
    """A worker's loop: answer each ``{"n": k}`` line on stdin with k timings (ms) of ``step()`` and its last loss."""
    for line in sys.stdin:
        ms, loss = [], None
        for _ in range(json.loads(line)["n"]):
            start = time.perf_counter()
            loss = step()
            ms.append((time.perf_counter() - start) * 1000)
        protocol.write(json.dumps({"ms": ms, "loss": float(loss)}) + "\n")


def dispatch(main: Any, worker_main: Any) -> None:
    """A benchmark script's entry: ``--worker SPEC`` runs one path (spawned by :class:`Worker`), else ``main()``."""
    if sys.argv[1:2] == ["--worker"]:
        worker_main(json.loads(sys.argv[2]))
    else:
        main()


def markdown(r: dict[str, Any]) -> str:
    a = r["settings"]
    paper = r["paths"].get("(a) ours fp32") or next(iter(r["paths"].values()), {})  # (a), or the first path run
    lines = [f"# Training step: squeezebert vs transformers' SqueezeBERT ({r['date']})", "",
             f"CPU class: **{r['cpu_features']['class']}** ({r['machine']}); transformers {r['transformers']}.",
             f"Paper config{' (overridden: ' + r['overrides'] + ')' if r['overrides'] else ''}, batch "
             f"{paper.get('batch', '?')} x {paper.get('seq', '?')}, {paper.get('masked_per_seq', '?')} masked "
             f"positions per sequence, dropout {a['dropout']} in both, our LAMB for both; {a['warmup']} warm-up "
             f"steps, then {a['rounds']} interleaved rounds; one process per path, {a['threads']} threads each; "
             f"malloc: {paper.get('malloc', '?')}.",
             "Tokens/s counts batch x seq: the inputs are dense random ids (no padding), so all are real tokens.", "",
             "| path | params | ms/step median | min | tokens/s | transformers / this |", "|---|---|---|---|---|---|"]
    for name, p in r["paths"].items():
        ratio = f"{p['ratio_vs_transformers']:.2f}x" if p.get("ratio_vs_transformers") else "-"
        lines.append(f"| {name} ({p['batch']} x {p['seq']}) | {p['params'] / 1e6:.1f}M | {p['median_ms']:.1f} | "
                     f"{p['min_ms']:.1f} | "
                     f"{p['tokens_per_s']:.0f} | {ratio} |")
    lines += [f"| {name} | skipped: {why} | | | | |" for name, why in r["skipped"].items()]
    if r.get("headline_ratio"):
        met = "met" if r["headline_ratio"] >= GOAL else "**not met**"
        lines += ["", f"Headline (transformers median / ours fp32 median): **{r['headline_ratio']:.2f}x** "
                      f"(goal >= {GOAL}x at 32 x 128, paper config: {met}"
                      f"{'' if r['goal_shape'] else '; NOT measured at the goal shape'})."]
    if r.get("masked_only_ratio"):
        lines += [f"Both decoding only the masked positions: **{r['masked_only_ratio']:.2f}x**; our masked-only step "
                  f"(as `squeezebert pretrain` runs it) against transformers' standard MaskedLM step: "
                  f"**{r['ours_masked_vs_transformers_standard']:.2f}x**."]
    if r.get("bf16_ratio"):
        lines += ["Both under bf16 autocast (transformers bf16 median / ours bf16 median): "
                  f"**{r['bf16_ratio']:.2f}x**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per path before the rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout of (a)-(c)")
    for flag in ("layers", "hidden", "heads"):
        ap.add_argument(f"--{flag}", type=int, help="override the paper config of (a)-(c), and of transformers'")
    ap.add_argument("--batch", type=int, help="default 32 for (a)-(c), the config's micro_batch for (d)")
    ap.add_argument("--seq", type=int, help="default 128 for (a)-(c), the config's seq_len for (d)")
    ap.add_argument("--small-config", default="configs/pretrain-tapt-cpu.toml", help="(d); '' to skip it")
    ap.add_argument("--json", help="also write the results (all samples) here")
    ap.add_argument("--only", help="comma-separated path letters (e.g. a,b,c): each worker holds a few GB at 32 x "
                                   "128, and all six together exceed 24 GiB where the bf16 path runs")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is (default: squeezebert.train.memory.keep_freed_memory in "
                         "every worker, as the Trainer does)")
    args = ap.parse_args()
    import transformers

    from squeezebert.bench import cpu_features, machine_description
    from squeezebert.fileio import write_json

    features = cpu_features()
    base = {k: getattr(args, k) for k in ("layers", "hidden", "heads", "batch", "seq", "dropout", "threads",
                                          "system_malloc")}
    specs = {"(a) ours fp32": dict(base, kind="ours"), HF: dict(base, kind="transformers"),
             # the same pair decoding only the masked positions: the encoders' difference without the shared head
             "(a2) ours fp32, masked-only decode": dict(base, kind="ours", masked_only=True),
             HF_MASKED: dict(base, kind="transformers", masked_only=True)}
    skipped = {}
    for name, kind in (("(c) ours bf16 autocast", "ours"), (HF_BF16, "transformers")):
        if features["bf16"]:  # both models under bf16 autocast: the like-for-like pair where bf16 is native
            specs[name] = dict(base, kind=kind, bf16=True)
        else:
            skipped[name] = "no native bf16 on this CPU (AVX512_BF16/AMX); emulated is slower"
    if args.small_config:
        specs["(d) small pretraining model"] = dict(base, kind="small", config=args.small_config)
    if args.only:
        wanted = set(args.only.split(","))
        specs = {name: spec for name, spec in specs.items() if name[1:name.index(")")] in wanted}
    workers = [Worker(name, spec) for name, spec in specs.items()]  # they build their models in parallel
    try:
        info = {w.name: w.read() for w in workers}
        warm, samples, losses = interleaved(workers, args.warmup, args.rounds)
    finally:
        for w in workers:
            w.close()
    paths = {}
    for name, ms in samples.items():
        p = info[name]
        paths[name] = dict(p, median_ms=statistics.median(ms), min_ms=min(ms), samples_ms=ms,
                           warmup_ms=warm.get(name, {}).get("ms", []), losses=losses[name],
                           tokens_per_s=p["batch"] * p["seq"] / statistics.median(ms) * 1000)
    for name, p in paths.items():
        if HF in paths and not name.startswith("(d)"):  # (d) is another model at another shape: no ratio
            p["ratio_vs_transformers"] = paths[HF]["median_ms"] / p["median_ms"]
            if HF_MASKED in paths:  # the like-for-like ratio of a masked-only path
                p["ratio_vs_transformers_masked_only"] = paths[HF_MASKED]["median_ms"] / p["median_ms"]
    overrides = ", ".join(f"{k} {getattr(args, k)}" for k in ("layers", "hidden", "heads", "batch", "seq")
                          if getattr(args, k))
    ours = paths.get("(a) ours fp32", {})
    goal_shape = not (args.layers or args.hidden or args.heads) and (ours.get("batch"), ours.get("seq")) == (32, 128)
    results = {"command": shlex.join([sys.executable, *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
               "machine": machine_description(args.threads), "torch": torch.__version__,
               "transformers": transformers.__version__, "cpu_features": features, "settings": vars(args),
               "overrides": overrides, "paths": paths, "goal_shape": goal_shape, "skipped": skipped,
               "headline_ratio": paths.get("(a) ours fp32", {}).get("ratio_vs_transformers"),
               "masked_only_ratio": paths.get("(a2) ours fp32, masked-only decode", {}).get(
                   "ratio_vs_transformers_masked_only"),
               "bf16_ratio": (paths[HF_BF16]["median_ms"] / paths["(c) ours bf16 autocast"]["median_ms"]
                              if {HF_BF16, "(c) ours bf16 autocast"} <= paths.keys() else None),
               # what a user gets: squeezebert pretrain's step against transformers' standard MaskedLM step
               "ours_masked_vs_transformers_standard": paths.get("(a2) ours fp32, masked-only decode", {}).get(
                   "ratio_vs_transformers")}
    print(markdown(results), end="")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    dispatch(main, worker_main)
