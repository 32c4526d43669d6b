"""Export for deployment: ONNX (fp32 and int8, through onnxruntime) and ``torch.export`` programs for mobile.

ONNX: the encoder is traced in the tokens-first block layout of ``infer.graph`` (activations ``(B, S, C)``, each
grouped projection one ``MatMul`` per column block with the weight as the constant right-hand operand, each group's
Q/K/V + attention one onnxruntime ``Attention`` node over the heads it holds, one Split / Concat per sublayer).
Exported as grouped ``Conv`` (what transformers' SqueezeBERT gives), onnxruntime's dynamic quantisation turns the
projections into ``ConvInteger``, which is slower than fp32; as ``MatMul`` / ``Attention`` with constant weights
they become ``DynamicQuantizeMatMul`` / ``QAttention`` (int8 GEMMs, VNNI where the CPU has it). The graph uses
the ``com.microsoft`` contrib ops, so it runs in onnxruntime (CPU), not in other ONNX runtimes. It is traced with
batch and sequence sizes > 1 and both axes are declared dynamic; ``check_onnx`` then runs it through onnxruntime
at shapes other than the traced one and compares with the PyTorch model.

Mobile: ``export_program`` writes a ``torch.export`` ExportedProgram (``.pt2``) with dynamic batch and sequence
dimensions, the input ExecuTorch's ``to_edge_transform_and_lower`` takes; ``export_pte`` lowers it to an ExecuTorch
``.pte`` for XNNPACK and checks it in ExecuTorch's runtime. That needs the ``executorch`` package, which is not a
dependency (see docs/benchmarks.md for what was and was not verified).
"""

from __future__ import annotations

import copy
import io
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .infer.fast import swap_attention, swap_projections
from .infer.graph import TokensFirstModel
from .model import HEADS, GroupedProjection, SqueezeBertPreTrainedModel

log = logging.getLogger(__name__)

FORMATS = ("onnx", "pt2", "pte")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Output order in the exported graph; a head exports the fields it produces, in this order.
OUTPUT_FIELDS = ("logits", "start_logits", "end_logits", "sop_logits", "last_hidden_state", "pooler_output")
TRACE_SHAPE = (2, 16)  # sizes > 1 so neither axis is specialised to a constant
CHECK_SHAPES = ((1, 7), (3, 33), (4, 128))  # all differ from TRACE_SHAPE: proves the axes are dynamic
# Max abs difference from the PyTorch fp32 model: onnxruntime reorders float sums (fused LayerNorm, GELU, GEMM
# blocking), nothing more. int8 is bounded by the cosine similarity of each whole output instead (see check_onnx):
# a sanity bound that catches a broken graph (per-tensor weight scales gave 0.84 on the fine-tuned MiniLM), not an
# accuracy claim. Random token ids are far from real text, and activations are quantised per tensor, so a real
# fine-tuned checkpoint scores 0.96-0.99 here; task accuracy is measured by benchmarks/int8_accuracy.py.
FP32_TOLERANCE = 1e-4
INT8_MIN_COSINE = 0.95


