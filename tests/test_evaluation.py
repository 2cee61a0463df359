"""Tests of claim_t5.evaluation: ROUGE and fact accuracy on handwritten reports, evaluating a model folder (results JSON,
error-report CSV, curves, model card), comparing runs, loading damaged model folders, generation order and truncation
warnings, and the claim_t5_eval CLI."""
import datetime
import json
import os
import pickle
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from conftest import cli_env, copy_model, run_cli

from claim_t5.config import generation_kwargs
from claim_t5.schema import FIELDS, format_metadata
from claim_t5.rouge import ROUGE_KEYS, rouge_per_example, rouge_scores
from claim_t5.data import load_claim_data
from claim_t5.evaluation import compare_runs, plot_comparison, evaluate_and_report, evaluate_model
from claim_t5.facts import FactChecker, fact_accuracy
from claim_t5.fine_tuned import ModelLoadError, load_fine_tuned
from claim_t5.model import machine_description

CLI = Path(sys.executable).parent/"claim_t5_eval"
CSV_COLUMNS = ["input", "reference", "prediction", "rougeL", "missing_facts", "invented_facts", "references"]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    return copy_model(tiny_model_dir, tmp_path/"fine_tuned_model")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir, tmp_path_factory):
    "(model, tokenizer, config) of a copy of the tiny model, on the CPU."
    return load_fine_tuned(copy_model(tiny_model_dir, tmp_path_factory.mktemp("loaded")/"m"), device="cpu")


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tmp_path_factory):
    "A copy of the tiny model evaluated with evaluate_model on 16 test examples: (folder, returned results)."
    d = copy_model(tiny_model_dir, tmp_path_factory.mktemp("evaluated")/"fine_tuned_model")
    for f in ("test_results.json", "evaluation_report.csv"):
        (d/f).unlink(missing_ok=True)
    return d, evaluate_model(d, max_samples=16, batch_size=8, progress=False)


@pytest.fixture(scope="module")
def reported(tiny_model_dir, tmp_path_factory):
    "A copy of the tiny model run through evaluate_and_report on 16 test examples, with no curves or card beforehand."
    d = copy_model(tiny_model_dir, tmp_path_factory.mktemp("reported")/"fine_tuned_model")
    for f in ("test_results.json", "evaluation_report.csv", "training_curves.png", "README.md"):
        (d/f).unlink(missing_ok=True)
    assert (d/"history.json").exists(), "the tiny run should leave a history.json for the curves"
    return d, evaluate_and_report(d, max_samples=16, batch_size=8, progress=False)


def read_report_csv(path: Path):
    import pandas as pd
    # keep_default_na=False: an empty prediction or an empty missing_facts cell is "", not NaN
    return pd.read_csv(path, keep_default_na=False, na_filter=False)


# ---------------------------------------------------------------- ROUGE by hand

def test_rouge_identical_and_disjoint():
    assert rouge_scores(["the cat sat"], ["the cat sat"]) == {k: 1.0 for k in ROUGE_KEYS}
    assert rouge_scores(["a b"], ["c d"]) == {k: 0.0 for k in ROUGE_KEYS}
    # the mean over examples: one perfect, one with nothing in common
    assert rouge_scores(["the cat sat", "a b"], ["the cat sat", "c d"]) == pytest.approx({k: 0.5 for k in ROUGE_KEYS})


