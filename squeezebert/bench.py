"""``squeezebert bench``: our inference paths against the baselines, interleaved in one run.

Paths: ours in fp32 (eager: the training path; compiled), bf16 (only on CPUs with native bf16) and int8 (compiled;
eager with ``--quick``), and our model exported to ONNX fp32 and int8 run by onnxruntime (when installed);
baselines (when transformers is installed): transformers' SqueezeBERT fp32, BERT-base fp32 and BERT-base with ``quantize_dynamic`` int8 (what a
user picks today). Every path gets the same inputs; rounds are interleaved so the machine's drift hits all alike.
A GEMM probe in the same run gives the peak each precision can reach on this CPU. Results go to JSON, a markdown
table and PNG plots (latency vs batch size and vs sequence length).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .checkpoint import load_model
from .config import count_flops, preset
from .infer.fast import for_inference, set_threads
from .info import parameter_counts

log = logging.getLogger(__name__)
Runner = Callable[[torch.Tensor, torch.Tensor], Any]


@dataclass
class PathSpec:
    name: str
    precision: str
    baseline: bool
    params: int
    gflops_per_seq: Callable[[int], float]
    make: Callable[[], Runner]  # built lazily: compiled paths compile on first call per shape
    shape_specific: bool = False  # compiled statically: a fresh build per input shape


@dataclass
class Measurement:
    path: str
    batch: int
    seq: int
    median_ms: float
    p90_ms: float
    rounds: int
    sequences_per_s: float = 0.0
    gflops_per_s: float = 0.0
    pct_of_peak: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _timeit(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def cpu_features() -> dict[str, bool]:
    """The instructions the reduced-precision paths lean on. Without native bf16 (AVX512-BF16 / AMX) oneDNN emulates
    bf16 at a small fraction of fp32 speed; without VNNI, int8 GEMMs fall back to slower AVX2 sequences."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}), "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
            "torch_capability": torch.backends.cpu.get_cpu_capability()}


def gemm_probe(rounds: int = 20, features: dict[str, Any] | None = None) -> dict[str, float]:
    """Best GFLOP/s (GOP/s for int8) of plain matrix products on 768 x 768 x 512 in each precision, this run.
    Each precision is probed with the kernel our path uses on this CPU: bf16 only where it is native, int8 through
    torch._int_mm with VNNI and through fbgemm (quantized dynamic linear, int8 activations quantised per call)
    without."""
    features = features or cpu_features()
    m, k, n = 768, 768, 512
    flops = 2 * m * k * n
    a, b = torch.randn(m, k), torch.randn(k, n)
    w1x1 = a.unsqueeze(-1)
    x1x1 = b.unsqueeze(0)
    candidates = {
        "fp32 torch.mm (MKL)": lambda: torch.mm(a, b),
        "fp32 oneDNN 1x1 conv": lambda: F.conv1d(x1x1, w1x1),
    }
    if features["bf16"]:
        a16, b16 = a.bfloat16(), b.bfloat16()
        candidates["bf16 torch.mm (oneDNN)"] = lambda: torch.mm(a16, b16)
    if features["vnni"]:
        a8 = torch.randint(-127, 127, (m, k), dtype=torch.int8)
        b8 = torch.randint(-127, 127, (k, n), dtype=torch.int8)
        candidates["int8 torch._int_mm (VNNI)"] = lambda: torch._int_mm(a8, b8)
    else:
        from .infer.fast import FbgemmInt8Projection
        from .model import GroupedProjection

        proj = GroupedProjection(k, m, 1)
        with torch.no_grad():
            proj.weight.copy_(a)
        fbgemm = FbgemmInt8Projection(proj)
        candidates["int8 fbgemm dynamic linear"] = lambda: fbgemm(b)
    result: dict[str, float] = {}
    for name, fn in candidates.items():
        _timeit(fn, 3)
        result[name] = flops / statistics.median(_timeit(fn, rounds)) / 1e6
    for precision in ("fp32", "bf16", "int8"):
        measured = [v for k_, v in result.items() if k_.startswith(precision + " ")]
        if measured:
            result[f"peak {precision}"] = max(measured)
    return result


def onnx_runner(path: Path, threads: int) -> Runner:
    from .export import onnx_feed, onnx_session

    session = onnx_session(path, threads)

    def run(ids: torch.Tensor, mask: torch.Tensor) -> Any:
        return session.run(None, onnx_feed(ids, mask))

    return run