class MatMulProjection(nn.Module):
    """A grouped projection as one MatMul per group on token-major activations, weights constant on the right;
    channels-first (Cin, T) in, (Cout, T) out, so it swaps in for GroupedProjection."""

    def __init__(self, proj: GroupedProjection):
        super().__init__()
        g, co, ci = proj.groups, proj.out_channels, proj.in_channels
        self.groups, self.in_per_group = g, ci // g
        w = proj.weight.detach().view(g, co // g, ci // g)
        # one 2-D initializer per group, (Cin/G, Cout/G): what quantize_dynamic turns into DynamicQuantizeMatMul
        self.weights = nn.ParameterList(nn.Parameter(w[i].t().contiguous(), requires_grad=False) for i in range(g))
        self.bias = nn.Parameter(proj.bias.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:  # (Cin, T) -> (Cout, T)
        xt = x.t()  # (T, Cin); onnxruntime's transpose optimiser cancels most of these against their neighbours
        parts = [xt[:, i * self.in_per_group:(i + 1) * self.in_per_group] @ w for i, w in enumerate(self.weights)]
        y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (T, Cout)
        return (y + self.bias).t()


class ExportableModel(nn.Module):
    """The model with a forward pass fit for tracing: positional inputs, no data-dependent branches (the model's
    ``prepare_inputs(traceable=True)``), a tuple of outputs. Weights are a private copy with Q/K/V stacked and
    grouped projections as MatMuls; the arithmetic is the model's own (``forward_prepared``: encoder and head)."""

    def __init__(self, model: SqueezeBertPreTrainedModel):
        super().__init__()
        self.refuse_multiple_choice(model)
        self.model = swap_projections(swap_attention(copy.deepcopy(model).eval().requires_grad_(False)),
                                      MatMulProjection)
        self.output_names: list[str] = []

    @staticmethod
    def refuse_multiple_choice(model: SqueezeBertPreTrainedModel) -> None:
        if model.multiple_choice:
            raise ValueError("export of multiple-choice models is not supported (their inputs are 3-D); "
                             "export the encoder (head 'base') instead")

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        inputs = self.model.prepare_inputs(input_ids, attention_mask, token_type_ids, traceable=True)
        out = self.model.forward_prepared(inputs)
        self.output_names = [f for f in OUTPUT_FIELDS if getattr(out, f) is not None]
        return tuple(getattr(out, f) for f in self.output_names)


def example_inputs(config: Any, batch: int, seq: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Random ids, a mask with padding in every row after the first, and token types 0 then 1."""
    g = torch.Generator().manual_seed(seed * 1000 + batch * 100 + seq)
    ids = torch.randint(1, config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        mask[row, max(1, seq - row * seq // (batch + 1)):] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2:] = min(1, config.type_vocab_size - 1)
    return ids, mask, types


def _dynamic_axes(names: list[str], outputs: tuple[Tensor, ...]) -> dict[str, dict[int, str]]:
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    for name, out in zip(names, outputs):
        per_token = out.dim() == 3 or name in ("start_logits", "end_logits")
        axes[name] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
    return axes


def _write_atomically(data: bytes, out: Path) -> None:
    from .fileio import write_bytes  # the temporary is removed on failure (a full disk), not left beside `out`

    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, data)


@dataclass
class ExportReport:
    path: str
    format: str
    int8: bool
    outputs: list[str]
    size_mb: float
    parity: list[dict[str, Any]] = field(default_factory=list)  # one row per checked shape and output

    def summary(self) -> str:
        lines = [f"wrote {self.path} ({self.format}{' int8' if self.int8 else ''}, {self.size_mb:.1f} MB, "
                 f"outputs: {', '.join(self.outputs)})"]
        for r in self.parity:
            lines.append(f"  parity {r['shape'][0]}x{r['shape'][1]} {r['output']}: max abs diff "
                         f"{r['max_abs_diff']:.2e}, cosine {r['cosine']:.6f}"
                         + (f" (all shapes {r['pooled_cosine']:.6f})" if "pooled_cosine" in r else "")
                         + f" ({'ok' if r['ok'] else 'FAIL'})")
        return "\n".join(lines)


def export_onnx(model: SqueezeBertPreTrainedModel, out: str | Path, int8: bool = False, opset: int = 17,
                check: bool = True) -> ExportReport:
    """Write ``model`` as ONNX (dynamic batch and sequence axes); ``int8`` applies onnxruntime's dynamic
    quantisation to the projections. With ``check`` the file is run through onnxruntime at several shapes and
    compared with the PyTorch model; a failed check raises ValueError and leaves no file behind."""
    import onnx

    out = Path(out)
    ExportableModel.refuse_multiple_choice(model)
    wrapper = TokensFirstModel(model, OUTPUT_FIELDS)
    sample = example_inputs(model.config, *TRACE_SHAPE)
    with torch.no_grad():
        outputs = wrapper(*sample)
    names = list(wrapper.output_names)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        # dynamo=False: the TorchScript exporter needs nothing beyond onnx; the dynamo one needs onnxscript.
        torch.onnx.export(wrapper, sample, buf, input_names=list(INPUT_NAMES), output_names=names,
                          dynamic_axes=_dynamic_axes(names, outputs), opset_version=opset, dynamo=False,
                          custom_opsets={"com.microsoft": 1})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if int8:
        data = quantize_onnx(data)
    with tempfile.TemporaryDirectory() as d:  # check before anything is written where the user asked
        candidate = Path(d) / "model.onnx"
        candidate.write_bytes(data)
        parity = check_onnx(model, candidate, int8) if check else []
    report = ExportReport(str(out), "onnx", int8, names, len(data) / 1e6, parity)
    if any(not r["ok"] for r in parity):
        raise ValueError(f"ONNX parity check failed; nothing written to {out}\n{report.summary()}")
    _write_atomically(data, out)
    return report


def quantize_onnx(data: bytes) -> bytes:
    """onnxruntime dynamic quantisation of every MatMul with a constant weight and of every fused Attention's QKV
    weights (``QAttention``): int8 weights (symmetric, one scale per output channel: per-tensor scales lost too much
    on a real fine-tuned model), activations quantised per call (per tensor). The attention products (two
    activations) stay fp32. ``reduce_range``: 7-bit weights, because on
    x86 without VNNI the u8 x s8 kernels (AVX2 ``vpmaddubsw``) saturate their 16-bit pair sums when per-channel
    weights use the full int8 range (measured: output cosine 0.988 without, 0.9997 with, tiny model)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(data)
        logging.disable(logging.WARNING)  # the quantiser logs every tensor and a pre-processing hint to the root logger
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                             op_types_to_quantize=["MatMul", "Attention"], extra_options={"MatMulConstBOnly": True})
        finally:
            logging.disable(logging.NOTSET)
        return dst.read_bytes()


def onnx_feed(ids: Tensor, mask: Tensor, types: Tensor | None = None) -> dict[str, Any]:
    """The exported graph's inputs as numpy arrays (token types all 0 when not given)."""
    types = torch.zeros_like(ids) if types is None else types
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations; ``threads`` intra-op threads (None: all cores)."""
    from .onnx_backend import create_session  # the torch-free runtime's, so both run the graph the same way

    return create_session(path, threads)


def check_onnx(model: SqueezeBertPreTrainedModel, path: str | Path, int8: bool = False,
               shapes: tuple[tuple[int, int], ...] = CHECK_SHAPES) -> list[dict[str, Any]]:
    """Run the ONNX file and the PyTorch model on padded batches of several shapes; one row per shape and output.
    fp32 passes at max abs diff <= FP32_TOLERANCE on real (unpadded) positions; int8 when the cosine similarity of
    each output to fp32, over all the shapes together, is >= INT8_MIN_COSINE."""
    session = onnx_session(path)
    names = [o.name for o in session.get_outputs()]

    def run(ids: Tensor, mask: Tensor, types: Tensor) -> list[Tensor]:
        return [torch.from_numpy(x) for x in session.run(names, onnx_feed(ids, mask, types))]

    return parity_rows(model, names, run, "ONNX", int8, shapes)


def parity_rows(model: SqueezeBertPreTrainedModel, names: list[str], run: Any, what: str, int8: bool = False,
                shapes: tuple[tuple[int, int], ...] = CHECK_SHAPES) -> list[dict[str, Any]]:
    """Compare an exported program (``run(ids, mask, types)`` -> its outputs, in ``names`` order) with the model
    on padded batches of several shapes; one row per shape and output. A shape mismatch means an axis was baked
    in at export: an error, not a row."""
    rows, pooled = [], {name: ([], []) for name in names}
    for batch, seq in shapes:
        seq = min(seq, model.config.max_position_embeddings)
        ids, mask, types = example_inputs(model.config, batch, seq, seed=1)
        with torch.no_grad():
            got, ref = run(ids, mask, types), model.eval()(ids, mask, types)
        for name, a in zip(names, got):
            b = getattr(ref, name).float()
            if a.shape != b.shape:
                raise ValueError(f"{what} output {name} has shape {tuple(a.shape)} at input {batch}x{seq}, "
                                 f"PyTorch {tuple(b.shape)}: an axis was not exported as dynamic")
            if a.dim() == 3 or name in ("start_logits", "end_logits"):  # padded positions are not compared
                a, b = a[mask.bool()], b[mask.bool()]
            diff, cos = _compare(a, b)
            pooled[name][0].append(a.flatten())
            pooled[name][1].append(b.flatten())
            rows.append({"shape": [batch, seq], "output": name, "max_abs_diff": diff, "cosine": cos,
                         "ok": diff <= FP32_TOLERANCE})
    if int8:
        # One verdict per output, on its values at every checked shape together: the cosine of one sequence's two
        # class logits alone means nothing when they are near zero (seen: 0.41 at 1x7 on a student whose 3x33 and
        # 4x128 outputs scored 0.97 and 0.99), while a broken graph is off at every shape.
        for name, (a, b) in pooled.items():
            cos = _compare(torch.cat(a), torch.cat(b))[1]
            for r in rows:
                if r["output"] == name:
                    r.update(pooled_cosine=cos, ok=cos >= INT8_MIN_COSINE)
    return rows


def _compare(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Max abs difference and the cosine similarity of the two outputs taken whole (flattened): a per-row cosine
    means nothing for outputs with one value per token (QA start/end logits)."""
    return (a - b).abs().max().item(), F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


def export_program(model: SqueezeBertPreTrainedModel, out: str | Path, check: bool = True) -> ExportReport:
    """Write a ``torch.export`` ExportedProgram (``.pt2``) with dynamic batch and sequence dimensions; with
    ``check``, reload it and compare with the model at several shapes (fp32 tolerance)."""
    from torch.export import Dim

    out = Path(out)
    wrapper = ExportableModel(model)
    sample = example_inputs(model.config, *TRACE_SHAPE)
    batch = Dim("batch", min=1, max=1024)
    seq = Dim("sequence", min=1, max=model.config.max_position_embeddings)
    shapes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    with torch.no_grad():
        wrapper(*sample)
        program = torch.export.export(wrapper, sample, dynamic_shapes=shapes)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    data = buf.getvalue()
    rows = []
    if check:
        loaded = torch.export.load(io.BytesIO(data)).module()
        rows = parity_rows(model, list(wrapper.output_names), loaded, "torch.export")
    report = ExportReport(str(out), "pt2", False, list(wrapper.output_names), len(data) / 1e6, rows)
    if any(not r["ok"] for r in rows):
        raise ValueError(f"torch.export parity check failed; nothing written to {out}\n{report.summary()}")
    _write_atomically(data, out)
    return report


def export_pte(model: SqueezeBertPreTrainedModel, out: str | Path, check: bool = True) -> ExportReport:
    """ExecuTorch program (``.pte``) lowered to XNNPACK, with dynamic batch (up to 64) and sequence dimensions;
    with ``check``, run by ExecuTorch's runtime at several shapes and compared with the model. Needs the
    ``executorch`` package (not a dependency: it pulls torchao, coremltools, pandas and more); lowering is slow
    (minutes for the tiny config on 2 busy cores)."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime
    except ImportError as e:
        raise ValueError(f"--format pte needs the executorch package ({e}); pip install executorch, or export "
                         "--format pt2 and lower it where executorch is installed") from None
    from torch.export import Dim

    out = Path(out)
    wrapper = ExportableModel(model)
    sample = example_inputs(model.config, *TRACE_SHAPE)
    batch, seq = Dim("batch", min=1, max=64), Dim("sequence", min=2, max=model.config.max_position_embeddings)
    with torch.no_grad():
        wrapper(*sample)
        program = torch.export.export(wrapper, sample, dynamic_shapes={n: {0: batch, 1: seq} for n in INPUT_NAMES})
    data = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    rows = []
    if check:
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "m.pte").write_bytes(data)
            method = Runtime.get().load_program(str(Path(d) / "m.pte")).load_method("forward")
            rows = parity_rows(model, list(wrapper.output_names), lambda *inputs: method.execute(list(inputs)),
                               "ExecuTorch")
    report = ExportReport(str(out), "pte", False, list(wrapper.output_names), len(data) / 1e6, rows)
    if any(not r["ok"] for r in rows):
        raise ValueError(f"ExecuTorch parity check failed; nothing written to {out}\n{report.summary()}")
    _write_atomically(data, out)
    return report


def export_onnx_folder(model: SqueezeBertPreTrainedModel, out: str | Path, int8: bool = False, check: bool = True,
                       source: str | Path | None = None, command: str | None = None) -> ExportReport:
    """A folder to deploy: ``model.onnx`` (:func:`export_onnx`, checked against PyTorch), ``config.json`` (head,
    labels), the tokenizer files of ``source`` (the checkpoint directory) and a model card. It runs without torch:
    ``pipeline(task, model=out)`` picks ``squeezebert.onnx_backend`` for it."""
    from .checkpoint import copy_tokenizer_files
    from .model_card import write_model_card

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the ONNX folder export writes a directory (--out x.onnx: the .onnx alone)")
    report = export_onnx(model, out / "model.onnx", int8=int8, check=check)
    config = model.config.replace(architectures=[model.architecture])
    config.save(out)
    if not (source is not None and Path(source).is_dir() and copy_tokenizer_files(source, out)):
        log.warning("%s: no tokenizer files to copy (the model is not from a checkpoint directory): pass "
                    "tokenizer= to pipeline() when running it", out)
    worst = max((r["max_abs_diff"] for r in report.parity), default=None)
    parity = {"max abs diff vs PyTorch": worst} if worst is not None else None
    write_model_card(out, config, made_by=f"exported to ONNX{' with int8 dynamic quantisation' if int8 else ''}",
                     base_model=str(source) if source else None, metrics=parity, command=command,
                     files="model.onnx (onnxruntime, runs without torch: squeezebert.onnx_backend), config.json, "
                           "tokenizer files")
    report.path = str(out)
    return report


def load_for_export(name_or_path: str, head: str | None = None) -> SqueezeBertPreTrainedModel:
    """A checkpoint directory (head from its config unless given), or a preset name with random weights (for
    speed work: a warning says so)."""
    from .checkpoint import load_model
    from .config import PRESETS, preset

    if name_or_path in PRESETS and not Path(name_or_path).exists():
        if head is not None and head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        log.warning("%s is a preset: exporting RANDOM weights (fine for speed measurements, useless for "
                    "predictions); pass a checkpoint directory for a real model", name_or_path)
        torch.manual_seed(0)
        return HEADS[head or "base"](preset(name_or_path)).eval()
    return load_model(name_or_path, head=head)


def export(model: SqueezeBertPreTrainedModel, out: str | Path, format: str = "onnx", int8: bool = False,
           check: bool = True) -> ExportReport:
    """Dispatch on ``format`` (one of FORMATS)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        return export_onnx(model, out, int8=int8, check=check)
    if int8:
        raise ValueError("--int8 applies to ONNX only (torch.export and ExecuTorch programs are written in fp32)")
    return export_program(model, out, check=check) if format == "pt2" else export_pte(model, out, check=check)
