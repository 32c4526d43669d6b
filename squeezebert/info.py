"""What ``squeezebert info`` prints: config, parameter counts and GFLOPs of a checkpoint or preset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import GROUP_FIELDS, PRESETS, SqueezeBertConfig, count_flops, preset

# The paper's Table 2 (Iandola et al., 2020), at 128 tokens per sequence.
PAPER = {"squeezebert-uncased": (51.1e6, 7.42), "bert-base-uncased": (109e6, 22.5)}


def parameter_counts(config: SqueezeBertConfig) -> dict[str, int]:
    """Counted from the config (no model is built): the bare encoder with pooler, as the paper counts it."""
    h, i = config.hidden_size, config.intermediate_size
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * config.embedding_size
    embeddings += 2 * h  # LayerNorm
    per_layer = (
        h * h // config.q_groups + h * h // config.k_groups + h * h // config.v_groups + 3 * h  # Q, K, V
        + h * h // config.post_attention_groups + h + 2 * h  # attention output + LayerNorm
        + h * i // config.intermediate_groups + i  # FFN in
        + i * h // config.output_groups + h + 2 * h  # FFN out + LayerNorm
    )
    encoder = config.num_hidden_layers * per_layer + h * h + h  # + pooler
    return {"total": embeddings + encoder, "without_embeddings": encoder, "embeddings": embeddings}


def load_config(name_or_path: str) -> SqueezeBertConfig:
    if name_or_path in PRESETS:
        return preset(name_or_path)
    path = Path(name_or_path)
    return SqueezeBertConfig.from_json_file(path / "config.json" if path.is_dir() else path)


def describe(name_or_path: str, seq_len: int = 128) -> dict[str, Any]:
    config = load_config(name_or_path)
    params = parameter_counts(config)
    row: dict[str, Any] = {
        "model": name_or_path,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "groups": "/".join(str(getattr(config, f)) for f in GROUP_FIELDS),
        "params": params["total"],
        "params_without_embeddings": params["without_embeddings"],
        "gflops": count_flops(config, seq_len) / 1e9,
        "seq_len": seq_len,
        "config": config.to_dict(),
    }
    if name_or_path in PAPER and seq_len == 128:
        row["paper_params"], row["paper_gflops"] = PAPER[name_or_path]
    return row


def format_table(rows: list[dict[str, Any]], seq_len: int) -> str:
    head = (f"| model | layers | hidden | groups q/k/v/post/inter/out | params | params w/o emb | "
            f"GFLOPs @{seq_len} | paper params | paper GFLOPs |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        paper_p = f"{r['paper_params'] / 1e6:.1f}M" if "paper_params" in r else "-"
        paper_f = f"{r['paper_gflops']:.2f}" if "paper_gflops" in r else "-"
        lines.append(
            f"| {r['model']} | {r['layers']} | {r['hidden']} | {r['groups']} | {r['params'] / 1e6:.2f}M | "
            f"{r['params_without_embeddings'] / 1e6:.2f}M | {r['gflops']:.2f} | {paper_p} | {paper_f} |"
        )
    return "\n".join(lines)