def onnx_paths(model: Any, work_dir: Path, threads: int, params: int, flops: Callable[[int], float]) -> list[PathSpec]:
    """Our model exported to ONNX (fp32 and dynamic int8) and run by onnxruntime; none when it is not installed.
    The export's own parity check is skipped here (tests and ``squeezebert export`` run it); ``agreement``
    measures the int8 graph against fp32."""
    if not _has_onnxruntime():
        log.warning("onnxruntime is not installed (pip install '.[export]'): no ONNX paths")
        return []
    from .export import export_onnx

    paths = []
    for int8 in (False, True):
        file = work_dir / f"squeezebert{'-int8' if int8 else ''}.onnx"
        start = time.perf_counter()
        export_onnx(model, file, int8=int8, check=False)
        log.info("exported %s in %.1fs", file.name, time.perf_counter() - start)
        precision = "int8" if int8 else "fp32"
        paths.append(PathSpec(f"squeezebert onnx {precision} (onnxruntime)", precision, False, params, flops,
                              lambda f=file: onnx_runner(f, threads)))
    return paths


def build_paths(baselines: bool = True, seed: int = 0, onnx_dir: Path | None = None, threads: int = 2,
                bf16: bool = True, compile: bool = True, model_preset: str = "squeezebert-uncased") -> list[PathSpec]:
    """The paper's configuration with random weights; ours are loaded from the reference's checkpoint so both
    compute the same function. ``onnx_dir``: where to write the ONNX exports (None: no ONNX paths); ``bf16``:
    include the bf16 path (pointless on CPUs without native bf16, where it is emulated); ``compile``: our bf16/int8
    paths compiled by torch.compile (minutes per shape on 2 busy cores) or run eagerly with the same module swaps;
    ``model_preset``: another config for smoke tests (the baselines are the paper's configuration only)."""
    config = preset(model_preset)
    if model_preset != "squeezebert-uncased" and baselines:
        log.warning("baselines are built for the paper's configuration only: skipped for %s", model_preset)
        baselines = False
    torch.manual_seed(seed)
    paths: list[PathSpec] = []
    squeeze_params = parameter_counts(config)["total"]
    squeeze_flops = lambda s: count_flops(config, s) / 1e9  # noqa: E731
    transformers = None
    if baselines:
        try:
            import transformers  # the reference, used here only as a baseline
        except ImportError:
            log.warning("transformers is not installed: running our paths only")
    if transformers is not None:
        ref = transformers.SqueezeBertModel(transformers.SqueezeBertConfig()).eval()
        with tempfile.TemporaryDirectory() as d:
            ref.save_pretrained(d)
            ours = load_model(d)
    else:
        from .model import SqueezeBertModel

        ref, ours = None, SqueezeBertModel(config).eval()

    paths.append(PathSpec("squeezebert fp32 eager", "fp32", False, squeeze_params, squeeze_flops,
                          lambda: lambda ids, mask: ours(ids, mask)))
    for precision in ("fp32", "bf16", "int8") if bf16 else ("fp32", "int8"):
        if compile:
            paths.append(PathSpec(f"squeezebert {precision} compiled", precision, False, squeeze_params,
                                  squeeze_flops, (lambda p=precision: for_inference(ours, p, dynamic=False)),
                                  shape_specific=True))
        elif precision != "fp32":  # fp32 eager is the model itself, already above
            paths.append(PathSpec(f"squeezebert {precision} eager", precision, False, squeeze_params, squeeze_flops,
                                  (lambda p=precision: for_inference(ours, p, compile=False))))
    if onnx_dir is not None:
        paths += onnx_paths(ours, onnx_dir, threads, squeeze_params, squeeze_flops)
    if transformers is not None:
        bert_config = preset("bert-base-uncased")
        bert = transformers.BertModel(transformers.BertConfig()).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bert_int8 = torch.ao.quantization.quantize_dynamic(bert, {torch.nn.Linear}, dtype=torch.qint8)
        bert_params = parameter_counts(bert_config)["total"]
        bert_flops = lambda s: count_flops(bert_config, s) / 1e9  # noqa: E731
        paths += [
            PathSpec("transformers SqueezeBERT fp32", "fp32", True, squeeze_params, squeeze_flops,
                     lambda: lambda ids, mask: ref(input_ids=ids, attention_mask=mask)),
            PathSpec("transformers BERT-base fp32", "fp32", True, bert_params, bert_flops,
                     lambda: lambda ids, mask: bert(input_ids=ids, attention_mask=mask)),
            PathSpec("transformers BERT-base int8 (quantize_dynamic)", "int8", True, bert_params, bert_flops,
                     lambda: lambda ids, mask: bert_int8(input_ids=ids, attention_mask=mask)),
        ]
    return paths


