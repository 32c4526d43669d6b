"""Recipe configs: one typed dataclass per recipe gives the TOML keys, the key=value overrides and the flags."""

from __future__ import annotations

import pytest

from squeezebert.cli import build_parser
from squeezebert.recipe_config import DistillConfig, FinetuneConfig
from squeezebert.train.loop import TrainingArgs
from squeezebert.typed_config import RecipeConfigError, from_args, load


def parse(cls, *argv: str):
    command = "finetune" if cls is FinetuneConfig else "distill"
    return from_args(cls, build_parser().parse_args([command, *argv]))


def test_file_then_flags_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny"\ntask = "sst2"\noutput_dir = "out/x"\nlr = 1e-3\nepochs = 2\n'
                    '[task_options]\nid_column = "idx"\n')
    config = parse(FinetuneConfig, "--config", str(path), "--lr", "2e-3", "epochs=4", "task_options.labels=[0,1]",
                   "--text-column", "review")
    assert (config.model, config.output_dir, config.lr, config.epochs) == ("tiny", "out/x", 2e-3, 4.0)
    assert config.load_options() == {"text_column": "review", "id_column": "idx", "labels": [0, 1]}
    assert config.batch_size == 32 and config.resume  # untouched: the dataclass defaults


def test_flags_keep_their_names_and_defaults():
    config = parse(FinetuneConfig, "--model", "tiny", "--task", "sst2", "--out", "o", "--no-resume", "--no-progress",
                   "--skip-bad-rows", "--precision", "bf16")
    assert (config.resume, config.progress, config.skip_bad_rows, config.precision) == (False, False, True, "bf16")
    assert config.lr == 5e-5 and config.max_length == 128
    distill = parse(DistillConfig, "--teacher", "t", "--task", "general", "--out", "o", "--hidden-weight", "0")
    assert distill.lr == 1e-4 and distill.general and distill.weight_overrides() == {"hidden": 0.0}
    assert distill.student == "squeeze" and distill.groups == "paper" and distill.calibrate == 256


def test_one_default_for_the_loop_and_the_recipes():
    assert FinetuneConfig(model="m", task="t", output_dir="o").epochs == TrainingArgs(output_dir="o").epochs
    assert FinetuneConfig(model="m", task="t", output_dir="o").lr == TrainingArgs(output_dir="o").lr


def test_unknown_keys_and_bad_values_are_one_line_errors_naming_the_key(tmp_path):
    with pytest.raises(RecipeConfigError, match="override lrate: unknown key; known: .*lr"):
        parse(FinetuneConfig, "--model", "tiny", "--task", "sst2", "--out", "o", "lrate=1")
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny"\nepochz = 3\n')
    with pytest.raises(RecipeConfigError, match=r"run\.toml: unknown key\(s\) epochz"):
        load(FinetuneConfig, path)
    with pytest.raises(RecipeConfigError, match="override batch_size must be an integer"):
        parse(FinetuneConfig, "--model", "tiny", "--task", "sst2", "--out", "o", "batch_size=big")
    with pytest.raises(RecipeConfigError, match=r"missing setting\(s\) output_dir \(--out\), model \(--model\)"):
        parse(FinetuneConfig, "--task", "sst2")
    with pytest.raises(ValueError, match="precision fp16 needs a CUDA device"):
        parse(FinetuneConfig, "--model", "tiny", "--task", "sst2", "--out", "o", "precision=fp16")
