"""Tests of claim_t5.facts: placeholders round trips, the learned wordings, the per-report fact check and fact_accuracy."""
import os
import random

import pytest

from claim_t5.config import ClaimT5Config
from claim_t5.schema import format_metadata, parse_metadata
from claim_t5.synth import generate_dataset
from claim_t5.facts import FactChecker, decode_reports, fact_accuracy, mask_input, mask_pair, placeholders, restore
from claim_t5.schema import value_spans


@pytest.fixture(scope="module")
def bundled():
    return generate_dataset()


@pytest.fixture(scope="module")
def checker(bundled):
    "The checker learned from the bundled training split (read-only)."
    train, val = bundled["train"], bundled["validation"]
    return FactChecker.learn([r["input"] for r in train], [r["output"] for r in train],
                             val_inputs=[r["input"] for r in val], val_targets=[r["output"] for r in val])


INP = ("shipment_id=SHP-12345; image_id=img_0042.png; damage_type=scratch; severity=high; vendor=Acme Logistics; "
       "shipment_stage=transit")
GOOD = ("Shipment SHP-12345 from Acme Logistics was found with scratches on the surface in transit. Severity is high. "
        "Photo img_0042.png is attached. A total-loss settlement with replacement is recommended. "
        "Liability most likely rests with the carrier.")


def unseen_inputs(n=200, seed=7):
    """Inputs the bundled generator cannot produce: 7-digit ids, other id prefixes, vendors with `&`, accents and digits,
    and damage words outside its lists (each such damage value must be flagged as unseen)."""
    rng = random.Random(seed)
    vendors = ["Smith & Sons", "Café Nordström", "3M Logistics 24", "Ørsted & Co.", "Müller-Lüdenscheid GmbH",
               "Acme Logistics Europe", "O'Brien Freight"]
    damages = ["torn packaging", "mould", "bent frame", "dent", "scratch", "crack"]
    rows = []
    for i in range(n):
        meta = dict(shipment_id=rng.choice([f"SHP-{rng.randint(10**6, 10**7 - 1)}", f"ORD-{rng.randint(1, 999)}",
                                            f"PKG{rng.randint(10**5, 10**6)}X", f"{rng.randint(10**6, 10**7 - 1)}"]),
                    image_id=rng.choice([f"photo-{rng.randint(1, 99999)}.jpeg", f"IMG_{rng.randint(1, 9999)}.JPG", None]),
                    damage_type=rng.choice(damages), severity=rng.choice(["low", "medium", "high"]),
                    vendor=rng.choice(vendors + [None]), shipment_stage=rng.choice(["transit", "customs", None]))
        rows.append(format_metadata(meta))
    return rows


# ---------------------------------------------------------------- placeholders

def test_placeholders_follow_the_schema():
    own = [dict(name="order_no", required=True, kind="copy"), dict(name="reason", required=False, kind="category"),
           dict(name="customer", required=False, kind="copy")]
    assert placeholders(own) == {"order_no": "<extra_id_0>", "customer": "<extra_id_1>"}
    assert mask_input("order_no=ORD-77; reason=late; customer=Smith & Sons", own) == \
        "order_no=<extra_id_0>; reason=late; customer=<extra_id_1>"


def test_mask_restore_round_trip_on_text(bundled):
    for r in bundled["test"]:
        m_in, m_out = mask_pair(r["input"], r["output"])
        meta = parse_metadata(r["input"])
        assert "SHP-" not in m_in + m_out and "img_" not in m_in + m_out
        if meta.get("vendor"): assert meta["vendor"] not in m_out
        assert restore(m_out, meta) == r["output"]


def test_value_not_verbatim_stays():
    meta = parse_metadata(INP)
    assert mask_pair(INP, "Shipment shp-12345 from ACME Logistics.")[1] == "Shipment shp-12345 from ACME Logistics."


def test_vendor_containing_another_vendor_masks_the_longer():
    own = [dict(name="id", required=True, kind="copy"), dict(name="vendor", required=False, kind="copy"),
           dict(name="carrier", required=False, kind="copy")]
    _, out = mask_pair("id=ORD-77; vendor=Acme Logistics; carrier=Acme", "ORD-77: Acme Logistics via Acme.", own)
    assert out == "<extra_id_0>: <extra_id_1> via <extra_id_2>."


def test_restore_absent_field_is_marked():
    assert restore("Shipment <extra_id_0> from <extra_id_2>.", {"shipment_id": "ORD-77"}) == "Shipment ORD-77 from [vendor]."


def _tiny_tokenizer(texts):
    from claim_t5.tiny import train_tiny_tokenizer
    return train_tiny_tokenizer(texts, 500)