def measure_shape(paths: list[PathSpec], batch: int, seq: int, rounds: int, peaks: dict[str, float],
                  cache: dict[str, Runner]) -> list[Measurement]:
    """Interleaved rounds of every path at one input shape."""
    # ids below 1000 are in every preset's vocabulary (tiny's included); the content does not change the cost
    ids = torch.randint(1, 1000, (batch, seq), generator=torch.Generator().manual_seed(batch * 1000 + seq))
    mask = torch.ones_like(ids)
    runners: dict[str, Runner] = {}
    with torch.inference_mode():
        for p in paths:
            if p.shape_specific or p.name not in cache:
                cache[p.name] = p.make()
            runners[p.name] = cache[p.name]
            start = time.perf_counter()
            runners[p.name](ids, mask)  # warm-up; compiles the compiled paths for this shape
            log.info("%s %dx%d first call %.1fs", p.name, batch, seq, time.perf_counter() - start)
            runners[p.name](ids, mask)
        times: dict[str, list[float]] = {p.name: [] for p in paths}
        for _ in range(rounds):
            for p in paths:
                times[p.name] += _timeit(lambda: runners[p.name](ids, mask), 1)
    out = []
    for p in paths:
        med = statistics.median(times[p.name])
        p90 = sorted(times[p.name])[min(len(times[p.name]) - 1, int(0.9 * len(times[p.name])))]
        gflops = p.gflops_per_seq(seq) * batch / med * 1000
        peak = peaks.get(f"peak {p.precision}")
        out.append(Measurement(p.name, batch, seq, med, p90, rounds, batch / med * 1000, gflops,
                               100 * gflops / peak if peak else None))
    return out


