"""``squeezebert bench``: our inference paths against the anchors a user has today, interleaved in one run.

Paths: ours in fp32 (eager: the training path; compiled when asked), bf16 (only on CPUs with native bf16), int8
(eager; compiled when asked), and our model exported to ONNX fp32 and int8 run by onnxruntime. Anchors (when
transformers is installed), the fastest a user gets in a few lines: onnxruntime int8 BERT-base (plain
``torch.onnx.export`` of transformers' BertModel + ``quantize_dynamic``), onnxruntime fp32 on transformers'
SqueezeBERT (plain ``torch.onnx.export``), torch ``quantize_dynamic`` int8 BERT-base and transformers' SqueezeBERT
eager. ``model``: a user's checkpoint for our paths instead of the paper configuration (the anchors stay).

Every path runs in its own worker process (onnxruntime sessions, and OpenMP pools, that share a process spin and
slow each other), with the same inputs; the parent interleaves rounds across workers, one call at a time, so the
machine's drift hits all alike, and reports medians. A GEMM probe in the same run gives the peak each precision
can reach on this CPU, and the CPU class (AVX2, AVX-512 VNNI, AMX, ...) labels the figures. Results go to JSON, a
markdown table and PNG plots (latency vs batch size and vs sequence length).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
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
from .fileio import atomic_path, write_text
from .infer.fast import cpu_class, for_inference, has_native_bf16, has_vnni, set_threads
from .info import parameter_counts
from .precision import WEIGHT_FORMATS

log = logging.getLogger(__name__)
Runner = Callable[[torch.Tensor, torch.Tensor], Any]
ORT_BERT_INT8 = "onnxruntime BERT-base int8 (quantize_dynamic)"
ORT_SQUEEZEBERT_FP32 = "onnxruntime SqueezeBERT fp32 (transformers export)"
TORCH_BERT_INT8 = "torch BERT-base int8 (quantize_dynamic)"
HF_SQUEEZEBERT = "transformers SqueezeBERT fp32"
# Between two workers' calls, so the previous one's thread pool has stopped spinning: onnxruntime's pool spins
# after a run, and with 20 ms here the next worker ran 1.3x slower (ours int8 ONNX 75.9 ms at 1 x 128 vs 53.7 with
# 100 ms and 55-57 alone; BERT-base int8 132 vs 114-117; AVX2, 2 threads, 2026-12-01).
PAUSE_S = 0.1


@dataclass
class PathSpec:
    name: str
    precision: str
    baseline: bool
    params: int
    gflops_per_seq: Callable[[int], float]
    worker: dict[str, Any]  # how a worker process builds the runner (see build_runner); JSON
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



def weight_formats(bf16: bool) -> tuple[str, ...]:
    """The weight formats to measure: bf16 only where the CPU runs it natively (emulated, it is slower than fp32)."""
    return WEIGHT_FORMATS if bf16 else tuple(f for f in WEIGHT_FORMATS if f != "bf16")

def _timeit(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def cpu_features() -> dict[str, Any]:
    """The instructions the reduced-precision paths lean on. Without native bf16 (AVX512-BF16 / AMX) oneDNN emulates
    bf16 at a small fraction of fp32 speed; without VNNI, int8 GEMMs fall back to slower AVX2 sequences."""
    from .infer.fast import cpu_flags

    flags = cpu_flags()
    return {"class": cpu_class(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "bf16": has_native_bf16(),
            "vnni": has_vnni(), "torch_capability": torch.backends.cpu.get_cpu_capability()}
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
    for precision in WEIGHT_FORMATS:
        measured = [v for k_, v in result.items() if k_.startswith(precision + " ")]
        if measured:
            result[f"peak {precision}"] = max(measured)
    return result




# ---- worker processes: one path each ----------------------------------------------------------------------------


def inputs(batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ids for every path at a shape (ids below 1000 are in every preset's vocabulary); no padding."""
    ids = torch.randint(1, 1000, (batch, seq), generator=torch.Generator().manual_seed(batch * 1000 + seq))
    return ids, torch.ones_like(ids)


