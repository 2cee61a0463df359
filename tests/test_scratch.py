"The scratch preset (every weight trained, early stopping) and copy by construction for short-list values the reports repeat verbatim."
import json
from pathlib import Path
import pytest
from transformers import TrainerCallback

from claim_t5.config import make_config, quick_config
from claim_t5.data import field_evidence, infer_fields, write_jsonl
from claim_t5.facts import decode_generated, model_inputs, mask_pair

FAMILIES = ["satellite", "tecra", "portege", "kirabook"]  # a short list the reports repeat verbatim
NAMES = [f"{a} {n}" for a in ("hera", "zeus", "ares", "nyx") for n in range(10, 30)]

def laptops(n:int, families=FAMILIES, start:int=0) -> tuple:
    "Inputs with a name (open set), a family (short list, repeated verbatim) and a size (reworded); their reports."
    words = {"small": "compact", "large": "roomy"}
    inputs, outputs = [], []
    for i in range(start, start + n):
        name, fam, size = f"{NAMES[i % len(NAMES)].split()[0]} {i}", families[i % len(families)], ("small", "large")[i // 3 % 2]
        inputs.append(f"name={name}; family={fam}; size={size}")
        outputs.append(f"the {name} is a {words[size]} laptop in the {fam} family .")
    return inputs, outputs

def test_short_list_repeated_verbatim_is_a_copy_field():
    inputs, outputs = laptops(200)
    ev = {r["name"]: r for r in field_evidence(inputs, outputs, progress=False)}
    assert (ev["family"]["values"], ev["family"]["kind"]) == (4, "copy")            # 4 values, yet copied
    assert "short list (4 values)" in ev["family"]["why"] and "verbatim in 100%" in ev["family"]["why"]
    assert ev["size"]["kind"] == "category" and "reworded" in ev["size"]["why"]     # stated in other words: a category
    assert ev["name"]["kind"] == "copy" and "open set" in ev["name"]["why"]

def test_unseen_short_list_value_comes_back_verbatim_by_construction(tiny_run):
    # what the model sees and writes for family is a placeholder; the value is put back from the input, so a family
    # never seen in training ("dynabook") is written exactly, without the model having to spell it
    fields = infer_fields(*laptops(200), progress=False)
    cfg = make_config("tiny", fields=fields)
    inp = "name=hera 99; family=dynabook; size=small"
    (seen,) = model_inputs([inp], cfg)
    assert "dynabook" not in seen and "hera 99" not in seen
    _, target = mask_pair(*[x[0] for x in laptops(1)], fields)
    assert "satellite" not in target and "<extra_id_" in target
    from claim_t5.fine_tuned import load_fine_tuned
    tok = load_fine_tuned(tiny_run.model_dir, device="cpu").tokenizer  # any tokenizer with T5's sentinels
    ids = tok(["the <extra_id_0> is a compact laptop in the <extra_id_1> family ."])["input_ids"]
    assert decode_generated(tok, ids, [inp], cfg) == ["the hera 99 is a compact laptop in the dynabook family ."]

@pytest.mark.slow
def test_scratch_model_writes_an_unseen_short_list_value_verbatim(tmp_path):
    # a model trained (every weight, as the scratch preset) on 4 families writes a 5th, never seen, exactly
    from claim_t5.inference import ClaimReportGenerator
    from claim_t5.train import train
    tr, va, te = laptops(160), laptops(16, start=160), laptops(8, start=176)
    for split, (i, o) in (("train", tr), ("val", va), ("test", te)):
        write_jsonl([dict(input=a, output=b) for a, b in zip(i, o)], tmp_path/"data"/f"clean_{split}.jsonl")
    cfg = quick_config(tmp_path/"mt", data_dir=str(tmp_path/"data"), fields="auto", finetune="full", learning_rate=3e-3,
                       max_train_samples=None, num_epochs=12, warmup_steps=5, batch_size=16, max_eval_samples=16,
                       tiny_vocab_size=300, save_total_limit=1)
    res = train(cfg, verbose=False)
    assert {f["name"]: f["kind"] for f in res.config.fields}["family"] == "copy"
    gen = ClaimReportGenerator(res.model_dir, device="cpu", engine="transformers")
    report = str(gen("name=ares 77; family=dynabook; size=large"))
    assert "dynabook family" in report and "ares 77" in report, report

class ScriptedMetric(TrainerCallback):
    "Replaces each evaluation's ROUGE-L by the next scripted value (the Trainer then picks the best, and stops, on it)."
    def __init__(self, values): self.values, self.i = list(values), 0
    def on_evaluate(self, args, state, control, metrics=None, **kw):
        metrics["eval_rougeL"] = self.values[min(self.i, len(self.values) - 1)]; self.i += 1

def test_early_stopping_stops_and_keeps_the_best_checkpoint(tmp_path):
    from safetensors.torch import load_file
    from claim_t5.train import train
    cfg = quick_config(tmp_path/"mt", finetune="full", num_epochs=6, early_stopping_patience=2)
    res = train(cfg, callbacks=[ScriptedMetric([0.5, 0.6, 0.4, 0.3, 0.7, 0.8])], verbose=False)
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]                     # two worse evaluations: stopped at 4 of 6
    steps = [h["step"] for h in res.history]
    assert Path(res.best_checkpoint).name == f"checkpoint-{steps[1]}"            # epoch 2, the best, not the last
    saved, best = load_file(res.model_dir/"model.safetensors"), load_file(Path(res.best_checkpoint)/"model.safetensors")
    last = load_file(Path(res.best_checkpoint).parent/f"checkpoint-{steps[-1]}"/"model.safetensors")
    assert all((saved[k] == best[k]).all() for k in best)                         # the saved model is the best checkpoint
    assert not all((saved[k] == last[k]).all() for k in last)
    assert not (res.model_dir/"adapter_config.json").exists()                     # every weight trained: a plain model

