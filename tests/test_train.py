"Training: every promised file, resuming at the right step, the non-finite loss guard, the hub error, the CLI."
import json, subprocess, sys
from pathlib import Path
import pytest
from conftest import run_cli
from claim_t5.config import QUICK_RUN, quick_config
from claim_t5.config import make_config
from claim_t5.config import parse_set, ConfigError
from claim_t5.train import train, NonFiniteLossError, latest_checkpoint
from claim_t5.model import load_base_model, HubUnavailableError
from claim_t5.history import epoch_history
from claim_t5.tiny import tiny_cache_key

def test_training_writes_every_file(tiny_run):
    out = Path(tiny_run.config.output_dir)
    cks = sorted((out/"checkpoints").glob("checkpoint-*"))
    assert len(cks) == 2  # one per epoch, save_total_limit=2
    for ck in cks:
        assert (ck/"adapter_model.safetensors").exists() and (ck/"trainer_state.json").exists()
    m = out/"fine_tuned_model"
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "generation_config.json", "claim_t5_config.yaml", "history.json", "history.csv", "training_curves.png"):
        assert (m/f).exists(), f
    assert (m/"base_model"/"model.safetensors").exists()  # the tiny base travels with its adapter
    assert not list(m.rglob("*.bin")) and not list(m.rglob("pytorch_model*"))  # safetensors only
    assert list((out/"logs").rglob("events.out.tfevents.*"))  # TensorBoard
    gen = json.loads((m/"generation_config.json").read_text())
    assert gen["max_new_tokens"] == tiny_run.config.gen_max_new_tokens and gen["num_beams"] == tiny_run.config.gen_num_beams
    hist = json.loads((m/"history.json").read_text())
    assert [h["epoch"] for h in hist] == [1.0, 2.0]
    for h in hist:
        for k in ("train_loss", "val_loss", "rouge1", "rouge2", "rougeL", "learning_rate"):
            assert isinstance(h[k], float), (k, h)
    assert (m/"history.csv").read_text().splitlines()[0].startswith("epoch,step,train_loss,val_loss,rouge1")
    cfg = json.loads((m/"adapter_config.json").read_text())
    assert cfg["r"] == tiny_run.config.lora_r and set(cfg["target_modules"]) == set(tiny_run.config.lora_target_modules)

def test_best_checkpoint_is_by_rougeL(tiny_run):
    state = json.loads((latest_checkpoint(Path(tiny_run.config.output_dir)/"checkpoints")/"trainer_state.json").read_text())
    best = max(epoch_history(state["log_history"]), key=lambda h: h["rougeL"])
    assert state["best_metric"] == pytest.approx(best["rougeL"])
    assert state["best_global_step"] == best["step"]

def stop_after_first_epoch():
    "A TrainerCallback that ends training after epoch 1 (its checkpoint saved), as a crash between epochs would."
    from transformers import TrainerCallback
    class Stop(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kw): control.should_training_stop = True
    return Stop()

@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    "The quick recipe stopped after epoch 1, then resumed from its checkpoint: (first TrainResult, resumed TrainResult)."
    cfg = quick_config(tmp_path_factory.mktemp("resumed")/"mt")
    first = train(cfg, callbacks=[stop_after_first_epoch()], verbose=False)
    return first, train(cfg, resume_from_checkpoint=True, verbose=False)

def test_resume_continues_at_the_right_step(resumed):
    first, resumed = resumed
    assert [h["epoch"] for h in first.history] == [1.0]
    cks = sorted(Path(resumed.config.paths["checkpoints"]).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    steps_per_epoch = int(cks[0].name.split("-")[1])
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0]
    assert [h["step"] for h in resumed.history] == [steps_per_epoch, 2 * steps_per_epoch]
    assert resumed.history[0] == first.history[0]  # the first epoch's row comes from the checkpoint, unchanged

def _step_logs(run) -> dict:
    "step -> (training loss, learning rate) of every logged step, from the run's last checkpoint."
    state = json.loads((latest_checkpoint(Path(run.config.paths["checkpoints"]))/"trainer_state.json").read_text())
    return {e["step"]: (e["loss"], e["learning_rate"]) for e in state["log_history"] if "loss" in e}

def test_resume_matches_an_uninterrupted_run(resumed, tiny_run):
    """Stopped after epoch 1 and resumed, the run is the uninterrupted one: the same per-step loss and learning rate in
    epoch 2 and the same final adapter. A resume that drops the optimizer state (optimizer.pt), the scheduler or the
    RNG state (dropout masks) gives other numbers (quick recipe: 2 steps per epoch, so epoch 2 is steps 3 and 4)."""
    import torch
    from safetensors.torch import load_file
    _, resumed = resumed
    assert resumed.config.num_epochs == tiny_run.config.num_epochs and resumed.config.seed == tiny_run.config.seed
    want, got = _step_logs(tiny_run), _step_logs(resumed)
    half = max(want) // 2
    epoch2 = sorted(s for s in want if s > half)
    assert epoch2 and sorted(s for s in got if s > half) == epoch2
    for s in epoch2:
        assert got[s][1] == pytest.approx(want[s][1], rel=1e-6, abs=1e-12), f"learning rate at step {s}"
        assert got[s][0] == pytest.approx(want[s][0], rel=1e-5), f"training loss at step {s}"
    last = lambda run: load_file(str(latest_checkpoint(Path(run.config.paths["checkpoints"]))/"adapter_model.safetensors"))
    a, b = last(tiny_run), last(resumed)
    assert a.keys() == b.keys()
    moved = {k: (a[k] - b[k]).abs().max().item() for k in a if not torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6)}
    assert not moved, f"adapter tensors differ from the uninterrupted run's: {moved}"

