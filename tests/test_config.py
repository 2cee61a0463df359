"""Tests of claim_t5.config: the reference defaults, presets, YAML files, overrides and their errors."""
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml

from claim_t5.config import (ClaimT5Config, ConfigError, PRESETS_DIR, config_keys, list_presets, make_config,
                             save_config, step_plan)

# The reference recipe, key by key (the values the documentation and the original training script use).
REFERENCE = dict(
    model_name="google/flan-t5-base",
    lora_r=8, lora_alpha=32, lora_dropout=0.1, lora_target_modules=["q", "v"], lora_task_type="SEQ_2_SEQ_LM",
    learning_rate=2e-5, batch_size=4, num_epochs=3, warmup_steps=100, weight_decay=0.01,
    optimizer="adamw_torch", lr_scheduler="linear", gradient_accumulation_steps=1,
    mixed_precision="fp16", gradient_checkpointing=False,
    max_input_length=128, max_target_length=256,
    eval_strategy="epoch", save_strategy="epoch", save_total_limit=2,
    metric_for_best_model="rougeL", greater_is_better=True, load_best_model_at_end=True,
    logging_steps=100, seed=42, output_dir="model_training",
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- defaults

@pytest.mark.parametrize("key,value", sorted(REFERENCE.items()))
def test_default_equals_reference_recipe(key, value):
    got = getattr(ClaimT5Config(), key)
    assert got == value
    assert type(got) is type(value), f"{key}: {type(got).__name__} instead of {type(value).__name__}"


def test_default_output_paths():
    cfg = ClaimT5Config()
    assert cfg.paths == {"checkpoints": Path("model_training/checkpoints"),
                         "fine_tuned_model": Path("model_training/fine_tuned_model"),
                         "logs": Path("model_training/logs")}
    assert ClaimT5Config(output_dir="elsewhere").paths["logs"] == Path("elsewhere/logs")
    assert not cfg.is_tiny


def test_default_lists_are_not_shared():
    a, b = ClaimT5Config(), ClaimT5Config()
    a.lora_target_modules.append("k")
    assert b.lora_target_modules == ["q", "v"]


# ---------------------------------------------------------------- presets

def test_presets_listed():
    assert {"flan-t5-base", "tiny"} <= set(list_presets())


def test_flan_t5_base_preset_equals_defaults():
    assert make_config("flan-t5-base") == ClaimT5Config()


def test_flan_t5_base_preset_file_keys_equal_defaults():
    "Every key written in the preset file is a config key and equals its default (the file documents the recipe)."
    raw = yaml.safe_load((PRESETS_DIR/"flan-t5-base.yaml").read_text(encoding="utf-8"))
    default = asdict(ClaimT5Config())
    assert set(raw) <= set(config_keys())
    for k, v in raw.items():
        assert ClaimT5Config(**{k: v}) == ClaimT5Config(), k   # equal after coercion (e.g. 2.0e-05)
        assert default[k] == v, k


def test_tiny_preset_loads():
    cfg = make_config("tiny")
    assert cfg.model_name == "tiny"
    assert cfg.is_tiny
    assert cfg != ClaimT5Config()


def test_unknown_preset_is_config_error():
    with pytest.raises(ConfigError, match="no-such-preset"):
        make_config("no-such-preset")


# ---------------------------------------------------------------- YAML files and overrides

def test_yaml_round_trip_defaults(tmp_path):
    cfg = ClaimT5Config()
    p = save_config(cfg, tmp_path/"sub"/"run.yaml")
    assert p.is_file()
    assert make_config(p) == cfg


def test_yaml_round_trip_non_default(tmp_path):
    cfg = make_config("tiny", num_epochs=1, lora_r=4, data_dir=str(tmp_path/"data"), max_train_samples=10,
                      lora_target_modules=["q", "k"], gradient_checkpointing=True, mixed_precision="bf16")
    loaded = make_config(save_config(cfg, tmp_path/"run.yaml"))
    assert loaded == cfg
    assert loaded.max_train_samples == 10 and loaded.data_dir == str(tmp_path/"data")


def test_saved_yaml_holds_every_key(tmp_path):
    p = save_config(ClaimT5Config(), tmp_path/"run.yaml")
    assert list(yaml.safe_load(p.read_text(encoding="utf-8"))) == config_keys()


def test_overrides_apply_on_top_of_preset():
    cfg = make_config("tiny", num_epochs=7)
    assert cfg.num_epochs == 7 and cfg.model_name == "tiny"


def test_none_overrides_are_ignored():
    assert make_config(lora_r=None, seed=None) == ClaimT5Config()


@pytest.mark.parametrize("key,text,expected", [
    ("num_epochs", "3", 3),
    ("lora_r", "16", 16),
    ("learning_rate", "2e-5", 2e-5),
    ("lora_dropout", "0.05", 0.05),
    ("gradient_checkpointing", "true", True),
    ("gradient_checkpointing", "false", False),   # a non-empty string, yet False: not bool("false")
    ("gradient_checkpointing", "0", False),
    ("lora_target_modules", "q, k, v", ["q", "k", "v"]),
    ("max_train_samples", "None", None),
    ("max_train_samples", "100", 100),
])
def test_string_overrides_are_coerced(key, text, expected):
    got = getattr(make_config(**{key: text}), key)
    assert got == expected
    assert type(got) is type(expected)


def test_yaml_values_are_coerced(tmp_path):
    # PyYAML reads 2e-5 (no dot) as a string and 3.0 as a float: both must end up with the declared type.
    cfg = make_config(_write(tmp_path/"c.yaml", "learning_rate: 2e-5\nnum_epochs: 3.0\nseed: '7'\n"))
    assert cfg.learning_rate == 2e-5 and type(cfg.learning_rate) is float
    assert cfg.num_epochs == 3 and type(cfg.num_epochs) is int
    assert cfg.seed == 7


def test_empty_yaml_gives_defaults(tmp_path):
    assert make_config(_write(tmp_path/"empty.yaml", "# nothing set\n")) == ClaimT5Config()


# ---------------------------------------------------------------- errors

def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    p = _write(tmp_path/"c.yaml", "lora_r: 8\nlora_rank: 16\n")
    with pytest.raises(ConfigError) as e:
        make_config(p)
    assert "lora_rank" in str(e.value)
    assert str(p) in str(e.value)


def test_unknown_key_as_override_names_key():
    with pytest.raises(ConfigError) as e:
        make_config(lora_rank=16)
    assert "'lora_rank'" in str(e.value)
    assert "lora_r" in str(e.value).split("did you mean")[-1]   # a suggestion is offered


def test_unknown_key_in_constructor_is_rejected():
    with pytest.raises(TypeError, match="bogus"):
        ClaimT5Config(bogus=1)


@pytest.mark.parametrize("key,value", [
    ("lora_r", "eight"),
    ("lora_r", True),
    ("num_epochs", 2.5),
    ("learning_rate", "fast"),
    ("gradient_checkpointing", "maybe"),
    ("lora_target_modules", [1, 2]),
    ("model_name", 5),
    ("batch_size", [4]),
])
def test_wrong_type_override_names_key(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make_config(**{key: value})


@pytest.mark.parametrize("line,key", [
    ("lora_r: eight", "lora_r"),
    ("lora_r: null", "lora_r"),
    ("gradient_checkpointing: sometimes", "gradient_checkpointing"),
    ("lora_target_modules: {q: 1}", "lora_target_modules"),
])
def test_wrong_type_in_yaml_names_key(tmp_path, line, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make_config(_write(tmp_path/"c.yaml", line + "\n"))


@pytest.mark.parametrize("key,value", [
    ("lora_r", 0),
    ("lora_dropout", 1.0),
    ("lora_dropout", -0.1),
    ("batch_size", 0),
    ("learning_rate", 0),
    ("learning_rate", 1.0),
    ("learning_rate", 5),
    ("save_total_limit", 0),
    ("mixed_precision", "fp8"),
    ("lora_target_modules", []),
    ("num_epochs", -1),
    ("warmup_steps", -1),
    ("metric_for_best_model", "bleu"),
    ("max_train_samples", 0),
])
def test_impossible_value_names_key(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        ClaimT5Config(**{key: value})
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make_config(**{key: value})


def test_impossible_value_in_yaml_names_key(tmp_path):
    with pytest.raises(ConfigError, match="'lora_dropout'"):
        make_config(_write(tmp_path/"c.yaml", "lora_dropout: 1.0\n"))


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("text,line", [
    ("lora_r: 8\n  oops: [\n", 2),
    ("lora_r: 8\nlora_alpha: 32\nlora_target_modules: [q, v\nseed: 1\n", 4),
    ("lora_r: 8\n\tlora_alpha: 3\n", 2),
])
def test_malformed_yaml_names_file_and_line(tmp_path, text, line):
    p = _write(tmp_path/"bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        make_config(p)
    msg = str(e.value)
    assert str(p) in msg
    assert f"line {line}" in msg


def test_yaml_list_names_file(tmp_path):
    p = _write(tmp_path/"list.yaml", "- lora_r\n- 8\n")
    with pytest.raises(ConfigError) as e:
        make_config(p)
    assert str(p) in str(e.value)
    assert "mapping" in str(e.value)


def test_yaml_scalar_names_file(tmp_path):
    p = _write(tmp_path/"scalar.yaml", "just text\n")
    with pytest.raises(ConfigError, match="scalar.yaml"):
        make_config(p)


def test_non_utf8_yaml_names_file(tmp_path):
    p = tmp_path/"latin1.yaml"
    p.write_bytes("model_name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        make_config(p)
    assert str(p) in str(e.value)
    assert "UTF-8" in str(e.value)


def test_missing_yaml_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        make_config(tmp_path/"nope.yaml")


# ---------------------------------------------------------------- step arithmetic

def test_step_plan_defaults():
    plan = step_plan(ClaimT5Config())
    assert plan["train_examples"] == 5289
    assert plan["steps_per_epoch"] == 1323
    assert plan["total_steps"] == 3969
    assert plan["effective_batch"] == 4
    assert plan["warmup_steps"] == 100
    assert plan["warmup_share"] == pytest.approx(100/3969, abs=1e-4)


def test_step_plan_accumulation_devices_and_sample_cap():
    cfg = ClaimT5Config(batch_size=8, gradient_accumulation_steps=2, num_epochs=2)
    plan = step_plan(cfg, n_train=100, n_devices=2)   # 100 / 16 -> 7 batches -> 4 optimizer steps
    assert (plan["effective_batch"], plan["steps_per_epoch"], plan["total_steps"]) == (32, 4, 8)
    assert plan["warmup_share"] == 1.0                 # warmup is capped at the whole run
    capped = step_plan(ClaimT5Config(max_train_samples=10))
    assert (capped["train_examples"], capped["steps_per_epoch"], capped["total_steps"]) == (10, 3, 9)


def test_best_metric_direction_must_match_the_metric():
    # greater_is_better is no longer a key (issue 30): it follows from the metric, so it cannot keep the worst
    assert make_config(metric_for_best_model="loss").greater_is_better is False
    with pytest.warns(UserWarning, match="'greater_is_better' in overrides was removed"):
        assert make_config(metric_for_best_model="loss", greater_is_better=False).greater_is_better is False
    with pytest.raises(ConfigError, match="greater_is_better"):
        make_config(greater_is_better=False)                 # rougeL, lower is better: would keep the worst


def test_an_old_yaml_with_removed_keys_still_loads_and_says_so(tmp_path):
    old = _write(tmp_path/"old.yaml", "model_name: tiny\nlora_task_type: SEQ_2_SEQ_LM\ngreater_is_better: true\n")
    with pytest.warns(UserWarning) as seen:
        cfg = make_config(old)
    assert cfg == ClaimT5Config(model_name="tiny")
    assert sorted(str(w.message).split("'")[1] for w in seen) == ["greater_is_better", "lora_task_type"]
    assert all("was removed" in str(w.message) and "old.yaml" in str(w.message) for w in seen)
    assert "greater_is_better" not in save_config(cfg, tmp_path/"new.yaml").read_text()
    with pytest.raises(ConfigError, match="old.yaml: config key 'lora_task_type'"):
        make_config(_write(tmp_path/"old.yaml", "lora_task_type: CAUSAL_LM\n"))


@pytest.mark.parametrize("eval_strategy,save_strategy", [("epoch", "steps"), ("steps", "epoch"), ("no", "no"),
                                                         ("no", "epoch"), ("epoch", "no")])
def test_load_best_model_needs_matching_eval_and_save(eval_strategy, save_strategy):
    "load_best_model_at_end reloads a saved checkpoint chosen by evaluation: both must happen, at the same points."
    with pytest.raises(ConfigError, match="'load_best_model_at_end'.*eval_strategy == save_strategy"):
        make_config(eval_strategy=eval_strategy, save_strategy=save_strategy)
    cfg = make_config(eval_strategy=eval_strategy, save_strategy=save_strategy, load_best_model_at_end=False)
    assert (cfg.eval_strategy, cfg.save_strategy) == (eval_strategy, save_strategy)


@pytest.mark.parametrize("strategy", ["epoch", "steps"])
def test_load_best_model_with_matching_strategies_is_accepted(strategy):
    cfg = make_config(eval_strategy=strategy, save_strategy=strategy)
    assert cfg.load_best_model_at_end is True
