"""The training recipe learns, and the steps before the loss are right: a quick run moves its weights and lowers the
validation loss; tokenisation truncates at the configured limits; the collator pads labels with -100 so that padding
does not change the loss; the metric function decodes and scores what the Trainer hands it."""
from pathlib import Path
import numpy as np
import pytest
from claim_t5.config import quick_config


from claim_t5.rouge import ROUGE_KEYS
from claim_t5.data import tokenize_splits

# ---------------------------------------------------------------- a quick run learns

def test_quick_run_moves_lora_b_and_lm_head(tiny_run):
    "LoRA B starts at zero and the LM head at the base model's: after training every one of them has moved."
    import torch
    from safetensors.torch import load_file
    adapter = load_file(str(Path(tiny_run.model_dir)/"adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert len(lora_b) == len([k for k in adapter if "lora_A" in k]) > 0
    still_zero = [k for k, v in lora_b.items() if not v.abs().max() > 0]
    assert not still_zero, f"LoRA B matrices never updated: {still_zero[:3]} ({len(still_zero)} of {len(lora_b)})"
    head = [v for k, v in adapter.items() if k.endswith("lm_head.weight")]
    assert len(head) == 1, "the LM head is trained and saved with the adapter (modules_to_save)"
    base = load_file(str(Path(tiny_run.model_dir)/"base_model"/"model.safetensors"))["lm_head.weight"]
    assert head[0].shape == base.shape
    assert (head[0] - base).abs().max() > 1e-4, "the LM head is still the base model's"
    assert torch.isfinite(head[0]).all()

def test_quick_run_validation_loss_falls(tiny_run):
    "The direction only (not a size): validation and epoch training loss are lower after epoch 2 than after epoch 1."
    h = tiny_run.history
    assert [r["epoch"] for r in h] == [1.0, 2.0]
    assert h[1]["val_loss"] < h[0]["val_loss"], h
    assert h[1]["train_loss"] < h[0]["train_loss"], h

# ---------------------------------------------------------------- tokenisation

@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))

ROWS = [  # two inputs and reports of different lengths
    {"input": "shipment_id=SHP-10001; damage_type=dent; severity=low",
     "output": "Shipment SHP-10001 was found with a dent in the casing at an unrecorded stage. Severity is low."},
    {"input": "shipment_id=SHP-20002; image_id=img_0042.png; damage_type=water_damage; severity=high; "
              "vendor=Acme Logistics; shipment_stage=transit",
     "output": "Inspection of shipment SHP-20002 from Acme Logistics found water damage to the cartons in transit. "
               "The damage soaked the contents and is rated high severity."},
]

def _dsd(rows):
    from datasets import Dataset, DatasetDict
    return DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:1])})

def test_tokenize_splits_truncates_at_the_limits(tok):
    full_in = [tok(r["input"])["input_ids"] for r in ROWS]
    full_out = [tok(r["output"])["input_ids"] for r in ROWS]
    # limits: the short input fits exactly (boundary), the long one is cut; the same for the reports
    lim_in, lim_out = len(full_in[0]), len(full_out[0]) + 1
    assert len(full_in[1]) > lim_in and len(full_out[1]) > lim_out
    cfg = quick_config("unused", max_input_length=lim_in, max_target_length=lim_out)
    out = tokenize_splits(_dsd(ROWS), tok, cfg)
    assert set(out) == {"train", "validation"}
    assert set(out["train"].column_names) == {"input_ids", "attention_mask", "labels"}
    tr = out["train"]
    assert tr[0]["input_ids"] == full_in[0] and tr[0]["labels"] == full_out[0]  # at or under the limit: untouched
    assert tr[1]["input_ids"] == full_in[1][:lim_in - 1] + [tok.eos_token_id]   # cut to exactly the limit, ends in </s>
    assert tr[1]["labels"] == full_out[1][:lim_out - 1] + [tok.eos_token_id]
    assert [len(m) for m in tr["attention_mask"]] == [len(x) for x in tr["input_ids"]]
    assert all(all(m) for m in tr["attention_mask"])  # unpadded: the collator pads per batch
    assert out["validation"][0] == tr[0]

# ---------------------------------------------------------------- the collator: labels padded with -100