def _t5_tokenizer(texts, folder):
    import sentencepiece as spm
    from transformers import T5Tokenizer
    (folder/"corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(folder/"corpus.txt"), model_prefix=str(folder/"spiece"), vocab_size=400,
                                   hard_vocab_limit=False, character_coverage=1.0, model_type="unigram",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    (folder/"tok").mkdir(); os.replace(folder/"spiece.model", folder/"tok"/"spiece.model")
    return T5Tokenizer.from_pretrained(str(folder/"tok"), extra_ids=100)


@pytest.mark.parametrize("kind", ["tiny", "t5-sentencepiece"])
def test_placeholder_round_trip_through_tokenizer(kind, bundled, tmp_path):
    "mask -> tokenise as labels (padded, -100) -> decode keeping sentinels -> restore gives the reference back."
    pairs = bundled["train"][:300] + bundled["test"][:100]
    masked = [mask_pair(r["input"], r["output"]) for r in pairs]
    texts = [t for p in masked for t in p]
    tok = _tiny_tokenizer(texts) if kind == "tiny" else _t5_tokenizer(texts, tmp_path)
    for name, ph in placeholders().items():  # each placeholder is one token
        assert tok.convert_ids_to_tokens(tok(f"x {ph} y")["input_ids"]).count(ph) == 1, name
    labels = [tok(text_target=o)["input_ids"] + [-100] * 4 for _, o in masked]
    back = decode_reports(tok, labels, [parse_metadata(r["input"]) for r in pairs])
    assert [b for b, r in zip(back, pairs) if b != r["output"]] == []
    # what skip_special_tokens=True would have done: the ids are gone
    plain = tok.batch_decode([[t if t >= 0 else 0 for t in ids] for ids in labels[:5]], skip_special_tokens=True)
    assert not any("SHP-" in p for p in plain)


def test_unseen_shapes_survive_the_round_trip(tmp_path):
    "Values the tokenizer never saw (7-digit ids, accents, &) come back exactly: they never pass through it."
    rows = unseen_inputs(50)
    tok = _tiny_tokenizer([mask_input(r) for r in rows] + ["Shipment <extra_id_0> from <extra_id_2> was found."] * 5)
    outs = [f"Shipment {parse_metadata(r)['shipment_id']} was found." for r in rows]
    labels = [tok(text_target=mask_pair(r, o)[1])["input_ids"] for r, o in zip(rows, outs)]
    assert decode_reports(tok, labels, [parse_metadata(r) for r in rows]) == outs


# ---------------------------------------------------------------- the fact check

def test_good_report_passes(checker):
    v = checker.check(INP, GOOD)
    assert v["ok"] and v["problems"] == [] and v["invented"] == []
    assert set(v["fields"].values()) == {"ok"}


def test_references_pass(checker, bundled):
    fa = fact_accuracy([r["input"] for r in bundled["test"]], [r["output"] for r in bundled["test"]], checker)
    assert fa["all_facts_correct"] == 1.0 and fa["any_invented"] == 0.0


def test_swapped_id_fails(checker):
    v = checker.check(INP, GOOD.replace("SHP-12345", "SHP-54321"))
    assert not v["ok"] and v["fields"]["shipment_id"] == "missing"
    assert v["invented"] == ["shipment_id=SHP-54321"]


def test_missing_vendor_fails(checker):
    v = checker.check(INP, GOOD.replace(" from Acme Logistics", ""))
    assert not v["ok"] and v["fields"]["vendor"] == "missing" and v["invented"] == []
    assert v["problems"] == ["vendor: 'Acme Logistics' is not in the report"]


def test_invented_vendor_fails(checker):
    v = checker.check(INP, GOOD.replace("Acme Logistics", "Acme Logistics and Globex"))
    assert v["invented"] == ["vendor=Globex"] and v["fields"]["vendor"] == "ok" and not v["ok"]


def test_vendor_invented_when_input_has_none(checker):
    inp = "shipment_id=SHP-12345; damage_type=dent; severity=low"
    good = "Shipment SHP-12345 was found with a dent in the casing at an unrecorded stage. Severity is low."
    assert checker.check(inp, good)["ok"]
    assert checker.check(inp, good.replace("SHP-12345", "SHP-12345 from Gringotts Metals"))["invented"] == \
        ["vendor=Gringotts Metals"]
    # a vendor never seen in training is still caught by how the data introduces one
    assert "vendor (not in the input)" in checker.check(inp, good.replace("SHP-12345", "SHP-12345 from Zorg Ltd"))["invented"]
    # so are a photo and a stage the input does not have
    assert "image_id=img_0042.png" in checker.check(inp, good + " Photo img_0042.png is attached.")["invented"]
    assert "shipment_stage=transit (not in the input)" in checker.check(inp, good.replace("at an unrecorded stage", "in transit"))["invented"]
    assert checker.check(inp, "Shipment SHP-12345 from [vendor].")["invented"] == ["vendor (not in the input)"]


def test_wrong_severity_fails(checker):
    v = checker.check(INP, GOOD.replace("Severity is high", "Severity is low"))
    assert v["fields"]["severity"] == "wrong" and not v["ok"]
    assert v["problems"] == ["severity: the report says low, the input high"]


def test_category_wording_learned_from_the_data(checker):
    assert "scratch" in checker.categories["damage_type"]
    v = checker.check(INP, GOOD)
    assert [s["value"] for s in v["spans"] if s["field"] == "damage_type"] == ["scratches"]  # the words the verdict rests on
    assert checker.check(INP, GOOD.replace("scratches on the surface", "damage"))["fields"]["damage_type"] in ("missing", "wrong")


@pytest.mark.parametrize("value", ["banana", "critical"])
def test_unseen_category_flagged(checker, value):
    inp = INP.replace("severity=high", f"severity={value}")
    v = checker.check(inp, GOOD)
    assert v["fields"]["severity"] == "unseen" and v["unseen"] == [f"severity={value}"] and not v["ok"]
    assert checker.unseen(parse_metadata(inp)) == [f"severity={value}"]


def test_vendor_containing_another_vendor(checker):
    "The input's `Acme Logistics Europe` is not an invented `Acme Logistics`; `Acme Logistics` for the input `Acme` is invented."
    inp = INP.replace("Acme Logistics", "Acme Logistics Europe")
    assert checker.check(inp, GOOD.replace("Acme Logistics", "Acme Logistics Europe"))["ok"]
    own = FactChecker(checker.fields, checker.categories, {**checker.known, "vendor": ["Acme", "Acme Logistics"]},
                      checker.id_shapes, checker.template_ids, checker.model)
    assert own.check(INP.replace("Acme Logistics", "Acme"), GOOD)["invented"] == ["vendor=Acme Logistics"]
    assert own.check(INP, GOOD)["ok"]


def test_ids_of_other_shapes(checker):
    inp = INP.replace("SHP-12345", "ORD-77")
    assert checker.check(inp, GOOD.replace("SHP-12345", "ORD-77"))["ok"]
    v = checker.check(inp, GOOD.replace("SHP-12345", "ORD-78"))
    assert v["invented"] == ["shipment_id=ORD-78"] and v["fields"]["shipment_id"] == "missing"
    v = checker.check(inp, GOOD.replace("SHP-12345", "ORD-77 (was SHP-12345)"))
    assert v["invented"] == ["shipment_id=SHP-12345"]
    assert not checker.check(INP.replace("SHP-12345", "ORD-7"), GOOD.replace("SHP-12345", "ORD-77"))["ok"]


def test_value_spans_boundaries():
    assert value_spans("ORD-7", "ORD-77 and ORD-7.") == [(11, 16)]


def test_save_and_load(checker, tmp_path):
    checker.save(tmp_path)
    again = FactChecker.load(tmp_path)
    assert again.check(INP, GOOD) == checker.check(INP, GOOD)
    assert again.categories == checker.categories and again.fields == checker.fields
    (tmp_path/"facts.json").write_text("{broken")
    with pytest.raises(ValueError, match="facts.json"): FactChecker.load(tmp_path)


def test_fact_accuracy_counts(checker):
    reports = [GOOD, GOOD.replace("SHP-12345", "SHP-54321"), GOOD.replace("Severity is high", "Severity is low"),
               GOOD.replace(" from Acme Logistics", "")]
    fa = fact_accuracy([INP] * 4, reports, checker)
    assert fa["all_facts_correct"] == 0.25 and fa["any_invented"] == 0.25
    assert fa["per_field"]["shipment_id"] == 0.75 and fa["per_field"]["vendor"] == 0.75 and fa["per_field"]["severity"] == 0.75
    assert fa["invented_per_field"]["shipment_id"] == 0.25
    with pytest.raises(ValueError, match="reports for"): fact_accuracy([INP], [], checker)


def test_unseen_inputs_set_flags_every_unseen_category(checker):
    rows = unseen_inputs()
    metas = [parse_metadata(r) for r in rows]
    expected = [m["damage_type"] not in checker.categories["damage_type"] for m in metas]
    assert 0 < sum(expected) < len(rows)
    assert [bool(checker.unseen(m)) for m in metas] == expected


def test_user_schema_learns_its_own_wordings():
    "Another schema: the wordings come from its data, not from the claim data."
    own = [dict(name="order_no", required=True, kind="copy"), dict(name="reason", required=True, kind="category")]
    rng = random.Random(0)
    words = {"late": "arrived late", "broken": "was broken on arrival", "wrong_size": "did not fit"}
    inputs, outs = [], []
    for i in range(300):
        reason = rng.choice(list(words))
        inputs.append(f"order_no=ORD-{i}; reason={reason}"); outs.append(f"Order ORD-{i} {words[reason]}; refund issued.")
    fc = FactChecker.learn(inputs, outs, own)
    assert set(fc.categories["reason"]) == set(words)
    assert fc.check("order_no=ORD-5; reason=late", "Order ORD-5 arrived late; refund issued.")["ok"]
    assert fc.check("order_no=ORD-5; reason=late", "Order ORD-5 did not fit.")["fields"]["reason"] == "wrong"


# ---------------------------------------------------------------- the switch

def test_copy_placeholders_off_leaves_everything_as_it_was(bundled):
    "copy_placeholders=False reproduces the reference recipe's text exactly: raw inputs and targets, a plain decode."
    from datasets import Dataset, DatasetDict
    from claim_t5.facts import decode_generated, model_inputs, model_splits
    off, on = ClaimT5Config(copy_placeholders=False), ClaimT5Config()
    rows = bundled["train"][:20]
    dsd = DatasetDict(train=Dataset.from_list(rows))
    assert model_splits(dsd, off) is dsd
    assert model_inputs([r["input"] for r in rows], off) == [r["input"] for r in rows]
    assert model_splits(dsd, on)["train"]["input"] != [r["input"] for r in rows]
    tok = _tiny_tokenizer([t for r in rows for t in (r["input"], r["output"])] + ["<extra_id_0>"])
    ids = [tok(text_target=r["output"])["input_ids"] + [-100, 0] for r in rows]
    plain = [t.strip() for t in tok.batch_decode([[0 if t < 0 else t for t in x] for x in ids], skip_special_tokens=True)]
    assert decode_generated(tok, ids, [r["input"] for r in rows], off) == plain


@pytest.mark.parametrize("on", [True, False])
def test_trained_model_with_and_without_placeholders(on, tmp_path):
    """End to end (seconds-long tiny run): off, the model reads raw text and reports are a plain decode, as before;
    on, it reads placeholders, facts.json travels with it, and every report carries its verdict."""
    import torch
    from claim_t5.config import quick_config
    from claim_t5.generate import generate_reports
    from claim_t5.fine_tuned import load_fine_tuned
    from claim_t5.train import train
    from claim_t5.facts import FACTS_FILE
    res = train(quick_config(tmp_path/"model_training", copy_placeholders=on), verbose=False)
    ft = load_fine_tuned(res.model_dir, device="cpu"); model, tok, cfg = ft.model, ft.tokenizer, ft.config
    assert cfg.copy_placeholders is on and (res.model_dir/FACTS_FILE).exists()
    assert "all_facts_correct" in res.history[-1]
    inputs = [r["input"] for r in generate_dataset()["test"][:4]]
    reports = generate_reports(model, tok, inputs, cfg=cfg, checker=ft.checker, max_new_tokens=12, num_beams=1, do_sample=False)
    assert all(r.facts is not None for r in reports)
    enc = tok(inputs if not on else [mask_input(i) for i in inputs], return_tensors="pt", padding=True)
    from claim_t5.generate import ForbidPerRow, absent_placeholder_ids  # on: the sentinels an input cannot fill are banned, as generate_reports does
    ban = {"logits_processor": [ForbidPerRow(absent_placeholder_ids(tok, inputs, cfg))]} if on else {}
    with torch.inference_mode(): ids = model.generate(**enc, max_new_tokens=12, num_beams=1, do_sample=False, **ban)
    if not on:  # exactly the reference recipe's decode
        assert [str(r) for r in reports] == [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    else:
        assert [str(r) for r in reports] == decode_reports(tok, ids, [parse_metadata(i) for i in inputs])


# ---------------------------------------------------------------- the saved check's format

def test_old_facts_json_names_the_command_that_relearns_it(tiny_model_dir, tmp_path):
    "A model folder whose facts.json has the format of claim_t5 < 0.2 fails to load with the one command that mends it; that command does."
    import json, shutil
    from claim_t5.facts import FACTS_FORMAT, main as relearn
    from claim_t5.fine_tuned import ModelLoadError, load_fine_tuned
    d = shutil.copytree(tiny_model_dir, tmp_path/"model")
    old = json.loads((d/"facts.json").read_text())
    assert old["format"] == FACTS_FORMAT
    (d/"facts.json").write_text(json.dumps(dict(fields=old["fields"], categories={"severity": {"high": ["high severity"]}},
                                                cues={}, known={}, id_shapes={}, template_ids=[])))
    with pytest.raises(ModelLoadError, match=f"format 1 .*claim_t5_facts {d}"): load_fine_tuned(d, device="cpu")
    relearn(str(d))  # claim_t5_facts MODEL_DIR: learned again from the run's data (its saved config: the bundled data)
    checker = load_fine_tuned(d, device="cpu").checker
    assert json.loads((d/"facts.json").read_text())["format"] == FACTS_FORMAT
    assert checker.check(INP, GOOD)["ok"]