def test_scratch_preset_is_a_full_cpu_recipe_with_early_stopping():
    cfg = make_config("scratch")
    assert (cfg.model_name, cfg.finetune, cfg.is_tiny) == ("tiny", "full", True)
    assert cfg.early_stopping_patience and cfg.num_epochs > 3 and cfg.load_best_model_at_end
    assert cfg.metric_for_best_model == "rougeL" and cfg.max_eval_samples
    assert "NOT flan-t5-base" in cfg.model_label and "scratch" in cfg.model_label
    assert make_config("tiny").finetune == "lora" and make_config("tiny").early_stopping_patience is None  # tests and CI: unchanged

@pytest.fixture(scope="module")
def full_model_dir(tmp_path_factory) -> Path:
    "A seconds-long `finetune: full` run on the bundled data: a plain model folder (read-only)."
    from claim_t5.train import train
    return Path(train(quick_config(tmp_path_factory.mktemp("full")/"mt", finetune="full", learning_rate=3e-3), verbose=False).model_dir)

def test_plain_model_runs_everywhere_downstream(full_model_dir, tmp_path):
    # evaluation and its model card, the CTranslate2 engine (same reports as transformers) and the service, unchanged
    import shutil
    from claim_t5.evaluation import evaluate_and_report
    from claim_t5.inference import ClaimReportGenerator
    from claim_t5.serve import create_app
    from fastapi.testclient import TestClient
    d = Path(shutil.copytree(full_model_dir, tmp_path/"m"))
    assert (d/"model.safetensors").exists() and not (d/"adapter_config.json").exists()
    evaluate_and_report(d, None, "test", max_samples=8)
    card = (d/"README.md").read_text()
    assert "library_name: transformers" in card and "every weight trained" in card and "LoRA r=" not in card
    meta = "shipment_id=SHP-12345; damage_type=dent; severity=high; vendor=NewCo Freight"
    hf = ClaimReportGenerator(d, device="cpu", engine="transformers")
    ct2 = ClaimReportGenerator(d, device="cpu", engine="ct2", ct2_dir=tmp_path/"ct2")
    assert str(ct2(meta)) == str(hf(meta))                                       # a seconds-long model: the same words, not good ones
    with TestClient(create_app(hf), base_url="http://127.0.0.1") as c:
        r = c.post("/generate_claim", json=dict(shipment_id="SHP-12345", damage_type="dent", severity="high", vendor="NewCo Freight"))
    assert r.status_code == 200, r.text
    assert r.json()["report"] == str(hf(meta))

def test_time_budget_stops_after_the_epoch_that_used_it(tmp_path, capsys):
    from claim_t5.train import train
    cfg = quick_config(tmp_path/"mt", finetune="full", num_epochs=4, max_train_minutes=0.001)  # 60 ms: one epoch uses it up
    res = train(cfg, verbose=True)
    assert [h["epoch"] for h in res.history] == [1]                               # evaluated and saved, then stopped
    assert (res.model_dir/"model.safetensors").exists() and Path(res.best_checkpoint).exists()
    assert "another epoch would pass max_train_minutes=0.001" in capsys.readouterr().out

def test_a_short_list_of_common_words_stays_a_category():
    # ecorating=a is repeated verbatim in every report that has it, but "a" is also the article of nearly every other
    # report: copying it by construction would put the rating where articles go. It stays a category.
    inputs, outputs = [], []
    for i in range(200):
        r = ("a", "b+", "c")[i % 3]
        inputs.append(f"name=tv {i}; ecorating={r}")
        outputs.append(f"the tv {i} is a set with an eco rating of {r} .")
    ev = {r["name"]: r for r in field_evidence(inputs, outputs, progress=False)}
    assert ev["ecorating"]["verbatim"] == 1.0 and ev["ecorating"]["kind"] == "category"
    assert "common word" in ev["ecorating"]["why"] and ev["ecorating"]["elsewhere"] > 0.05
    outputs = [o.replace(" is a set", " is one set") for o in outputs]                 # no article: the values are distinctive
    assert {r["name"]: r["kind"] for r in field_evidence(inputs, outputs, progress=False)}["ecorating"] == "copy"