@pytest.fixture(scope="module")
def trainer(tiny_model_dir, tmp_path_factory):
    "The Trainer `build_trainer` makes for the quick recipe on ROWS (nothing trained): its collator is the one in use."
    from transformers import AutoTokenizer
    from claim_t5.model import load_seq2seq
    from claim_t5.model import add_lora
    from claim_t5.train import build_trainer
    cfg = quick_config(tmp_path_factory.mktemp("collator")/"mt")
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = add_lora(load_seq2seq(tiny_model_dir/"base_model"), cfg)  # as training loads it (the file's own tie setting)
    return build_trainer(cfg, model, tok, _dsd(ROWS))

def test_collator_pads_labels_with_minus_100(trainer):
    feats = [trainer.train_dataset[i] for i in range(2)]
    n_in, n_lab = [len(f["input_ids"]) for f in feats], [len(f["labels"]) for f in feats]
    assert n_in[0] < n_in[1] and n_lab[0] < n_lab[1]
    b = trainer.data_collator(feats)
    assert b["input_ids"].shape[1] == max(n_in) and b["labels"].shape[1] == max(n_lab)  # dynamic: to the longest
    assert b["labels"][0, n_lab[0]:].tolist() == [-100] * (n_lab[1] - n_lab[0])
    assert b["labels"][0, :n_lab[0]].tolist() == feats[0]["labels"]
    pad = trainer.processing_class.pad_token_id
    assert b["input_ids"][0, n_in[0]:].tolist() == [pad] * (n_in[1] - n_in[0])
    assert b["attention_mask"][0].tolist() == [1] * n_in[0] + [0] * (n_in[1] - n_in[0])

def test_dynamic_padding_loss_equals_max_length_loss(trainer):
    "Padding to the batch's longest (the collator) or to 128/256 tokens with -100 labels gives the same loss."
    import torch
    feats = [trainer.train_dataset[i] for i in range(2)]
    model = trainer.model.eval()
    pad, L_in, L_out = trainer.processing_class.pad_token_id, 128, 256
    def padded(key, length, value):
        return torch.tensor([f[key] + [value] * (length - len(f[key])) for f in feats])
    fixed = dict(input_ids=padded("input_ids", L_in, pad), attention_mask=padded("attention_mask", L_in, 0),
                 labels=padded("labels", L_out, -100))
    dyn = trainer.data_collator(feats)
    with torch.no_grad():
        loss_fixed = model(**fixed).loss.item()
        loss_dyn = model(**{k: v for k, v in dyn.items()}).loss.item()
        one_by_one = [model(**trainer.data_collator([f])).loss.item() for f in feats]
    assert loss_dyn == pytest.approx(loss_fixed, abs=1e-5)
    # the mean is over real label tokens only: the token-weighted mean of the two single-example losses
    n = [len(f["labels"]) for f in feats]
    assert loss_dyn == pytest.approx((one_by_one[0] * n[0] + one_by_one[1] * n[1]) / sum(n), abs=1e-5)

# ---------------------------------------------------------------- the metric function

def test_make_compute_metrics_decodes_and_scores(tok):
    "Predictions and labels as the Trainer passes them (-100 where padded across batches); ROUGE by hand."
    from claim_t5.train import make_compute_metrics
    refs = ["Shipment was found with a dent in transit.", "Severity is low."]
    preds = ["Shipment was found with a crack in transit.", "Severity is low."]
    for t in refs + preds: assert tok.decode(tok(t)["input_ids"], skip_special_tokens=True) == t  # round-trips
    def batch(texts, start):  # rows as generate() returns them (decoder start token first), then -100 filler
        ids = [([0] if start else []) + tok(t)["input_ids"] for t in texts]
        w = max(map(len, ids)) + 3
        return np.array([x + [-100] * (w - len(x)) for x in ids])
    p, l = batch(preds, True), batch(refs, False)
    m = make_compute_metrics(tok)((p, l))
    # pair 1: 8 words each, 7 shared, longest common subsequence 7; bigrams 7 each, 5 shared. pair 2: identical.
    assert m["rouge1"] == pytest.approx((7/8 + 1) / 2)
    assert m["rouge2"] == pytest.approx((5/7 + 1) / 2)
    assert m["rougeL"] == pytest.approx((7/8 + 1) / 2)
    assert m["rougeLsum"] == pytest.approx((7/8 + 1) / 2)
    assert m["gen_len"] == pytest.approx(np.mean([len(tok(t)["input_ids"]) for t in preds]))  # </s> counted, start not
    assert make_compute_metrics(tok)(((p, None), l)) == m  # a tuple of predictions (e.g. with extra outputs)
    assert set(m) == set(ROUGE_KEYS) | {"gen_len"}