def build_runner(spec: dict[str, Any], threads: int) -> Runner:
    """The callable a worker times, from its JSON spec: ``onnx`` (a file, one onnxruntime session), ``ours`` (a
    checkpoint, eager or ``for_inference``) or ``transformers`` (a saved transformers model, optionally
    ``quantize_dynamic`` int8)."""
    kind = spec["kind"]
    if kind == "onnx":
        from .export import onnx_feed, onnx_session

        session = onnx_session(spec["file"], threads)
        names = {i.name for i in session.get_inputs()}
        return lambda ids, mask: session.run(None, {k: v for k, v in onnx_feed(ids, mask).items() if k in names})
    if kind == "ours":
        model = load_model(spec["checkpoint"]).eval()
        if spec["precision"] == "fp32" and not spec.get("compile"):
            return lambda ids, mask: model(ids, mask)
        return for_inference(model, spec["precision"], compile=spec.get("compile", False), dynamic=False)
    if kind == "transformers":
        import transformers

        model = getattr(transformers, spec["class"]).from_pretrained(spec["checkpoint"]).eval()
        if spec.get("int8"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return lambda ids, mask: model(input_ids=ids, attention_mask=mask)
    raise ValueError(f"unknown worker kind {kind!r}")


def worker_main(spec_json: str, threads: int) -> None:
    """A worker: build one path, then answer ``{"batch", "seq", "n"}`` lines with ``n`` timings (ms) on stdout.
    The first request for a shape warms it up first (and compiles a compiled path), reported as ``first_s``."""
    spec = json.loads(spec_json)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed (libraries, C code) goes to stderr, not into the protocol
    set_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    build = lambda: build_runner(spec, threads)  # noqa: E731
    runner, seen = build(), set()
    protocol.write(json.dumps({"ready": True}) + "\n")
    with torch.inference_mode():
        for line in sys.stdin:
            request = json.loads(line)
            shape = request["batch"], request["seq"]
            ids, mask = inputs(*shape)
            reply: dict[str, Any] = {}
            if shape not in seen:
                if spec.get("shape_specific") and seen:
                    runner = build()
                start = time.perf_counter()
                runner(ids, mask)
                reply["first_s"] = time.perf_counter() - start
                runner(ids, mask)
                seen.add(shape)
            reply["ms"] = _timeit(lambda: runner(ids, mask), request["n"])
            protocol.write(json.dumps(reply) + "\n")


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, path: PathSpec, threads: int):
        self.path = path
        spec = dict(path.worker, shape_specific=path.shape_specific)
        self.proc = subprocess.Popen([sys.executable, "-m", "squeezebert.bench", "--worker", json.dumps(spec),
                                      str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:  # workers start in parallel; each says ready once its path is built
        self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker for {self.path.name!r} exited (code {self.proc.wait()}); see its stderr")
        return json.loads(line)

    def time(self, batch: int, seq: int, n: int = 1) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"batch": batch, "seq": seq, "n": n}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def export_reference_onnx(model: torch.nn.Module, out: Path, int8: bool = False) -> None:
    """What a user does with a transformers model in two lines: plain ``torch.onnx.export`` (dynamic batch and
    sequence), optionally ``quantize_dynamic`` (int8 weights per channel, the quantiser's other defaults)."""
    class Plain(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    from .export import INPUT_NAMES, _dynamic_axes, example_inputs

    sample = example_inputs(model.config, 2, 16)
    with torch.no_grad():
        outputs = Plain(model)(*sample)
    names = ["last_hidden_state", "pooler_output"]
    fp32 = out.with_suffix(".fp32.onnx") if int8 else out
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Plain(model), sample, str(fp32), input_names=list(INPUT_NAMES), output_names=names,
                          dynamic_axes=_dynamic_axes(names, outputs), opset_version=17, dynamo=False)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        fp32.unlink()


def onnx_paths(model: Any, work_dir: Path, params: int, flops: Callable[[int], float]) -> list[PathSpec]:
    """Our model exported to ONNX (fp32, and its dynamic int8 quantisation) for onnxruntime; none when it is not
    installed. The export's own parity check is skipped here (tests and ``squeezebert export`` run it);
    ``agreement`` measures the int8 graph against fp32."""
    if not _has_onnxruntime():
        log.warning("onnxruntime is not installed (pip install '.[export]'): no ONNX paths")
        return []
    from .export import export_onnx, quantize_onnx

    fp32, int8 = work_dir / "squeezebert.onnx", work_dir / "squeezebert-int8.onnx"
    start = time.perf_counter()
    export_onnx(model, fp32, check=False)
    int8.write_bytes(quantize_onnx(fp32.read_bytes()))
    log.info("exported our ONNX fp32 + int8 in %.1fs", time.perf_counter() - start)
    return [PathSpec(f"squeezebert onnx {p} (onnxruntime)", p, False, params, flops, {"kind": "onnx", "file": str(f)})
            for p, f in (("fp32", fp32), ("int8", int8))]


def anchor_paths(work_dir: Path, seed: int, onnx: bool) -> tuple[list[PathSpec], Path | None]:
    """The anchors (random weights, paper configuration and BERT-base) and the transformers SqueezeBERT checkpoint
    our own paths load by default (so both compute the same function); none without transformers."""
    try:
        import transformers  # the reference, used here only as a baseline
    except ImportError:
        log.warning("transformers is not installed: running our paths only")
        return [], None
    squeeze_config, bert_config = preset("squeezebert-uncased"), preset("bert-base-uncased")
    sq_params, bert_params = parameter_counts(squeeze_config)["total"], parameter_counts(bert_config)["total"]
    sq_flops = lambda s: count_flops(squeeze_config, s) / 1e9  # noqa: E731
    bert_flops = lambda s: count_flops(bert_config, s) / 1e9  # noqa: E731
    torch.manual_seed(seed)
    squeezebert_dir, bert_dir = work_dir / "transformers-squeezebert", work_dir / "transformers-bert"
    reference = transformers.SqueezeBertModel(transformers.SqueezeBertConfig()).eval()
    reference.save_pretrained(squeezebert_dir)
    bert = transformers.BertModel(transformers.BertConfig()).eval()
    bert.save_pretrained(bert_dir)
    paths = [PathSpec(HF_SQUEEZEBERT, "fp32", True, sq_params, sq_flops,
                      {"kind": "transformers", "class": "SqueezeBertModel", "checkpoint": str(squeezebert_dir)}),
             PathSpec(TORCH_BERT_INT8, "int8", True, bert_params, bert_flops,
                      {"kind": "transformers", "class": "BertModel", "checkpoint": str(bert_dir), "int8": True})]
    if onnx and _has_onnxruntime():
        start = time.perf_counter()
        export_reference_onnx(reference, work_dir / "transformers-squeezebert.onnx")
        export_reference_onnx(bert, work_dir / "transformers-bert-int8.onnx", int8=True)
        log.info("exported the onnxruntime anchors in %.1fs", time.perf_counter() - start)
        paths += [PathSpec(ORT_SQUEEZEBERT_FP32, "fp32", True, sq_params, sq_flops,
                           {"kind": "onnx", "file": str(work_dir / "transformers-squeezebert.onnx")}),
                  PathSpec(ORT_BERT_INT8, "int8", True, bert_params, bert_flops,
                           {"kind": "onnx", "file": str(work_dir / "transformers-bert-int8.onnx")})]
    return paths, squeezebert_dir


def build_paths(work_dir: Path, baselines: bool = True, seed: int = 0, onnx: bool = True, bf16: bool = False,
                compile: bool = False, model_preset: str = "squeezebert-uncased",
                model: str | None = None) -> list[PathSpec]:
    """Every path of the run, as worker specs; checkpoints and ONNX files are written into ``work_dir``.
    ``model``: a checkpoint directory for our paths (default: the paper's configuration with random weights, loaded
    from the transformers anchor's checkpoint so both compute the same function; ``model_preset`` another config
    for smoke tests, without anchors). ``bf16``: include the bf16 path (only where bf16 is native); ``compile``:
    our fp32/bf16/int8 paths also compiled by torch.compile (minutes per shape on 2 busy cores)."""
    if model_preset != "squeezebert-uncased" and baselines and model is None:
        log.warning("anchors are built for the paper's configuration only: skipped for %s", model_preset)
        baselines = False
    paths, reference_dir = anchor_paths(work_dir, seed, onnx) if baselines else ([], None)
    if model is not None:
        ours_dir = Path(model)
    elif reference_dir is not None and model_preset == "squeezebert-uncased":
        ours_dir = reference_dir
    else:
        from .model import SqueezeBertModel

        torch.manual_seed(seed)
        ours_dir = work_dir / "ours"
        SqueezeBertModel(preset(model_preset)).eval().save_pretrained(str(ours_dir))
    ours = load_model(str(ours_dir)).eval()
    params = sum(p.numel() for p in ours.parameters())
    flops = lambda s: count_flops(ours.config, s) / 1e9  # noqa: E731
    spec = {"kind": "ours", "checkpoint": str(ours_dir)}
    own = [PathSpec("squeezebert fp32 eager", "fp32", False, params, flops, dict(spec, precision="fp32"))]
    for precision in weight_formats(bf16):
        if precision != "fp32":
            own.append(PathSpec(f"squeezebert {precision} eager", precision, False, params, flops,
                                dict(spec, precision=precision)))
        if compile:
            own.append(PathSpec(f"squeezebert {precision} compiled", precision, False, params, flops,
                                dict(spec, precision=precision, compile=True), shape_specific=True))
    if onnx:
        own += onnx_paths(ours, work_dir, params, flops)
    return own + paths


def measure_shape(workers: list[Worker], batch: int, seq: int, rounds: int,
                  peaks: dict[str, float]) -> list[Measurement]:
    """Interleaved rounds of every worker at one input shape: one call each in turn, ``rounds`` times."""
    for w in workers:  # warm-up (and compilation of the compiled paths) for this shape
        log.info("%s %dx%d first call %.1fs", w.path.name, batch, seq, w.time(batch, seq, 1).get("first_s", 0.0))
    times: dict[str, list[float]] = {w.path.name: [] for w in workers}
    for _ in range(rounds):
        for w in workers:
            time.sleep(PAUSE_S)
            times[w.path.name] += w.time(batch, seq, 1)["ms"]
    out = []
    for w in workers:
        p, t = w.path, sorted(times[w.path.name])
        med = statistics.median(t)
        gflops = p.gflops_per_seq(seq) * batch / med * 1000
        peak = peaks.get(f"peak {p.precision}")
        out.append(Measurement(p.name, batch, seq, med, t[min(len(t) - 1, int(0.9 * len(t)))], rounds,
                               batch / med * 1000, gflops, 100 * gflops / peak if peak else None))
    return out


def agreement(batch: int = 4, seq: int = 128, onnx: bool = True, precisions: tuple[str, ...] = WEIGHT_FORMATS,
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
    logits apply the model's own (fp32) classifier to the ONNX pooler output: one export, quantised for int8."""
    from .export import export_onnx, onnx_feed, onnx_session, quantize_onnx

    feed = onnx_feed(ids, mask)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        export_onnx(model.transformer, Path(d) / "encoder.onnx", check=False)
        (Path(d) / "encoder-int8.onnx").write_bytes(quantize_onnx((Path(d) / "encoder.onnx").read_bytes()))
        for int8 in (False, True):
            file = Path(d) / f"encoder{'-int8' if int8 else ''}.onnx"
            hidden, pooled = (torch.from_numpy(a) for a in onnx_session(file).run(
                ["last_hidden_state", "pooler_output"], feed))
            out[f"onnx {'int8' if int8 else 'fp32'}"] = (model.classifier(pooled), hidden)
    return out


def run(out_dir: str | Path = "out/bench", quick: bool = False, threads: int = 2, rounds: int | None = None,
        baselines: bool = True, onnx: bool = True, compile: bool = False,
        model_preset: str = "squeezebert-uncased", model: str | None = None) -> dict[str, Any]:
    """Run the benchmark; write results.json, results.md and plots into ``out_dir``; return the results.
    ``quick``: batch 1 x 128 only, fewer rounds. ``compile``: also our torch.compile'd paths (opt-in, as in
    ``for_inference``: compilation takes minutes per shape on 2 cores). ``model``: a checkpoint directory to
    benchmark instead of the paper configuration (the anchors stay)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(threads)
    rounds = rounds or (10 if quick else 30)
    started = time.time()
    features = cpu_features()
    log.warning("CPU class: %s (%s)", features["class"], machine_description(threads))
    peaks = gemm_probe(5 if quick else 20, features)
    if not features["bf16"]:
        log.warning("this CPU has no native bf16 (AVX512-BF16/AMX): no bf16 path (emulated, slower than fp32)")
    work_dir = Path(tempfile.mkdtemp(prefix="squeezebert-bench-"))
    try:
        paths = build_paths(work_dir, baselines, onnx=onnx, bf16=features["bf16"], compile=compile,
                            model_preset=model_preset, model=model)
        workers: list[Worker] = []
        try:
            for p in paths:
                workers.append(Worker(p, threads))
            for w in workers:
                w.wait_ready()
            headline = measure_shape(workers, 1, 128, rounds, peaks)
            # quick mode stops at the headline shape: batch 32 of the BERT-base anchors takes seconds a call.
            throughput = [] if quick else measure_shape(workers, 32, 128, max(3, rounds // 5), peaks)
            sweeps: list[Measurement] = []
            if not quick:
                ours_and_ref = [w for w in workers if not w.path.baseline or w.path.name == ORT_SQUEEZEBERT_FP32]
                for seq in (16, 32, 64, 256, 512):
                    sweeps += measure_shape(ours_and_ref, 1, seq, max(5, rounds // 3), peaks)
                for batch in (4, 8, 16):
                    sweeps += measure_shape(ours_and_ref, batch, 128, max(3, rounds // 5), peaks)
        finally:
            for w in workers:
                w.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_description(threads),
        "cpu_class": features["class"],
        "cpu_features": features,
        "quick": quick,
        "compiled": compile,
        "model_preset": model_preset,
        "model": model,
        "rounds": rounds,
        "gemm_probe_gflops": peaks,
        "paths": {p.name: {"precision": p.precision, "params": p.params, "gflops_at_128": p.gflops_per_seq(128),
                           "baseline": p.baseline,
                           "engine": "onnxruntime" if p.worker["kind"] == "onnx" else "pytorch"} for p in paths},
        "headline_1x128": [asdict(m) for m in headline],
        "throughput_32x128": [asdict(m) for m in throughput],
        "sweeps": [asdict(m) for m in sweeps],
        "agreement_vs_fp32": agreement(onnx=onnx, precisions=weight_formats(features["bf16"]),
                                       model_preset=model_preset),
    }
    results["ratios"] = ratios(results)
    results["goals"] = goals(results)
    results["slower_than_fp32"] = slower_than_fp32(results)
    results["wall_s"] = round(time.time() - started, 1)
    write_text(out / "results.json", json.dumps(results, indent=2))
    write_text(out / "results.md", markdown(results))
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
    """Each of our paths against each anchor measured: speed-up at 1 x 128, throughput ratio at 32 x 128."""
    out = {}
    for table, label in (("headline_1x128", "@1x128 (speed-up)"), ("throughput_32x128", "@32x128 (throughput)")):
        rows = {r["path"]: r for r in results[table]}
        anchors = [n for n in rows if results["paths"][n]["baseline"]]
        for name in rows:
            if not results["paths"][name]["baseline"]:
                for anchor in anchors:
                    out[f"{name} vs {anchor} {label}"] = rows[anchor]["median_ms"] / rows[name]["median_ms"]
    return out


ANY = WEIGHT_FORMATS
GOALS = (  # issue 15's targets: (name, table, our paths of these precisions, on these engines, anchor, target)
    ("best path vs onnxruntime BERT-base int8 @1x128", "headline_1x128", ANY, ("onnxruntime", "pytorch"),
     ORT_BERT_INT8, 2.5),
    ("best fp32 path vs onnxruntime SqueezeBERT fp32 @1x128", "headline_1x128", ("fp32",), ("onnxruntime", "pytorch"),
     ORT_SQUEEZEBERT_FP32, 1.1),
    ("PyTorch fp32 path vs onnxruntime SqueezeBERT fp32 @1x128", "headline_1x128", ("fp32",), ("pytorch",),
     ORT_SQUEEZEBERT_FP32, 1.0),
    ("throughput vs onnxruntime BERT-base int8 @32x128", "throughput_32x128", ANY, ("onnxruntime", "pytorch"),
     ORT_BERT_INT8, 2.5),
)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal: our fastest path of the allowed precisions and engines against the anchor, in this run."""
    out = []
    for name, table, precisions, engines, baseline, target in GOALS:
        rows = {r["path"]: r for r in results[table]}
        info = results["paths"]
        ours = [r for n, r in rows.items() if not info[n]["baseline"] and info[n]["precision"] in precisions
                and info[n].get("engine", "pytorch") in engines]
        if baseline not in rows or not ours:
            out.append({"goal": name, "target": target, "met": None, "note": "not measured in this run"})
            continue
        best = min(ours, key=lambda r: r["median_ms"])  # same batch for all: lowest latency = highest throughput
        ratio = rows[baseline]["median_ms"] / best["median_ms"]
        out.append({"goal": name, "target": target, "best_path": best["path"], "ratio": ratio,
                    "met": ratio >= target})
    return out


def slower_than_fp32(results: dict[str, Any]) -> dict[str, list[str]]:
    """Per table, our reduced-precision paths slower than our fastest fp32 path there: not worth using on this CPU
    (the markdown says so next to them)."""
    out = {}
    for table in ("headline_1x128", "throughput_32x128"):
        ours = [r for r in results[table] if not results["paths"][r["path"]]["baseline"]]
        fp32 = [r["median_ms"] for r in ours if results["paths"][r["path"]]["precision"] == "fp32"]
        if fp32:
            out[table] = [r["path"] for r in ours
                          if results["paths"][r["path"]]["precision"] != "fp32" and r["median_ms"] > min(fp32)]
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# squeezebert bench ({results['date']})", "",
             f"CPU class: **{results.get('cpu_class', '?')}**. Machine: {results['machine']}.",
             f"Model: {results.get('model') or results['model_preset']}"
             + (" (random weights)" if not results.get("model") else "") + ". Every path in its own process.",
             "CPU features: " + ", ".join(f"{k} {v}" for k, v in results.get("cpu_features", {}).items()) + ".",
             f"Rounds: {results['rounds']} at 1x128 (interleaved), fewer at larger shapes; wall {results.get('wall_s', '?')} s.",
             "", "GEMM probe (same run, GFLOP/s or GOP/s): " + ", ".join(
                 f"{k} {v:.0f}" for k, v in results["gemm_probe_gflops"].items() if not k.startswith("peak")), ""]
    for title, key in (("Batch 1 x 128 tokens", "headline_1x128"), ("Batch 32 x 128 tokens", "throughput_32x128")):
        if not results[key]:
            continue
        lines += [f"## {title}", "", "| path | params | GFLOPs/seq | median ms | p90 ms | seq/s | GFLOP/s | % of peak |",
                  "|---|---|---|---|---|---|---|---|"]
        slower = set(results.get("slower_than_fp32", {}).get(key, []))
        for r in results[key]:
            info = results["paths"][r["path"]]
            pct = f"{r['pct_of_peak']:.0f}%" if r["pct_of_peak"] is not None else "-"
            name = r["path"] + (" (slower than our fp32: not recommended here)" if r["path"] in slower else "")
            lines.append(f"| {name} | {info['params'] / 1e6:.1f}M | {info['gflops_at_128']:.2f} | "
                         f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['sequences_per_s']:.1f} | "
                         f"{r['gflops_per_s']:.0f} | {pct} |")
        lines.append("")
    lines += [f"## Goals (issue 15; same run, CPU class {results.get('cpu_class', '?')})", "",
              "| goal | target | best path | ratio | met |", "|---|---|---|---|---|"]
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
        with atomic_path(out / fname) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:  # python -m squeezebert.bench --worker SPEC THREADS
    worker_main(sys.argv[2], int(sys.argv[3]))
