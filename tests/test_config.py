from __future__ import annotations

import json

import pytest

from squeezebert.config import ConfigError, SqueezeBertConfig, count_flops, preset
from squeezebert.info import parameter_counts
from squeezebert.model import SqueezeBertModel

HF_FIELDS = {
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "initializer_range", "layer_norm_eps", "pad_token_id", "embedding_size", "q_groups", "k_groups", "v_groups",
    "post_attention_groups", "intermediate_groups", "output_groups",
}


def test_fields_are_exactly_transformers_squeezebert_config():
    transformers = pytest.importorskip("transformers")
    ours = set(SqueezeBertConfig().to_dict())
    hf = set(transformers.SqueezeBertConfig().to_dict())
    assert HF_FIELDS <= ours and HF_FIELDS <= hf
    assert ours - HF_FIELDS == {"id2label", "label2id", "problem_type", "model_type"}


def test_json_round_trip_and_transformers_reads_it(tmp_path):
    config = preset("tiny", num_labels=3, problem_type="single_label_classification",
                    architectures=["SqueezeBertForSequenceClassification"])
    config.save(tmp_path)
    again = SqueezeBertConfig.from_json_file(tmp_path / "config.json")
    assert again == config
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "squeezebert" and data["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(hf).__name__ == "SqueezeBertConfig" and hf.num_labels == 3 and hf.q_groups == 4
    hf.save_pretrained(tmp_path / "hf")  # and back: HF bookkeeping keys are ignored knowingly
    assert SqueezeBertConfig.from_json_file(tmp_path / "hf" / "config.json") == config


def test_misspelt_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "squeezebert", "hiden_size": 64}))
    with pytest.raises(ConfigError, match="'hiden_size'") as e:
        SqueezeBertConfig.from_json_file(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_malformed_config_file(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="config.json"):
        SqueezeBertConfig.from_json_file(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(hidden_size=30, embedding_size=30), "divisible by num_attention_heads"),
        (dict(q_groups=5), "q_groups"),
        (dict(intermediate_size=66), "intermediate_groups"),
        (dict(hidden_act="gleu"), "hidden_act"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(embedding_size=16), "embedding_size"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (dict(pad_token_id=5000), "pad_token_id"),
    ],
)
def test_validation_names_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        preset("tiny", **changes)


def test_bert_config_becomes_the_dense_squeezebert():
    config = SqueezeBertConfig.from_dict(
        {"model_type": "bert", "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
         "architectures": ["BertForSequenceClassification"], "position_embedding_type": "absolute"})
    assert config.is_dense and config.embedding_size == 384
    assert config.architectures == ["SqueezeBertForSequenceClassification"]
    with pytest.raises(ConfigError, match="relative_key"):
        SqueezeBertConfig.from_dict({"model_type": "bert", "position_embedding_type": "relative_key"})


def test_presets_match_the_paper_and_the_model():
    paper = {"squeezebert-uncased": (51.1e6, 7.42), "bert-base-uncased": (109e6, 22.5)}
    for name, (params, gflops) in paper.items():
        config = preset(name)
        counted = parameter_counts(config)["total"]
        assert abs(counted - params) / params < 0.01, (name, counted)
        assert abs(count_flops(config, 128) / 1e9 - gflops) / gflops < 0.01
    for name in ("tiny", "tiny-dense", "squeezebert-uncased"):  # the formula is the model, not a guess
        config = preset(name)
        model = SqueezeBertModel(config)
        assert model.num_parameters() == parameter_counts(config)["total"]
        assert model.num_parameters(exclude_embeddings=True) == parameter_counts(config)["without_embeddings"]
    assert preset("bert-base-uncased").is_dense and not preset("squeezebert-uncased").is_dense
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("squeezebert-large")