def test_rouge_known_values():
    r = rouge_scores(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert r["rouge1"] == pytest.approx(5/6)   # 5 of 6 unigrams shared
    assert r["rouge2"] == pytest.approx(3/5)   # the-cat, on-the, the-mat of 5 bigrams
    assert r["rougeL"] == pytest.approx(5/6)   # LCS: the cat on the mat


def test_rouge_lsum_uses_sentences():
    # The same two sentences in the other order: every word and 6 of 7 bigrams match, the LCS over the whole text is
    # one sentence (4 of 8 tokens), but the sentence-level union LCS (ROUGE-Lsum) covers everything.
    pred, ref = "The box is dented. The seal is broken.", "The seal is broken. The box is dented."
    r = rouge_scores([pred], [ref])
    assert r["rouge1"] == pytest.approx(1.0)
    assert r["rouge2"] == pytest.approx(6/7)
    assert r["rougeL"] == pytest.approx(0.5)
    assert r["rougeLsum"] == pytest.approx(1.0)


# ---------------------------------------------------------------- fact accuracy by hand (the check itself: test_facts.py)

@pytest.fixture(scope="module")
def checker():
    "The fact checker learned from the bundled training split, tuned on its validation split (as training does)."
    from claim_t5.synth import generate_dataset
    from claim_t5.facts import learn_from_splits
    return learn_from_splits(generate_dataset())


FA_INPUTS = [
    "shipment_id=SHP-51045; damage_type=water_damage; severity=high; vendor=TestCo; shipment_stage=last_mile",
    "shipment_id=SHP-7; image_id=img_0001.png; damage_type=dent; severity=low; vendor=Globex; shipment_stage=transit",
    "shipment_id=SHP-9; damage_type=crack; severity=medium",
]
FA_PREDS = [
    # wrong shipment id (SHP-5 for SHP-51045: missing and invented), the 4 other fields right, no image_id in the input
    "Shipment SHP-5 from TestCo was found with water damage to the cartons during last-mile handling. Severity is high.",
    # all 6 fields stated, but another severity: severity wrong
    "Shipment SHP-7 from Globex was found with a dent in the casing in transit. Photo img_0001.png is attached. "
    "Severity is high.",
    # the 3 fields right, a vendor that is not in the input (the stage left unrecorded, as the data says it)
    "Shipment SHP-9 was found with a crack in the housing at an unrecorded stage. Severity is medium. Supplied by Acme Logistics.",
]


def test_fact_accuracy_hand_computed(checker):
    fa = fact_accuracy(FA_INPUTS, FA_PREDS, checker)
    assert fa["per_field"] == pytest.approx(dict(shipment_id=2/3, image_id=1.0, damage_type=1.0, severity=2/3,
                                                 vendor=1.0, shipment_stage=1.0))
    assert fa["overall"] == pytest.approx(12/14)          # 4/5 + 5/6 + 3/3 facts, each fact counted once
    assert fa["all_facts_correct"] == 0.0                  # the third states its facts but invents a vendor
    assert fa["invented_per_field"]["shipment_id"] == pytest.approx(1/3)
    assert fa["invented_per_field"]["vendor"] == pytest.approx(1/3)
    assert fa["any_invented"] == pytest.approx(2/3)
    assert [[f for f, v in r["fields"].items() if v not in (None, "ok")] for r in fa["rows"]] == [["shipment_id"], ["severity"], []]
    assert [r["invented"] for r in fa["rows"]] == [["shipment_id=SHP-5"], [], ["vendor=Acme Logistics"]]


def test_fact_accuracy_field_absent_everywhere_is_none(checker):
    fa = fact_accuracy(["shipment_id=SHP-1; damage_type=dent; severity=low",
                        "shipment_id=SHP-2; damage_type=crack; severity=high"],
                       ["SHP-1 has a dent, low severity.", "SHP-3 has a crack, high severity."], checker)
    assert fa["per_field"]["vendor"] is None and fa["per_field"]["image_id"] is None
    assert fa["per_field"]["shipment_id"] == 0.5 and fa["per_field"]["damage_type"] == 1.0
    assert fa["overall"] == pytest.approx(5/6)
    assert fa["all_facts_correct"] == 0.5 and fa["invented_per_field"]["shipment_id"] == 0.5
    assert fa["invented_per_field"]["vendor"] == 0


# ---------------------------------------------------------------- evaluate_model

def test_evaluate_model_results_json(evaluated):
    d, res = evaluated
    r = json.loads((d/"test_results.json").read_text())
    assert r["examples"] == 16 and r["split"] == "test"
    assert set(r["rouge"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert all(0.0 <= v <= 1.0 for v in r["rouge"].values())
    assert "tiny" in r["base_model"].lower() and r["tiny"] is True
    assert {"overall", "all_facts_correct", "per_field", "any_invented", "invented_per_field"} <= set(r["fact_accuracy"])
    assert set(r["fact_accuracy"]["per_field"]) == set(FIELDS)
    assert r["measured_on"] == machine_description()
    date = datetime.datetime.fromisoformat(r["date"])
    assert abs(datetime.datetime.now() - date) < datetime.timedelta(days=1)
    assert r["generation"]["do_sample"] is False
    # what the function returned is what it wrote
    assert res["rouge"] == r["rouge"] and res["examples"] == 16
    assert not list(d.glob("*.tmp")), "temporary files left behind"


def test_evaluate_model_rouge_by_hand(model_copy, tmp_path, monkeypatch):
    "With the generated reports fixed, evaluate_model's ROUGE, per-row scores and row order are the hand-computed ones."
    from claim_t5.fine_tuned import FineTuned
    ref_a = "Shipment SHP-10001 was found with a dent in transit."
    ref_b = "Shipment SHP-10002 was found with a crack in transit. Severity is high."
    rows = [{"input": format_metadata(dict(shipment_id="SHP-10001", damage_type="dent", severity="low")), "output": ref_a},
            {"input": format_metadata(dict(shipment_id="SHP-10002", damage_type="crack", severity="high")), "output": ref_b}]
    d = tmp_path/"data"; d.mkdir()
    (d/"clean_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    reports = {rows[0]["input"]: ref_a.replace("dent", "crack"), rows[1]["input"]: ref_b}  # one word wrong; exact
    monkeypatch.setattr(FineTuned, "reports", lambda self, inputs, **kw: [reports[i] for i in inputs])
    res = evaluate_model(model_copy, data_dir=d, progress=False)
    # row A: 10 ROUGE tokens (shipment shp 10001 was found with a dent in transit), 9 shared, in order; 9 bigrams, 7
    # shared (a-dent, dent-in are not). Row B: identical, 1.0 everywhere.
    assert res["rouge"] == pytest.approx(dict(rouge1=(9/10 + 1)/2, rouge2=(7/9 + 1)/2, rougeL=(9/10 + 1)/2,
                                              rougeLsum=(9/10 + 1)/2))
    rep = read_report_csv(model_copy/"evaluation_report.csv")
    assert list(rep["reference"]) == [ref_a, ref_b]                 # worst first
    assert list(rep["rougeL"]) == pytest.approx([9/10, 1.0])
    assert json.loads((model_copy/"test_results.json").read_text())["rouge"] == pytest.approx(res["rouge"])


def test_evaluate_model_report_csv(evaluated):
    d, res = evaluated
    rep = read_report_csv(d/"evaluation_report.csv")
    assert list(rep.columns) == CSV_COLUMNS
    assert len(rep) == 16
    assert list(rep["rougeL"]) == sorted(rep["rougeL"])                               # worst first
    test = load_claim_data()["test"].select(range(16))
    assert sorted(zip(rep["input"], rep["reference"])) == sorted(zip(test["input"], test["output"]))
    # each row's rougeL is that row's score
    per = rouge_per_example(list(rep["prediction"]), list(rep["reference"]))
    assert list(rep["rougeL"]) == pytest.approx([p["rougeL"] for p in per])
    # each row's missing / invented facts are those of its own input and prediction
    for inp, pred, missing, invented in zip(rep["input"], rep["prediction"], rep["missing_facts"], rep["invented_facts"]):
        v = FactChecker.load(d).check(inp, pred)  # the checker saved with the model
        assert missing == ";".join(f for f, s in v["fields"].items() if s not in (None, "ok"))
        assert invented == ";".join(v["invented"])


def test_evaluate_model_numbers_match_the_csv(evaluated):
    d, _ = evaluated
    r = json.loads((d/"test_results.json").read_text())
    rep = read_report_csv(d/"evaluation_report.csv")
    assert r["rouge"] == pytest.approx(rouge_scores(list(rep["prediction"]), list(rep["reference"])))
    fa = fact_accuracy(list(rep["input"]), list(rep["prediction"]), FactChecker.load(d))
    for k in ("overall", "all_facts_correct", "any_invented"):
        assert r["fact_accuracy"][k] == pytest.approx(fa[k]), k


def test_evaluate_model_unknown_split(model_copy):
    with pytest.raises(ValueError, match="nope"):
        evaluate_model(model_copy, split="nope", max_samples=2, progress=False)
    assert not (model_copy/"nope_results.json").exists()


# ---------------------------------------------------------------- evaluate_and_report: curves and model card

def test_evaluate_and_report_writes_curves_and_card(reported):
    d, res = reported
    png = d/"training_curves.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (d/"test_results.json").exists() and (d/"evaluation_report.csv").exists()
    card = (d/"README.md").read_text()
    low = card.lower()
    assert "warning" in low and "tiny model" in low and "not flan-t5" in low
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert f"{res['rouge'][k]:.4f}" in card, k
    assert f"{res['fact_accuracy']['overall']:.4f}" in card
    assert f"{res['fact_accuracy']['all_facts_correct']:.4f}" in card
    assert res["measured_on"] in card and machine_description() in card
    assert res["date"] in card
    assert "16 examples" in card


# ---------------------------------------------------------------- compare_runs

def test_compare_runs(evaluated, reported):
    table = compare_runs({"first": evaluated[0], "second": reported[0]})
    assert list(table.index) == ["first", "second"]
    for name, (d, _) in (("first", evaluated), ("second", reported)):
        r = json.loads((d/"test_results.json").read_text())
        row = table.loc[name]
        assert row["examples"] == 16
        for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert row[k] == pytest.approx(r["rouge"][k], abs=1e-4)
        assert row["fact_accuracy"] == pytest.approx(r["fact_accuracy"]["overall"], abs=1e-4)


def test_plot_comparison(evaluated, reported, tmp_path):
    fig = plot_comparison({"first": evaluated[0], "second": reported[0]}, tmp_path/"comparison.png")
    bars, curves = fig.axes
    assert len(bars.patches) == 2 * 3  # two runs x ROUGE-1/2/L
    assert sorted(l.get_label() for l in curves.get_lines()) == ["first", "second"]  # one validation ROUGE-L curve per run
    assert (tmp_path/"comparison.png").stat().st_size > 0


def test_compare_runs_unevaluated_folder(evaluated, tmp_path):
    empty = tmp_path/"not_evaluated"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="test_results.json") as e:
        compare_runs({"ok": evaluated[0], "missing": empty})
    assert str(empty) in str(e.value)


# ---------------------------------------------------------------- load_fine_tuned: good and damaged folders

def test_load_fine_tuned_ok(loaded):
    model, tok, cfg = loaded.model, loaded.tokenizer, loaded.config
    assert loaded.checker is not None  # the fact check comes back with the model, not on it
    assert not hasattr(model, "claim_t5_facts") and not hasattr(model, "claim_t5_config")
    assert cfg.is_tiny
    assert not model.training
    assert str(next(model.parameters()).device) == "cpu"
    assert tok("shipment_id=SHP-1")["input_ids"]


def test_load_missing_folder(tmp_path):
    d = tmp_path/"no_such_model"
    with pytest.raises(ModelLoadError, match="no such model folder") as e:
        load_fine_tuned(d, device="cpu")
    assert str(d) in str(e.value)


def test_load_adapter_weights_deleted(model_copy):
    (model_copy/"adapter_model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as e:
        load_fine_tuned(model_copy, device="cpu")
    assert str(model_copy) in str(e.value) and "adapter_model.safetensors" in str(e.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_load_adapter_weights_damaged(model_copy, damage):
    p = model_copy/"adapter_model.safetensors"
    data = p.read_bytes()
    p.write_bytes(b"\x00\x01not a safetensors file\xff" * 40 if damage == "garbage" else data[:len(data) // 2])
    with pytest.raises(ModelLoadError) as e:
        load_fine_tuned(model_copy, device="cpu")
    assert str(model_copy) in str(e.value) and "adapter_model.safetensors" in str(e.value)


class _LeavesAMark:
    "A pickle that creates a file when it is unpickled: proof that pickled weights were (or were not) loaded."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, "w"))


def _write_pickle(path: Path, marker: Path):
    with open(path, "wb") as f:
        pickle.dump({"weights": _LeavesAMark(marker)}, f)


@pytest.mark.parametrize("kind, safe", [("adapter", "adapter_model.safetensors"), ("merged", "model.safetensors")])
def test_load_only_pickled_weights(kind, safe, tiny_model_dir, tmp_path):
    "An adapter folder, or a merged-model folder (config.json), whose only weights are pickled is refused unread."
    d = copy_model(tiny_model_dir if kind == "adapter" else tiny_model_dir/"base_model", tmp_path/kind)
    (d/safe).unlink()
    marker = tmp_path/"unpickled"
    _write_pickle(d/"pytorch_model.bin", marker)
    with pytest.raises(ModelLoadError) as e:
        load_fine_tuned(d, device="cpu")
    msg = str(e.value)
    assert str(d) in msg and safe in msg and "pytorch_model.bin" in msg and "pickled" in msg
    assert not marker.exists(), "the pickled weights were unpickled"


def test_load_neither_adapter_nor_model(tmp_path):
    d = tmp_path/"just_files"
    d.mkdir()
    (d/"notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="adapter_config.json") as e:
        load_fine_tuned(d, device="cpu")
    assert str(d) in str(e.value)


@pytest.mark.parametrize("text", ["lora_r: [oops", "not_a_key: 3\n", "lora_r: -4\n", "- a\n- b\n"])
def test_load_bad_claim_t5_config(model_copy, text):
    (model_copy/"claim_t5_config.yaml").write_text(text)
    with pytest.raises(ModelLoadError) as e:
        load_fine_tuned(model_copy, device="cpu")
    assert str(model_copy) in str(e.value) and "claim_t5_config.yaml" in str(e.value)


def test_load_damaged_base_model_weights(model_copy):
    # The tiny preset keeps its base model in base_model/: damaged base weights are a damaged model folder too.
    p = model_copy/"base_model"/"model.safetensors"
    p.write_bytes(p.read_bytes()[:4000])
    with pytest.raises(ModelLoadError) as e:
        load_fine_tuned(model_copy, device="cpu")
    assert str(model_copy) in str(e.value) and "model.safetensors" in str(e.value)


def test_load_damaged_generation_config(model_copy):
    (model_copy/"generation_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as e:
        load_fine_tuned(model_copy, device="cpu")
    assert str(model_copy) in str(e.value) and "generation_config.json" in str(e.value)


# ---------------------------------------------------------------- generate_reports

def test_generate_reports_keeps_input_order(loaded):
    tok, cfg = loaded.tokenizer, loaded.config
    test = list(load_claim_data()["test"].select(range(6))["input"])
    inputs = [test[0],
              "shipment_id=SHP-1; damage_type=dent; severity=low",                            # short
              format_metadata(dict(shipment_id="SHP-77777", image_id="img_9999.png", damage_type="torn_packaging",
                                   severity="medium", vendor="Pied Piper Electronics Worldwide Holdings",
                                   shipment_stage="last_mile")),                              # long
              *test[1:]]
    lengths = [len(x) for x in tok(inputs)["input_ids"]]
    assert lengths != sorted(lengths, reverse=True), "the inputs should not already be in length order"
    kw = generation_kwargs(cfg, max_new_tokens=24)
    batched = loaded.reports(inputs, batch_size=3, max_input_length=cfg.max_input_length, **kw)
    alone = [loaded.reports([x], batch_size=1, max_input_length=cfg.max_input_length, **kw)[0]
             for x in inputs]
    assert len(set(alone)) > 1, "every input gives the same report: the order would not show"
    assert batched == alone
    assert loaded.reports([], **kw) == []


def test_generate_reports_warns_on_truncation(loaded):
    tok, cfg = loaded.tokenizer, loaded.config
    inputs = ["shipment_id=SHP-1; damage_type=dent; severity=low",
              "shipment_id=SHP-2; damage_type=crack; severity=high; vendor=Globex"]
    kw = generation_kwargs(cfg, max_new_tokens=4)
    with pytest.warns(UserWarning, match=r"2 input\(s\) longer than 4 tokens"):
        out = loaded.reports(inputs, batch_size=2, max_input_length=4, **kw)
    assert len(out) == 2
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        loaded.reports(inputs, batch_size=2, max_input_length=128, **kw)
    assert not [w for w in rec if "truncated" in str(w.message)]


# ---------------------------------------------------------------- the claim_t5_eval console script
# The runs go through the console script's `main` in this process (`conftest.run_cli`: same argument parser, exit
# codes and output), once per module; each test then checks one run. tests/test_cli.py starts the real entry points.

@pytest.fixture(scope="module")
def eval_cli_runs(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_cli")
    good = copy_model(tiny_model_dir, base/"run"/"fine_tuned_model")
    (good/"test_results.json").unlink(missing_ok=True)
    runs = {"good": ["--model_dir", str(good), "--max_samples", "8", "--batch_size", "4"],
            "missing": ["--model_dir", str(base/"no_such_model"), "--max_samples", "8"],
            "no_model_dir": ["--max_samples", "8"]}
    yield dict(good_dir=good, missing_dir=base/"no_such_model",
               **{k: run_cli("claim_t5_eval", *a) for k, a in runs.items()})


def test_cli_eval_writes_results(eval_cli_runs):
    r = eval_cli_runs["good"]
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((eval_cli_runs["good_dir"]/"test_results.json").read_text())
    assert res["examples"] == 8
    assert len(read_report_csv(eval_cli_runs["good_dir"]/"evaluation_report.csv")) == 8
    assert (eval_cli_runs["good_dir"]/"README.md").exists()
    assert "rouge" in r.stdout


def test_cli_eval_missing_folder(eval_cli_runs):
    r = eval_cli_runs["missing"]
    assert r.returncode != 0
    assert "error:" in r.stderr and str(eval_cli_runs["missing_dir"]) in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_eval_requires_model_dir(eval_cli_runs):
    r = eval_cli_runs["no_model_dir"]
    assert r.returncode != 0 and "--model_dir" in r.stderr and "Traceback" not in r.stderr