def agreement(batch: int = 4, seq: int = 128, onnx: bool = True, precisions: tuple[str, ...] = ("fp32", "bf16", "int8"),
              model_preset: str = "squeezebert-uncased") -> dict[str, dict[str, float]]:
    """How far each fast path is from the fp32 reference path, on a classifier head (random weights)."""
    from .model import SqueezeBertForSequenceClassification

    torch.manual_seed(1)
    model = SqueezeBertForSequenceClassification(preset(model_preset, num_labels=3)).eval()
    ids = torch.randint(1, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(ids)
    mask[1:, seq // 2:] = 0
    valid = mask.bool()
    with torch.inference_mode():
        ref = model(ids, mask)
        hidden_ref = model.transformer(ids, mask).last_hidden_state
        result = {}
        outputs = {}
        for precision in precisions:
            logits = for_inference(model, precision, compile=False)(ids, mask).logits
            hidden = for_inference(model.transformer, precision, compile=False)(ids, mask).last_hidden_state
            outputs[precision] = logits, hidden
        if onnx and _has_onnxruntime():
            outputs.update(_onnx_outputs(model, ids, mask))
        for name, (logits, hidden) in outputs.items():
            result[name] = {
                "logits_max_abs_diff": (logits - ref.logits).abs().max().item(),
                "hidden_max_abs_diff": (hidden - hidden_ref).abs()[valid].max().item(),
                "hidden_cosine_min": F.cosine_similarity(hidden[valid], hidden_ref[valid], dim=-1).min().item(),
            }
    return result


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx_outputs(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(logits, last hidden state) with the encoder exported to ONNX fp32 and int8 and run by onnxruntime; the
    logits apply the model's own (fp32) classifier to the ONNX pooler output, one export per precision not two."""
    from .export import export_onnx, onnx_feed, onnx_session

    feed = onnx_feed(ids, mask)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for int8 in (False, True):
            file = Path(d) / f"encoder{'-int8' if int8 else ''}.onnx"
            export_onnx(model.transformer, file, int8=int8, check=False)
            hidden, pooled = (torch.from_numpy(a) for a in onnx_session(file).run(
                ["last_hidden_state", "pooler_output"], feed))
            out[f"onnx {'int8' if int8 else 'fp32'}"] = (model.classifier(pooled), hidden)
    return out


def run(out_dir: str | Path = "out/bench", quick: bool = False, threads: int = 2, rounds: int | None = None,
        baselines: bool = True, onnx: bool = True, compile: bool | None = None,
        model_preset: str = "squeezebert-uncased") -> dict[str, Any]:
    """Run the benchmark; write results.json, results.md and plots into ``out_dir``; return the results.
    ``quick``: batch 1 x 128 only, fewer rounds, and (unless ``compile`` says otherwise) no torch.compile, whose
    compilation alone takes minutes on 2 cores."""
    compile = not quick if compile is None else compile
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(threads)
    rounds = rounds or (10 if quick else 30)
    started = time.time()
    features = cpu_features()
    peaks = gemm_probe(5 if quick else 20, features)
    if not features["bf16"]:
        log.warning("this CPU has no native bf16 (AVX512-BF16/AMX): skipping the bf16 path (emulated, very slow)")
    onnx_dir = Path(tempfile.mkdtemp(prefix="squeezebert-bench-"))
    paths = build_paths(baselines, onnx_dir=onnx_dir if onnx else None, threads=threads, bf16=features["bf16"],
                        compile=compile, model_preset=model_preset)
    cache: dict[str, Runner] = {}
    headline = measure_shape(paths, 1, 128, rounds, peaks, cache)
    # quick mode stops at the headline shape: batch 32 of BERT-base fp32 alone takes seconds a call.
    throughput = [] if quick else measure_shape(paths, 32, 128, max(3, rounds // 5), peaks, cache)
    sweeps: list[Measurement] = []
    if not quick:
        ours_and_ref = [p for p in paths if not p.baseline or p.name == "transformers SqueezeBERT fp32"]
        for seq in (16, 32, 64, 256, 512):
            sweeps += measure_shape(ours_and_ref, 1, seq, max(5, rounds // 3), peaks, cache)
        for batch in (4, 8, 16):
            sweeps += measure_shape(ours_and_ref, batch, 128, max(3, rounds // 5), peaks, cache)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_description(threads),
        "cpu_features": features,
        "quick": quick,
        "compiled": compile,
        "model_preset": model_preset,
        "rounds": rounds,
        "gemm_probe_gflops": peaks,
        "paths": {p.name: {"precision": p.precision, "params": p.params, "gflops_at_128": p.gflops_per_seq(128),
                           "baseline": p.baseline} for p in paths},
        "headline_1x128": [asdict(m) for m in headline],
        "throughput_32x128": [asdict(m) for m in throughput],
        "sweeps": [asdict(m) for m in sweeps],
        "agreement_vs_fp32": agreement(onnx=onnx, precisions=("fp32", "bf16", "int8") if features["bf16"]
                                       else ("fp32", "int8"), model_preset=model_preset),
    }
    shutil.rmtree(onnx_dir, ignore_errors=True)
    results["ratios"] = ratios(results)
    results["goals"] = goals(results)
    results["wall_s"] = round(time.time() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    plot(results, out)
    return results


def machine_description(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {threads} threads, torch {torch.__version__}, {platform.system()} {platform.release()}"


def ratios(results: dict[str, Any]) -> dict[str, float]:
    def by_name(rows):
        return {r["path"]: r for r in rows}

    head, thr = by_name(results["headline_1x128"]), by_name(results["throughput_32x128"])
    out = {}
    ref, bert8 = "transformers SqueezeBERT fp32", "transformers BERT-base int8 (quantize_dynamic)"
    for name in head:
        if name.startswith("squeezebert"):
            if ref in head:
                out[f"{name} vs {ref} @1x128 (speed-up)"] = head[ref]["median_ms"] / head[name]["median_ms"]
            if ref in thr:
                out[f"{name} vs {ref} @32x128 (throughput)"] = (thr[name]["sequences_per_s"]
                                                                 / thr[ref]["sequences_per_s"])
            if bert8 in head:
                out[f"{name} vs {bert8} @1x128 (speed-up)"] = head[bert8]["median_ms"] / head[name]["median_ms"]
    return out


GOALS = (  # issue 3's targets: (name, table, our paths of these precisions, baseline, target ratio)
    ("fp32 speed-up vs transformers SqueezeBERT @1x128", "headline_1x128", ("fp32",),
     "transformers SqueezeBERT fp32", 1.7),
    ("reduced precision speed-up vs BERT-base int8 @1x128", "headline_1x128", ("bf16", "int8"),
     "transformers BERT-base int8 (quantize_dynamic)", 3.0),
    ("throughput vs transformers SqueezeBERT fp32 @32x128", "throughput_32x128", ("fp32", "bf16", "int8"),
     "transformers SqueezeBERT fp32", 3.0),
)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal: our best path of the allowed precisions against the baseline, measured in this run."""
    out = []
    for name, table, precisions, baseline, target in GOALS:
        rows = {r["path"]: r for r in results[table]}
        ours = [r for n, r in rows.items() if not results["paths"][n]["baseline"]
                and results["paths"][n]["precision"] in precisions]
        if baseline not in rows or not ours:
            out.append({"goal": name, "target": target, "met": None, "note": "not measured in this run"})
            continue
        best = min(ours, key=lambda r: r["median_ms"])  # same batch for all: lowest latency = highest throughput
        ratio = rows[baseline]["median_ms"] / best["median_ms"]
        out.append({"goal": name, "target": target, "best_path": best["path"], "ratio": ratio,
                    "met": ratio >= target})
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# squeezebert bench ({results['date']})", "", f"Machine: {results['machine']}.",
             "CPU features: " + ", ".join(f"{k} {v}" for k, v in results.get("cpu_features", {}).items()) + ".",
             f"Rounds: {results['rounds']} at 1x128 (interleaved), fewer at larger shapes; wall {results.get('wall_s', '?')} s.",
             "", "GEMM probe (same run, GFLOP/s or GOP/s): " + ", ".join(
                 f"{k} {v:.0f}" for k, v in results["gemm_probe_gflops"].items() if not k.startswith("peak")), ""]
    for title, key in (("Batch 1 x 128 tokens", "headline_1x128"), ("Batch 32 x 128 tokens", "throughput_32x128")):
        if not results[key]:
            continue
        lines += [f"## {title}", "", "| path | params | GFLOPs/seq | median ms | p90 ms | seq/s | GFLOP/s | % of peak |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results[key]:
            info = results["paths"][r["path"]]
            pct = f"{r['pct_of_peak']:.0f}%" if r["pct_of_peak"] is not None else "-"
            lines.append(f"| {r['path']} | {info['params'] / 1e6:.1f}M | {info['gflops_at_128']:.2f} | "
                         f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['sequences_per_s']:.1f} | "
                         f"{r['gflops_per_s']:.0f} | {pct} |")
        lines.append("")
    lines += ["## Goals (issue 3; same run)", "", "| goal | target | best path | ratio | met |", "|---|---|---|---|---|"]
    for g in results.get("goals", []):
        if g["met"] is None:
            lines.append(f"| {g['goal']} | {g['target']:.1f}x | - | - | {g['note']} |")
        else:
            lines.append(f"| {g['goal']} | {g['target']:.1f}x | {g['best_path']} | {g['ratio']:.2f}x | "
                         f"{'yes' if g['met'] else '**no**'} |")
    lines.append("")
    lines += ["## Ratios (same run)", ""] + [f"- {k}: **{v:.2f}x**" for k, v in results["ratios"].items()] + [""]
    lines += ["## Agreement with the fp32 PyTorch model (classifier head, random weights, 4 x 128 with padding)", "",
              "| precision | logits max abs diff | hidden max abs diff | min token cosine |", "|---|---|---|---|"]
    for p, a in results["agreement_vs_fp32"].items():
        lines.append(f"| {p} | {a['logits_max_abs_diff']:.2e} | {a['hidden_max_abs_diff']:.2e} | "
                     f"{a['hidden_cosine_min']:.5f} |")
    if results["sweeps"]:
        lines += ["", "## Sweeps (median ms)", "", "| path | batch | seq | median ms | GFLOP/s |", "|---|---|---|---|---|"]
        rows = results["headline_1x128"] + results["throughput_32x128"] + results["sweeps"]
        names = {r["path"] for r in results["sweeps"]}
        for r in sorted((r for r in rows if r["path"] in names), key=lambda r: (r["path"], r["batch"], r["seq"])):
            lines.append(f"| {r['path']} | {r['batch']} | {r['seq']} | {r['median_ms']:.1f} | {r['gflops_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots")
        return
    rows = results["headline_1x128"] + results["throughput_32x128"] + results["sweeps"]
    for axis, fixed, fname, xlabel in (("seq", ("batch", 1), "latency_vs_seq.png", "sequence length (batch 1)"),
                                       ("batch", ("seq", 128), "latency_vs_batch.png", "batch size (128 tokens)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in results["paths"]:
            pts = sorted((r[axis], r["median_ms"]) for r in rows if r["path"] == name and r[fixed[0]] == fixed[1])
            if len(pts) > 1:
                ax.plot(*zip(*pts), marker="o", label=name)
        if not ax.lines:  # --quick measures one shape: nothing to draw
            plt.close(fig)
            continue
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"squeezebert bench, {results['date']}")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