def test_fresh_run_refuses_existing_checkpoints(tiny_run):
    with pytest.raises(FileExistsError, match="resume"):
        train(tiny_run.config, verbose=False)

def test_non_finite_loss_stops_the_run(tmp_path):
    import torch
    from transformers import TrainerCallback
    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 2:
                with torch.no_grad():
                    next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))
    cfg = quick_config(tmp_path/"mt")
    # poisoned after step 2: epoch 1's validation loss (or step 3's training loss) is the first non-finite value
    with pytest.raises(NonFiniteLossError, match=r"step [23]\b.*(bf16|'no')"):
        train(cfg, callbacks=[Poison()], verbose=False)
    assert not (tmp_path/"mt"/"fine_tuned_model").exists()  # no model saved from a NaN run

def test_unreachable_hub_model_gives_the_promised_error():
    with pytest.raises(HubUnavailableError, match="tiny"):
        load_base_model(make_config("flan-t5-base"))

def test_tiny_base_is_cached_and_reused(tiny_run):
    from claim_t5.data import load_claim_data
    d = load_claim_data()["train"]
    texts = list(d["input"]) + list(d["output"])
    _, _, p1 = load_base_model(tiny_run.config, texts)
    stamp = [(f.name, f.stat().st_mtime_ns, f.stat().st_ino) for f in sorted(Path(p1).iterdir())]
    _, _, p2 = load_base_model(tiny_run.config, texts)
    assert p1 == p2 and Path(p1).name == tiny_cache_key(tiny_run.config, texts)
    assert [(f.name, f.stat().st_mtime_ns, f.stat().st_ino) for f in sorted(Path(p2).iterdir())] == stamp  # not rebuilt
    assert tiny_cache_key(tiny_run.config, texts[:-1]) != Path(p1).name  # other texts, another model

def test_tiny_model_has_a_separate_lm_head_and_says_so(tiny_run):
    import torch
    from claim_t5.model import load_seq2seq
    base = Path(tiny_run.model_dir)/"base_model"
    assert json.loads((base/"config.json").read_text())["tie_word_embeddings"] is False  # the saved config tells the truth
    m = load_seq2seq(base)
    assert m.config.feed_forward_proj == "gated-gelu"
    assert m.lm_head.weight.data_ptr() != m.shared.weight.data_ptr()
    assert not torch.equal(m.lm_head.weight, m.shared.weight)

@pytest.mark.slow
def test_same_seed_same_run_whether_the_tiny_base_is_cached_or_not(tmp_path):
    "Building the tiny base must not consume random numbers that LoRA's initialisation and training then miss."
    import torch
    from safetensors.torch import load_file
    cache = tmp_path/"cache"
    cold = train(quick_config(tmp_path/"cold", num_epochs=1, tiny_cache_dir=str(cache)), verbose=False)  # builds the base
    assert len(list(cache.iterdir())) == 1
    warm = train(quick_config(tmp_path/"warm", num_epochs=1, tiny_cache_dir=str(cache)), verbose=False)  # finds it cached
    assert cold.history == warm.history
    a, b = (load_file(str(r.model_dir/"adapter_model.safetensors")) for r in (cold, warm))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def test_parse_set():
    assert parse_set("lora_r=16 learning_rate=1e-3 lora_target_modules=q,k,v") == {
        "lora_r": "16", "learning_rate": "1e-3", "lora_target_modules": "q,k,v"}
    with pytest.raises(ConfigError, match="key=value"): parse_set("lora_r")

def _cli(*args):
    return run_cli("claim_t5_train", *args)

def test_cli_trains_with_overrides(tmp_path):
    r = _cli("--config", "tiny", "--output_dir", str(tmp_path/"mt"), "--num_epochs", "1", "--max_train_samples", "32",
             "--max_eval_samples", "4", "--set", "lora_r=4 logging_steps=1 learning_rate=0.001 num_epochs=5")
    assert r.returncode == 0, r.stderr[-2000:]  # a key that is also a flag (learning_rate) may be given with --set
    assert json.loads((tmp_path/"mt"/"fine_tuned_model"/"adapter_config.json").read_text())["r"] == 4
    assert len(json.loads((tmp_path/"mt"/"fine_tuned_model"/"history.json").read_text())) == 1  # the flag wins over --set
    import yaml
    assert yaml.safe_load((tmp_path/"mt"/"fine_tuned_model"/"claim_t5_config.yaml").read_text())["learning_rate"] == 0.001

@pytest.mark.parametrize("args, needle", [
    (["--set", "lora_rank=4"], "lora_rank"),
    (["--num_epochs", "0"], "num_epochs"),
    (["--set", "lora_dropout=1.5"], "lora_dropout"),
    (["--config", "no-such-preset"], "preset"),
])
def test_cli_rejects_bad_config(tmp_path, args, needle):
    r = _cli("--config", "tiny", "--output_dir", str(tmp_path/"mt"), *args)
    assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path/"mt").exists()

@pytest.mark.slow
def test_epoch_train_loss_does_not_depend_on_gradient_accumulation(tmp_path):
    "The Trainer divides each micro-batch loss by the accumulation steps; the history must show the real mean loss."
    quick = {**QUICK_RUN, "num_epochs": 1, "max_train_samples": 64, "batch_size": 16}
    one = train(make_config("tiny", output_dir=str(tmp_path/"a"), **quick), verbose=False)
    two = train(make_config("tiny", output_dir=str(tmp_path/"b"), **{**quick, "batch_size": 8, "gradient_accumulation_steps": 2}), verbose=False)
    assert one.history[0]["train_loss"] == pytest.approx(two.history[0]["train_loss"], rel=0.05)
